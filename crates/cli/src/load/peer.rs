//! One simulated participant of a load test: Confer's signaling over a WebSocket and a
//! str0m peer connection on its own UDP socket, as `docs/protocol.md` describes them.
//!
//! A publisher publishes one stream (video, with simulcast if asked, and audio) and sends
//! the pre-encoded [`Clip`]. A subscriber subscribes to every stream in the room as it
//! appears and receives without decoding: it counts packets and the gaps in their
//! sequence numbers, and takes each video frame's delay from the send time stamped at
//! its end (a clock all participants of the process share).

use std::sync::Arc;
use std::time::{Duration, Instant};

use confer_proto::signal::{ClientMessage, Event, JoinRequest, Outcome, Reply, Request, ServerMessage};
use confer_proto::track::{PublishTrack, Quality, SubscriptionOptions, TrackKind, TrackSource};
use confer_proto::ParticipantId;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::clip::Clip;
use super::media::{drive, Media, Signaling};

/// What a participant does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publisher { audio: bool },
    Subscriber { quality: Quality },
}

/// One participant's plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub signal_url: url::Url,
    pub token: String,
    pub role: Role,
    /// The local address to send media from (its port is chosen by the system).
    pub media_ip: std::net::IpAddr,
    /// When to leave.
    pub until: Instant,
    /// The shared clock RTP times are taken from.
    pub epoch: Instant,
    pub target: Target,
    /// Publishers per room (a Janus subscriber waits for them).
    pub publishers: usize,
    /// Where steady-state counts are taken.
    pub window: (Instant, Instant),
}

/// The server under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Confer,
    /// Janus's VideoRoom plugin, over its WebSocket API.
    Janus,
}

/// What one participant saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub joined_in: Option<Duration>,
    /// From the join to the first media frame received.
    pub first_frame_in: Option<Duration>,
    pub tracks: usize,
    pub packets: u64,
    pub lost: u64,
    pub bytes: u64,
    /// Packets received in the measuring window (everyone in, queues settled).
    pub window_packets: u64,
    /// A sample of frame delays, in microseconds.
    pub delays_us: Vec<u32>,
    pub error: Option<String>,
}

pub(crate) type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Runs one participant to `plan.until`; never panics on the network's account.
pub async fn run(plan: Plan, clip: Arc<Clip>) -> Seen {
    let mut seen = Seen::default();
    let result = match plan.target {
        Target::Confer => Confer::run(&plan, &clip, &mut seen).await,
        Target::Janus => super::janus::run(&plan, &clip, &mut seen).await,
    };
    if let Err(e) = result {
        seen.error = Some(e.to_string());
    }
    seen
}

/// Confer's signaling, as `docs/protocol.md` describes it.
struct Confer {
    ws: Ws,
    next_id: u64,
    me: Option<ParticipantId>,
    role: Role,
}

impl Confer {
    async fn run(plan: &Plan, clip: &Clip, seen: &mut Seen) -> anyhow::Result<()> {
        let started = Instant::now();
        let (ws, _) = tokio_tungstenite::connect_async(plan.signal_url.as_str()).await?;
        let mut media = Media::new(plan.media_ip, plan.epoch, plan.window, clip.layers.len()).await?;
        let mut c = Confer { ws, next_id: 1, me: None, role: plan.role };
        let join = JoinRequest {
            token: plan.token.clone(),
            room: None,
            protocol: confer_proto::PROTOCOL_VERSION,
            name: None,
            context: serde_json::Value::Null,
            resume: None,
        };
        let snapshot = match c.request(Request::Join(join)).await? {
            Reply::Joined(s) => s,
            other => anyhow::bail!("unexpected answer to the join: {other:?}"),
        };
        media.joined_at = Instant::now();
        seen.joined_in = Some(media.joined_at - started);
        c.me = Some(snapshot.participant.id.clone());
        match plan.role {
            Role::Publisher { audio } => {
                let offer = media.publish_offer(clip, audio)?;
                let mut tracks = vec![PublishTrack {
                    mid: offer.video.to_string(),
                    source: Some(TrackSource::Camera),
                    kind: TrackKind::Video,
                    simulcast: offer.simulcast,
                    muted: false,
                }];
                if let Some(mid) = offer.audio {
                    tracks.push(PublishTrack {
                        mid: mid.to_string(),
                        source: Some(TrackSource::Microphone),
                        kind: TrackKind::Audio,
                        simulcast: false,
                        muted: false,
                    });
                }
                let publish = Request::Publish { key: "main".into(), tracks, sdp: offer.sdp.clone() };
                let Reply::Published { sdp, .. } = c.request(publish).await? else {
                    anyhow::bail!("unexpected answer to the publish");
                };
                media.published(offer, &sdp)?;
            }
            Role::Subscriber { quality } => {
                for other in &snapshot.participants {
                    for s in &other.streams {
                        let options = SubscriptionOptions { audio: true, video: true, quality };
                        let subscribe =
                            Request::Subscribe { participant_id: other.id.clone(), key: s.key.clone(), options };
                        c.send(subscribe).await?;
                    }
                }
            }
        }
        drive(&mut c, &mut media, clip, plan.until, seen).await?;
        // Leave for good (not a dropped connection the server would hold for a resume).
        let _ = tokio::time::timeout(Duration::from_secs(2), c.request(Request::Leave)).await;
        let _ = c.ws.close(None).await;
        Ok(())
    }

    async fn send(&mut self, request: Request) -> anyhow::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let text = serde_json::to_string(&ClientMessage { id, request })?;
        self.ws.send(Message::text(text)).await?;
        Ok(id)
    }

    /// Sends a request and waits for its answer, passing over the events before it.
    async fn request(&mut self, request: Request) -> anyhow::Result<Reply> {
        let id = self.send(request).await?;
        loop {
            let text = tokio::time::timeout(Duration::from_secs(20), self.next_text()).await??;
            if let ServerMessage::Response { id: Some(r), outcome } = serde_json::from_str::<ServerMessage>(&text)? {
                if r == id {
                    return match outcome {
                        Outcome::Result(reply) => Ok(reply),
                        Outcome::Error(e) => anyhow::bail!("{} ({}): {}", e.name, e.code, e.message),
                    };
                }
            }
        }
    }
}

/// The next text frame on a signaling WebSocket (pings and binary frames skipped); an
/// error once `server` closed it.
pub(crate) async fn next_text(ws: &mut Ws, server: &str) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("{server} closed the signaling connection"),
        }
    }
}

impl Signaling for Confer {
    async fn next_text(&mut self) -> anyhow::Result<String> {
        next_text(&mut self.ws, "the server").await
    }

    async fn on_text(&mut self, text: &str, media: &mut Media) -> anyhow::Result<()> {
        let Ok(ServerMessage::Event { event, .. }) = serde_json::from_str::<ServerMessage>(text) else { return Ok(()) };
        match event {
            Event::StreamPublished { participant_id, stream } if Some(&participant_id) != self.me.as_ref() => {
                if let Role::Subscriber { quality } = self.role {
                    let options = SubscriptionOptions { audio: true, video: true, quality };
                    self.send(Request::Subscribe { participant_id, key: stream.key, options }).await?;
                }
            }
            Event::SubscriberOffer { sdp } => {
                let answer = media.answer(&sdp)?;
                self.send(Request::SubscriberAnswer { sdp: answer }).await?;
            }
            Event::Disconnected { reason } => anyhow::bail!("disconnected by the server: {reason:?}"),
            _ => {}
        }
        Ok(())
    }
}
