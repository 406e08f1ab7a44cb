//! One signaling WebSocket: open it, send [`ClientMessage`]s, read [`ServerMessage`]s.
//!
//! A [`Connection`] knows nothing of rooms or reconnection; the engine owns one at a
//! time. [`Connection::recv`] must be polled continuously while the connection is in
//! use: reading is also what flushes the automatic pong replies to the server's pings,
//! and the server drops a client it has not heard from for three ping intervals.
//! `recv` is cancel-safe, so it can sit in a `select!`.
//!
//! Frames from the server that cannot be parsed are logged and skipped rather than
//! tearing the connection down: one bad frame should not cost the user their call.

use std::sync::Arc;
use std::time::Duration;

use confer_proto::signal::Event;
use confer_proto::signal::{ClientMessage, JoinRequest, JoinSnapshot, Outcome, Reply, Request, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use rustls_platform_verifier::BuilderVerifierExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::Url;

use crate::error::{ClientError, Result};

/// How long a polite close may take before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What one read produced.
#[derive(Debug)]
pub(crate) enum Incoming {
    Message(Box<ServerMessage>),
    /// A ping, pong or a skipped frame: proof of life, nothing to act on.
    Keepalive,
}

pub(crate) struct Connection {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Connection {
    /// Opens the WebSocket at `url` (already normalized by `endpoint::signal_url`).
    pub(crate) async fn open(url: &Url) -> Result<Self> {
        let connector = match url.scheme() {
            "wss" => Connector::Rustls(tls_config()?),
            _ => Connector::Plain,
        };
        // Nagle off: signaling frames are small and latency-sensitive.
        let (ws, _response) =
            tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, true, Some(connector)).await?;
        Ok(Self { ws })
    }

    pub(crate) async fn send(&mut self, id: u64, request: Request) -> Result<()> {
        let text = serde_json::to_string(&ClientMessage { id, request })
            .map_err(|e| ClientError::Protocol { detail: format!("cannot encode request: {e}") })?;
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    /// The next frame; `Ok(None)` once the server closed the connection.
    pub(crate) async fn recv(&mut self) -> Result<Option<Incoming>> {
        let Some(frame) = self.ws.next().await else { return Ok(None) };
        match frame? {
            Message::Text(text) => match serde_json::from_str::<ServerMessage>(text.as_str()) {
                Ok(msg) => Ok(Some(Incoming::Message(Box::new(msg)))),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping unreadable signaling frame");
                    Ok(Some(Incoming::Keepalive))
                }
            },
            Message::Close(_) => Ok(None),
            Message::Binary(_) => {
                tracing::warn!("skipping binary signaling frame");
                Ok(Some(Incoming::Keepalive))
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(Some(Incoming::Keepalive)),
        }
    }

    /// Closes politely, but never waits long for a peer that is gone.
    pub(crate) async fn close(mut self) {
        match tokio::time::timeout(CLOSE_TIMEOUT, self.ws.close(None)).await {
            Ok(Ok(())) => {}
            // The peer may have closed first or vanished; the socket is dropped either way.
            Ok(Err(e)) => tracing::debug!(error = %e, "close handshake failed"),
            Err(_) => tracing::debug!("close handshake timed out"),
        }
    }

    /// Sends `join` as request `id` and reads until its answer. Events that arrive
    /// before the answer (the server promises none, but a client should not lose them)
    /// are returned with it, in order.
    pub(crate) async fn join(&mut self, id: u64, join: JoinRequest) -> Result<(Reply, Vec<(u64, Event)>)> {
        self.send(id, Request::Join(join)).await?;
        let mut early = Vec::new();
        loop {
            let Some(incoming) = self.recv().await? else {
                return Err(ClientError::Protocol { detail: "connection closed before the join was answered".into() });
            };
            match incoming {
                Incoming::Keepalive => {}
                Incoming::Message(msg) => match *msg {
                    ServerMessage::Event { seq, event } => early.push((seq, event)),
                    ServerMessage::Response { id: rid, outcome } => {
                        // A null id is the server rejecting a frame it could not read: ours.
                        if rid.is_some_and(|rid| rid != id) {
                            tracing::warn!(id = ?rid, "ignoring an answer to an unknown request during join");
                            continue;
                        }
                        return match outcome {
                            Outcome::Result(reply) => Ok((reply, early)),
                            Outcome::Error(body) => Err(ClientError::Server(body)),
                        };
                    }
                },
            }
        }
    }

    /// After a `knocking` answer: reads until the server lets us in (`admitted`, which
    /// is returned with its `seq` in `early`, for the engine to start counting from) or
    /// turns us away.
    pub(crate) async fn wait_in_lobby(&mut self, early: &mut Vec<(u64, Event)>) -> Result<Box<JoinSnapshot>> {
        loop {
            let Some(incoming) = self.recv().await? else {
                return Err(ClientError::Closed);
            };
            let Incoming::Message(msg) = incoming else { continue };
            let ServerMessage::Event { seq, event } = *msg else { continue };
            match event {
                Event::Admitted { snapshot } => {
                    early.push((seq, Event::Admitted { snapshot: snapshot.clone() }));
                    return Ok(snapshot);
                }
                Event::Denied { reason } => return Err(ClientError::Denied { reason }),
                Event::Disconnected { reason } => return Err(ClientError::Disconnected { reason: Some(reason) }),
                other => early.push((seq, other)),
            }
        }
    }
}

/// TLS for `wss://`: the operating system's trust store (self-hosted servers often use
/// a company CA that only the system knows), with the ring provider chosen explicitly
/// so that it does not depend on which rustls features other crates turned on.
fn tls_config() -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Tls)?
        .with_platform_verifier()
        .map_err(ClientError::Tls)?
        .with_no_client_auth();
    Ok(Arc::new(config))
}
