//! Signaling relayed to the node that holds the room.
//!
//! A client's signaling may reach any node (one public URL behind a load balancer).
//! When its room is held by another node, the node it reached opens a WebSocket of its
//! own to the holder's `/v1/signal`, marked [`RELAYED_BY`](super::RELAYED_BY), sends
//! the client's first frame (its `join`) and then copies frames both ways, close frames
//! included, until either side ends. Media does not come this way: the holder's SDP
//! names the holder's own candidates.
//!
//! Keepalive is per hop. Each WebSocket library answers pings by itself, so a ping
//! passed through would be answered by this node whatever became of the client. This
//! node pings the client and watches the holder (which pings it), and ends the relay
//! when either goes quiet for three ping intervals; the holder then sees the relay
//! close as it would the client's own socket, and keeps the participant for a resume.

use std::time::Duration;

use axum::extract::ws::{self, WebSocket};
use confer_proto::ErrorCode;
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self as tung, http::HeaderValue};

use crate::error::ApiError;
use crate::hub::error_response;

/// How long the holder may take to accept the relay's connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the relay goes: the holding node.
pub struct Target<'a> {
    pub node: &'a str,
    /// The node's URL (`http://` or `https://`).
    pub url: &'a str,
}

/// Relays `client`, whose first frame `first` (a join, request `join_id`) is already
/// read, to `to`. `me` names this node to the holder; `ping_every` is the signaling
/// ping interval.
pub async fn relay(mut client: WebSocket, first: String, join_id: u64, me: &str, to: Target<'_>, ping_every: Duration) {
    let upstream = match connect(to.url, me).await {
        Ok(upstream) => upstream,
        Err(e) => {
            // The registry still counted it live; the client tries again, and by then
            // the room is placed on a live node.
            tracing::warn!(node = %to.node, url = %to.url, error = %e, "cannot relay a join to the node holding its room");
            let error =
                ApiError::new(ErrorCode::Unavailable, "the server holding this meeting is out of reach; try again");
            if let crate::hub::Outbound::Frame(text) = error_response(Some(join_id), &error) {
                let _ = client.send(ws::Message::Text(text.as_ref().into())).await;
            }
            let _ = client.send(ws::Message::Close(None)).await;
            return;
        }
    };
    tracing::debug!(node = %to.node, "signaling relayed to the node holding the room");
    let (mut up_tx, mut up_rx) = upstream.split();
    let (mut down_tx, mut down_rx) = client.split();
    if up_tx.send(tung::Message::Text(first.into())).await.is_err() {
        return;
    }
    let silence = ping_every * 3;
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    let (mut heard_client, mut heard_holder) = (Instant::now(), Instant::now());
    // Who closed first, so that the other side is told.
    let ended = loop {
        tokio::select! {
            frame = down_rx.next() => {
                heard_client = Instant::now();
                let forward = match frame {
                    Some(Ok(ws::Message::Text(text))) => tung::Message::Text(text.as_str().into()),
                    Some(Ok(ws::Message::Binary(bytes))) => tung::Message::Binary(bytes),
                    Some(Ok(ws::Message::Ping(_) | ws::Message::Pong(_))) => continue,
                    Some(Ok(ws::Message::Close(frame))) => {
                        let _ = up_tx.send(tung::Message::Close(frame.map(close_up))).await;
                        break End::Client;
                    }
                    None | Some(Err(_)) => break End::Client,
                };
                if up_tx.send(forward).await.is_err() {
                    break End::Holder(None);
                }
            }
            frame = up_rx.next() => {
                heard_holder = Instant::now();
                let forward = match frame {
                    Some(Ok(tung::Message::Text(text))) => ws::Message::Text(text.as_str().into()),
                    Some(Ok(tung::Message::Binary(bytes))) => ws::Message::Binary(bytes),
                    Some(Ok(tung::Message::Ping(_) | tung::Message::Pong(_) | tung::Message::Frame(_))) => continue,
                    Some(Ok(tung::Message::Close(frame))) => break End::Holder(frame.map(close_down)),
                    None | Some(Err(_)) => break End::Holder(None),
                };
                if down_tx.send(forward).await.is_err() {
                    break End::Client;
                }
            }
            _ = ping.tick() => {
                if heard_client.elapsed() > silence {
                    tracing::info!(node = %to.node, "relayed client went quiet: relay closed");
                    break End::Client;
                }
                if heard_holder.elapsed() > silence {
                    tracing::warn!(node = %to.node, "the node holding the room went quiet: relay closed");
                    break End::Holder(None);
                }
                if down_tx.send(ws::Message::Ping(Default::default())).await.is_err() {
                    break End::Client;
                }
            }
        }
    };
    match ended {
        End::Client => {
            let _ = tokio::time::timeout(Duration::from_secs(2), up_tx.close()).await;
        }
        End::Holder(frame) => {
            let closed = async {
                let _ = down_tx.send(ws::Message::Close(frame)).await;
                let _ = down_tx.close().await;
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), closed).await;
        }
    }
}

enum End {
    /// The client closed (or vanished).
    Client,
    /// The holder closed, with this frame for the client.
    Holder(Option<ws::CloseFrame>),
}

type Upstream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, me: &str) -> Result<Upstream, String> {
    let ws_url = signal_url(url).ok_or_else(|| format!("not an http(s) URL: {url}"))?;
    let mut request = ws_url.into_client_request().map_err(|e| e.to_string())?;
    let me = HeaderValue::from_str(me).map_err(|e| e.to_string())?;
    request.headers_mut().insert(super::RELAYED_BY, me);
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request)).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// `http://host:port` to `ws://host:port/v1/signal` (and `https` to `wss`).
fn signal_url(url: &str) -> Option<String> {
    let url = url.trim_end_matches('/');
    if let Some(rest) = url.strip_prefix("http://") {
        Some(format!("ws://{rest}/v1/signal"))
    } else {
        url.strip_prefix("https://").map(|rest| format!("wss://{rest}/v1/signal"))
    }
}

fn close_up(frame: ws::CloseFrame) -> tung::protocol::CloseFrame {
    tung::protocol::CloseFrame { code: frame.code.into(), reason: frame.reason.as_str().into() }
}

fn close_down(frame: tung::protocol::CloseFrame) -> ws::CloseFrame {
    ws::CloseFrame { code: frame.code.into(), reason: frame.reason.as_str().into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_become_signaling_urls() {
        assert_eq!(signal_url("http://10.0.0.2:7880").as_deref(), Some("ws://10.0.0.2:7880/v1/signal"));
        assert_eq!(signal_url("https://n2.example/").as_deref(), Some("wss://n2.example/v1/signal"));
        assert_eq!(signal_url("ftp://n2"), None);
    }
}
