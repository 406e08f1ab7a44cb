//! `load --target janus`: the same participants and media against Janus's VideoRoom
//! plugin, through Janus's documented WebSocket API (`janus-protocol`), for the
//! side-by-side benchmark.
//!
//! A publisher creates a session, attaches `janus.plugin.videoroom` and sends
//! `joinandconfigure` with its offer; a subscriber waits for the room's publishers
//! (`listparticipants`), joins as a subscriber to all of their feeds, answers Janus's
//! offer with `start`, and picks the simulcast substream its quality asks for.

use std::time::{Duration, Instant};

use confer_proto::track::Quality;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::clip::Clip;
use super::media::{drive, Media, Signaling};
use super::peer::{Plan, Role, Seen, Ws};

/// How often Janus must hear from a session (its timeout is 60 s).
const KEEPALIVE_SECS: u32 = 25;
/// How long a subscriber waits for the room's publishers to be there.
const PUBLISHERS_WAIT: Duration = Duration::from_secs(15);

struct Janus {
    ws: Ws,
    session: u64,
    handle: u64,
    next_tx: u64,
    since_keepalive: u32,
}

impl Janus {
    /// A session with the VideoRoom plugin attached.
    async fn open(url: &url::Url) -> anyhow::Result<Janus> {
        let mut request = url.as_str().into_client_request()?;
        request.headers_mut().insert("Sec-WebSocket-Protocol", "janus-protocol".parse()?);
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        let mut j = Janus { ws, session: 0, handle: 0, next_tx: 1, since_keepalive: 0 };
        j.session = j.call(json!({"janus": "create"})).await?["data"]["id"].as_u64().unwrap_or(0);
        let attached = j.call(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"})).await?;
        j.handle = attached["data"]["id"].as_u64().unwrap_or(0);
        anyhow::ensure!(j.session != 0 && j.handle != 0, "Janus gave no session or handle");
        Ok(j)
    }

    async fn send(&mut self, mut msg: Value) -> anyhow::Result<String> {
        let tx = format!("t{}", self.next_tx);
        self.next_tx += 1;
        msg["transaction"] = json!(tx);
        if self.session != 0 {
            msg["session_id"] = json!(self.session);
        }
        if self.handle != 0 && msg["janus"] != "attach" && msg["janus"] != "keepalive" {
            msg["handle_id"] = json!(self.handle);
        }
        self.ws.send(Message::text(msg.to_string())).await?;
        Ok(tx)
    }

    /// Sends and waits for the answer to this transaction that is not an `ack`.
    async fn call(&mut self, msg: Value) -> anyhow::Result<Value> {
        let tx = self.send(msg).await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = tokio::time::timeout_at(deadline.into(), self.next_text()).await??;
            let reply: Value = serde_json::from_str(&text)?;
            if reply["transaction"] != tx.as_str() || reply["janus"] == "ack" {
                continue;
            }
            if reply["janus"] == "error" {
                anyhow::bail!("Janus refused: {}", reply["error"]);
            }
            if let Some(error) = reply["plugindata"]["data"].get("error") {
                anyhow::bail!("VideoRoom refused: {error}");
            }
            return Ok(reply);
        }
    }

    /// A VideoRoom request (`body`), with an SDP (`jsep`) if given.
    async fn message(&mut self, body: Value, jsep: Option<Value>) -> anyhow::Result<Value> {
        let mut msg = json!({"janus": "message", "body": body});
        if let Some(jsep) = jsep {
            msg["jsep"] = jsep;
        }
        self.call(msg).await
    }
}

impl Signaling for Janus {
    async fn next_text(&mut self) -> anyhow::Result<String> {
        super::peer::next_text(&mut self.ws, "Janus").await
    }

    async fn on_text(&mut self, text: &str, _media: &mut Media) -> anyhow::Result<()> {
        let msg: Value = serde_json::from_str(text)?;
        if msg["janus"] == "hangup" {
            anyhow::bail!("Janus hung up: {}", msg["reason"]);
        }
        Ok(())
    }

    async fn tick(&mut self) -> anyhow::Result<()> {
        self.since_keepalive += 1;
        if self.since_keepalive >= KEEPALIVE_SECS {
            self.since_keepalive = 0;
            self.send(json!({"janus": "keepalive"})).await?;
        }
        Ok(())
    }
}

/// Creates `count` rooms for `publishers` publishers each; returns their numbers.
pub async fn create_rooms(url: &url::Url, count: usize, publishers: usize) -> anyhow::Result<Vec<u64>> {
    let mut j = Janus::open(url).await?;
    let mut rooms = Vec::new();
    for _ in 0..count.max(1) {
        let room = u64::from(rand_u32()) + 1_000_000;
        let body = json!({
            "request": "create", "room": room, "publishers": publishers.max(1), "bitrate": 0,
            "videocodec": "vp8", "audiocodec": "opus", "notify_joining": false, "permanent": false,
        });
        j.message(body, None).await?;
        rooms.push(room);
    }
    let _ = j.ws.close(None).await;
    Ok(rooms)
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() as u32
}

/// One participant against Janus; `plan.token` is the room number.
pub async fn run(plan: &Plan, clip: &Clip, seen: &mut Seen) -> anyhow::Result<()> {
    let started = Instant::now();
    let room: u64 = plan.token.parse()?;
    let mut j = Janus::open(&plan.signal_url).await?;
    let mut media = Media::new(plan.media_ip, plan.epoch, plan.window, clip.layers.len()).await?;
    match plan.role {
        Role::Publisher { audio } => {
            let offer = media.publish_offer(clip, audio)?;
            let body = json!({"request": "joinandconfigure", "room": room, "ptype": "publisher", "audio": audio, "video": true});
            let reply = j.message(body, Some(json!({"type": "offer", "sdp": offer.sdp}))).await?;
            let answer =
                reply["jsep"]["sdp"].as_str().ok_or_else(|| anyhow::anyhow!("no answer from Janus: {reply}"))?;
            media.joined_at = Instant::now();
            seen.joined_in = Some(media.joined_at - started);
            media.published(offer, answer)?;
        }
        Role::Subscriber { quality } => {
            let feeds = wait_for_publishers(&mut j, room, plan.publishers).await?;
            let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
            let body = json!({"request": "join", "room": room, "ptype": "subscriber", "streams": streams});
            let reply = j.message(body, None).await?;
            media.joined_at = Instant::now();
            seen.joined_in = Some(media.joined_at - started);
            let offer = reply["jsep"]["sdp"].as_str().ok_or_else(|| anyhow::anyhow!("no offer from Janus: {reply}"))?;
            let answer = media.answer(offer)?;
            j.message(json!({"request": "start"}), Some(json!({"type": "answer", "sdp": answer}))).await?;
            let substream = match quality {
                Quality::Low => 0,
                Quality::Medium => 1,
                Quality::High => 2,
            };
            let videos: Vec<Value> = reply["plugindata"]["data"]["streams"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["type"] == "video")
                .map(|s| json!({"mid": s["mid"], "substream": substream}))
                .collect();
            if !videos.is_empty() {
                j.message(json!({"request": "configure", "streams": videos}), None).await?;
            }
        }
    }
    drive(&mut j, &mut media, clip, plan.until, seen).await?;
    j.handle = 0;
    let _ = j.send(json!({"janus": "destroy"})).await;
    let _ = j.ws.close(None).await;
    Ok(())
}

/// The feeds publishing in `room`, once there are `expected` of them.
async fn wait_for_publishers(j: &mut Janus, room: u64, expected: usize) -> anyhow::Result<Vec<u64>> {
    let deadline = Instant::now() + PUBLISHERS_WAIT;
    loop {
        let reply = j.message(json!({"request": "listparticipants", "room": room}), None).await?;
        let feeds: Vec<u64> = reply["plugindata"]["data"]["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["publisher"] == true)
            .filter_map(|p| p["id"].as_u64())
            .collect();
        if feeds.len() >= expected || Instant::now() >= deadline {
            anyhow::ensure!(!feeds.is_empty(), "no publisher in Janus room {room}");
            return Ok(feeds);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
