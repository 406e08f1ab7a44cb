//! Decoded video to the web view: a binary, latest-frame-wins path, never JSON events.
//!
//! Decoders publish pictures into the [`FrameHub`] by tile id; the hub keeps only the
//! newest frame of each tile. The view opens one WebSocket per tile on the loopback
//! [`FrameServer`] (`ws://127.0.0.1:PORT/frames/TILE?key=SECRET`). The secret is made
//! per launch and reaches the view through IPC, so other programs on the machine cannot
//! watch the call. The view asks for each frame with a `next` message and the server
//! answers with the newest frame the view has not seen, waiting for one if needed: a
//! slow view skips frames instead of queueing them, and never gets one twice. When a
//! tile is removed its sockets close with code 1000.
//!
//! A frame on the wire (little-endian): the magic `CFv1`, width and height (u32), the
//! tile's frame sequence number (u64), the capture time (u64, Unix ms; 0 if unknown),
//! then the Y, U and V planes, tightly packed (chroma `(w+1)/2` by `(h+1)/2`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use confer_media::I420Frame;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

pub const MAGIC: &[u8; 4] = b"CFv1";
pub const HEADER_LEN: usize = 28;

/// One frame of a tile.
#[derive(Debug, Clone)]
pub struct Frame {
    pub seq: u64,
    pub capture_ms: u64,
    pub picture: Arc<I420Frame>,
}

impl Frame {
    /// The frame as it goes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let p = &self.picture;
        let mut out = Vec::with_capacity(HEADER_LEN + p.y.len() + p.u.len() + p.v.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(p.width as u32).to_le_bytes());
        out.extend_from_slice(&(p.height as u32).to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.capture_ms.to_le_bytes());
        out.extend_from_slice(&p.y);
        out.extend_from_slice(&p.u);
        out.extend_from_slice(&p.v);
        out
    }

    /// Reads a frame from the wire (`None` if it is not one).
    pub fn decode(bytes: &[u8]) -> Option<Frame> {
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap_or_default()) as usize;
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or_default());
        let (width, height) = (u32_at(4), u32_at(8));
        let (cw, ch) = I420Frame::chroma_size(width, height);
        let (ylen, clen) = (width.checked_mul(height)?, cw.checked_mul(ch)?);
        if bytes.len() != HEADER_LEN + ylen + 2 * clen {
            return None;
        }
        let planes = &bytes[HEADER_LEN..];
        let picture = I420Frame {
            width,
            height,
            y: planes[..ylen].to_vec(),
            u: planes[ylen..ylen + clen].to_vec(),
            v: planes[ylen + clen..].to_vec(),
        };
        Some(Frame { seq: u64_at(12), capture_ms: u64_at(20), picture: Arc::new(picture) })
    }
}

type Slot = watch::Sender<Option<Frame>>;

/// The newest frame of every tile.
#[derive(Default)]
pub struct FrameHub {
    tiles: Mutex<HashMap<String, Slot>>,
}

impl FrameHub {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn slot<T>(&self, tile: &str, f: impl FnOnce(&Slot) -> T) -> T {
        let mut tiles = self.tiles.lock().unwrap_or_else(|p| p.into_inner());
        let slot = tiles.entry(tile.to_owned()).or_insert_with(|| watch::channel(None).0);
        f(slot)
    }

    /// A new picture for `tile`; it replaces the one not yet shown.
    pub fn publish(&self, tile: &str, picture: Arc<I420Frame>, capture_ms: u64) {
        self.slot(tile, |slot| {
            slot.send_modify(|current| {
                let seq = current.as_ref().map_or(1, |f| f.seq + 1);
                *current = Some(Frame { seq, capture_ms, picture });
            })
        });
    }

    /// The tile is gone (its track ended): views watching it are closed.
    pub fn remove(&self, tile: &str) {
        self.tiles.lock().unwrap_or_else(|p| p.into_inner()).remove(tile);
    }

    /// The newest frame of `tile`, if it has one.
    pub fn latest(&self, tile: &str) -> Option<Frame> {
        let tiles = self.tiles.lock().unwrap_or_else(|p| p.into_inner());
        tiles.get(tile).and_then(|slot| slot.borrow().clone())
    }

    fn watch(&self, tile: &str) -> watch::Receiver<Option<Frame>> {
        self.slot(tile, |slot| slot.subscribe())
    }
}

/// Serves tiles to the view on a loopback port.
pub struct FrameServer {
    addr: SocketAddr,
    secret: Arc<str>,
    task: JoinHandle<()>,
}

impl FrameServer {
    /// Listens on 127.0.0.1 (a free port) with a fresh secret.
    pub async fn start(hub: Arc<FrameHub>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let secret: Arc<str> =
            (0..32).map(|_| char::from(b'a' + rand::random_range(0..26u8))).collect::<String>().into();
        let key = secret.clone();
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(serve(stream, hub.clone(), key.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "frame server cannot accept");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(Self { addr, secret, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the view needs to connect (hand it over IPC, never log it).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The URL of one tile.
    pub fn url(&self, tile: &str) -> String {
        let tile = percent_encoding::utf8_percent_encode(tile, percent_encoding::NON_ALPHANUMERIC);
        format!("ws://{}/frames/{tile}?key={}", self.addr, self.secret)
    }
}

impl Drop for FrameServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Equal in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The tile a request asks for, if its key is right.
fn authorize(request: &Request, secret: &str) -> Option<String> {
    let uri = request.uri();
    let tile = uri.path().strip_prefix("/frames/").filter(|t| !t.is_empty() && !t.contains('/'))?;
    // The view percent-encodes tile names (`PA_x:main` arrives as `PA_x%3Amain`).
    let tile = percent_encoding::percent_decode_str(tile).decode_utf8().ok()?;
    let key = uri.query()?.split('&').find_map(|kv| kv.strip_prefix("key="))?;
    same(key, secret).then(|| tile.into_owned())
}

// tungstenite's handshake callback returns its (large) refusal response by value.
#[allow(clippy::result_large_err)]
async fn serve(stream: TcpStream, hub: Arc<FrameHub>, secret: Arc<str>) {
    let mut tile = None;
    let accepted = tokio_tungstenite::accept_hdr_async(
        stream,
        |request: &Request, response: Response| match authorize(request, &secret) {
            Some(t) => {
                tile = Some(t);
                Ok(response)
            }
            None => {
                tracing::warn!(path = %request.uri().path(), "frame request refused: unknown tile path or wrong key");
                let mut refusal = ErrorResponse::new(Some("forbidden".into()));
                *refusal.status_mut() = StatusCode::FORBIDDEN;
                Err(refusal)
            }
        },
    )
    .await;
    let (Ok(mut ws), Some(tile)) = (accepted, tile) else { return };
    let mut frames = hub.watch(&tile);
    let mut shown = 0u64;
    loop {
        // The view asks for each frame: one in flight at most.
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == "next" => {}
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
            Some(Ok(_)) => continue,
        }
        let frame = loop {
            let newest = frames.borrow_and_update().clone();
            if let Some(f) = newest.filter(|f| f.seq > shown) {
                break Some(f);
            }
            tokio::select! {
                changed = frames.changed() => if changed.is_err() { break None },
                // The view went away while waiting.
                incoming = ws.next() => match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                },
            }
        };
        let Some(frame) = frame else {
            let close = CloseFrame { code: CloseCode::Normal, reason: "tile ended".into() };
            if let Err(e) = ws.close(Some(close)).await {
                tracing::debug!(%tile, error = %e, "frame socket not closed cleanly");
            }
            return;
        };
        shown = frame.seq;
        if ws.send(Message::Binary(frame.encode().into())).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio_tungstenite::connect_async;

    fn picture(width: usize, height: usize, luma: u8) -> Arc<I420Frame> {
        let mut p = I420Frame::new(width, height);
        p.y.fill(luma);
        Arc::new(p)
    }

    async fn next(
        ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + SinkExt<Message> + Unpin),
    ) -> Option<Frame> {
        let _ = ws.send(Message::Text("next".into())).await;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.ok()?? {
                Ok(Message::Binary(b)) => return Frame::decode(&b),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let f = Frame { seq: 7, capture_ms: 1234, picture: picture(6, 4, 99) };
        let bytes = f.encode();
        assert_eq!(bytes.len(), HEADER_LEN + 24 + 2 * 6);
        let back = Frame::decode(&bytes).unwrap();
        assert_eq!((back.seq, back.capture_ms, back.picture.as_ref()), (7, 1234, f.picture.as_ref()));
        assert!(Frame::decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(Frame::decode(b"CFv1\xff\xff\xff\xff\xff\xff\xff\xff").is_none());
        assert!(Frame::decode(b"nope").is_none());
    }

    #[tokio::test]
    async fn the_view_gets_the_newest_frame_and_waits_for_the_next() {
        let hub = FrameHub::new();
        let server = FrameServer::start(hub.clone()).await.unwrap();
        for luma in [10, 20, 30] {
            hub.publish("PA_alice:main", picture(64, 48, luma), 0);
        }
        let (mut ws, _) = connect_async(server.url("PA_alice:main")).await.unwrap();
        let f = next(&mut ws).await.unwrap();
        assert_eq!((f.seq, f.picture.y[0]), (3, 30), "the newest, not the first");
        let publisher = {
            let hub = hub.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                hub.publish("PA_alice:main", picture(64, 48, 40), 99);
            })
        };
        let f = next(&mut ws).await.unwrap();
        assert_eq!((f.seq, f.capture_ms, f.picture.y[0]), (4, 99, 40), "waited for a new one");
        publisher.await.unwrap();
        hub.remove("alice");
        assert!(next(&mut ws).await.is_none(), "a removed tile closes its view");
    }

    #[tokio::test]
    async fn a_slow_view_skips_frames_rather_than_queueing_them() {
        let hub = FrameHub::new();
        let server = FrameServer::start(hub.clone()).await.unwrap();
        let (mut ws, _) = connect_async(server.url("bob")).await.unwrap();
        let producer = {
            let hub = hub.clone();
            tokio::spawn(async move {
                for i in 0..200u64 {
                    hub.publish("bob", picture(320, 180, (i % 200) as u8), i);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        let mut seen = Vec::new();
        while seen.last().is_none_or(|&s| s < 200) {
            let f = next(&mut ws).await.unwrap();
            seen.push(f.seq);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        producer.await.unwrap();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "never a frame twice or out of order");
        assert!(seen.len() < 100, "skipped rather than queued: {} of 200 shown", seen.len());
    }

    #[tokio::test]
    async fn a_wrong_key_or_path_is_refused() {
        let hub = FrameHub::new();
        let server = FrameServer::start(hub).await.unwrap();
        let addr = server.addr();
        for url in [
            format!("ws://{addr}/frames/alice?key=wrong"),
            format!("ws://{addr}/frames/alice"),
            format!("ws://{addr}/other/alice?key={}", server.secret()),
        ] {
            let refused = connect_async(&url).await;
            assert!(refused.is_err(), "{url} was accepted");
        }
        assert!(connect_async(server.url("alice")).await.is_ok());
    }
}
