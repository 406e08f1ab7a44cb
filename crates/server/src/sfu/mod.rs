//! The selective forwarding unit: every participant's media connections, on one UDP
//! port, in one thread.
//!
//! Each participant has up to two WebRTC connections to the server: a *publisher*
//! connection (the client offers, the server answers) that carries what it sends, and a
//! *subscriber* connection (the server offers) that carries what it receives. Both are
//! [`str0m::Rtc`] instances in ICE-lite mode, all sharing one socket and demultiplexed
//! with [`str0m::Rtc::accepts`].
//!
//! The [`router`] thread owns the socket and every `Rtc`; nothing else touches them. The
//! hub (signaling state) drives it with [`Command`]s and hears back through
//! [`SfuEvent`]s, so the hub never waits on media and the media thread never takes the
//! hub's lock. Forwarding works on whole frames (str0m's frame mode): the SFU never
//! decodes, but it sees frame boundaries and keyframes, which is what simulcast layer
//! switching and clean starts need. str0m renumbers sequence numbers and SSRCs per
//! outgoing track; [`forward`] rewrites RTP time so that switches are seamless.

mod audio_level;
mod downlink;
mod forward;
mod metrics;
mod negotiation;
mod peer;
mod router;

use std::net::SocketAddr;

use confer_proto::track::{AudioLevel, NetworkMetrics, Quality, SubscribedTrack, TrackId, TrackKind};
use confer_proto::{ParticipantId, RoomId};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;

/// Where the SFU listens and what it tells clients.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    pub udp_addr: SocketAddr,
    /// The candidate address put in SDP; `None` means the bound address.
    pub advertise_addr: Option<SocketAddr>,
}

/// A track to be received on a publisher connection.
#[derive(Debug, Clone)]
pub struct IncomingTrack {
    pub track_id: TrackId,
    /// The media section of the publisher's offer that carries it; for a data track, the
    /// label of its data channel.
    pub mid: String,
    pub kind: TrackKind,
    pub simulcast: bool,
    /// Muted at publish time: nothing is forwarded until unmuted.
    pub muted: bool,
}

/// A track to be sent on a subscriber connection.
#[derive(Debug, Clone)]
pub struct OutgoingTrack {
    pub track_id: TrackId,
    pub kind: TrackKind,
}

/// Which of a subscribed stream's tracks flow, and at what quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wants {
    pub audio: bool,
    pub video: bool,
    pub quality: Quality,
}

/// The publisher connection's answer, and the codec chosen for each track.
#[derive(Debug, Clone)]
pub struct PublishAnswer {
    pub sdp: String,
    pub codecs: Vec<(TrackId, String)>,
}

/// What the hub asks of the media thread.
#[derive(Debug)]
pub enum Command {
    /// Apply a publisher offer and start receiving `tracks`.
    Publish {
        room: RoomId,
        participant: ParticipantId,
        tracks: Vec<IncomingTrack>,
        offer: String,
        reply: oneshot::Sender<Result<PublishAnswer, ApiError>>,
    },
    /// Stop receiving (and forwarding) these tracks.
    Unpublish {
        participant: ParticipantId,
        tracks: Vec<TrackId>,
    },
    /// Pause or resume forwarding of a track: `muted` by its publisher, `censored` by a
    /// moderator. It flows only when neither.
    SetTrackState {
        track_id: TrackId,
        muted: bool,
        censored: bool,
    },
    /// Send a stream's tracks to a subscriber (adding them to its connection).
    Subscribe {
        room: RoomId,
        subscriber: ParticipantId,
        publisher: ParticipantId,
        key: String,
        tracks: Vec<OutgoingTrack>,
        wants: Wants,
    },
    UpdateSubscription {
        subscriber: ParticipantId,
        tracks: Vec<TrackId>,
        wants: Wants,
    },
    Unsubscribe {
        subscriber: ParticipantId,
        tracks: Vec<TrackId>,
    },
    /// Renegotiate an existing publisher connection (ICE restart, new data channels).
    PublisherOffer {
        participant: ParticipantId,
        offer: String,
        reply: oneshot::Sender<Result<String, ApiError>>,
    },
    /// Offer the subscriber connection again with new ICE credentials.
    RestartSubscriber {
        participant: ParticipantId,
    },
    /// The subscriber's answer to the last offer.
    Answer {
        participant: ParticipantId,
        sdp: String,
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    /// The participant is gone: close both its connections.
    Remove {
        participant: ParticipantId,
    },
    /// Include these participants' network metrics in [`SfuEvent::Metrics`].
    WatchMetrics {
        room: RoomId,
        participants: Vec<ParticipantId>,
    },
    /// Close every connection and end the media thread.
    Stop,
}

/// What the media thread tells the hub.
#[derive(Debug)]
pub enum SfuEvent {
    /// Subscriptions whose tracks were added to `participant`'s subscriber connection,
    /// as (publisher, stream key, tracks), and the offer that adds them. A change that
    /// needs no negotiation (a data channel on a connection that has data channels
    /// already) comes without an offer.
    SubscriberOffer {
        room: RoomId,
        participant: ParticipantId,
        sdp: Option<String>,
        started: Vec<(ParticipantId, String, Vec<SubscribedTrack>)>,
    },
    /// A media connection died (consent timeout, DTLS failure, never connected).
    PeerFailed { room: RoomId, participant: ParticipantId, publisher: bool },
    /// Audio levels in a room, at most every [`audio_level::INTERVAL`].
    AudioActivity { room: RoomId, levels: Vec<AudioLevel>, active_speaker: Option<ParticipantId> },
    /// Network metrics of watched participants, every few seconds.
    Metrics { room: RoomId, reports: Vec<NetworkMetrics> },
}

/// The hub's end of the media thread.
#[derive(Debug, Clone)]
pub struct SfuHandle {
    commands: mpsc::UnboundedSender<Command>,
    local_addr: SocketAddr,
}

impl SfuHandle {
    /// Queues a command; a no-op once the media thread has stopped.
    pub fn send(&self, command: Command) {
        if self.commands.send(command).is_err() {
            tracing::debug!("media thread has stopped; command dropped");
        }
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// A running media thread. Dropping every [`SfuHandle`] stops it.
pub struct Sfu {
    pub handle: SfuHandle,
    pub events: mpsc::UnboundedReceiver<SfuEvent>,
    pub thread: std::thread::JoinHandle<()>,
}

impl Sfu {
    /// Binds the UDP socket and starts the media thread.
    pub fn start(config: &SfuConfig) -> anyhow::Result<Sfu> {
        // Idempotent; the first provider installed in the process wins.
        str0m::crypto::from_feature_flags().install_process_default();
        let socket = std::net::UdpSocket::bind(config.udp_addr)
            .map_err(|e| anyhow::anyhow!("cannot bind media UDP {}: {e}", config.udp_addr))?;
        socket.set_nonblocking(true)?;
        let local_addr = socket.local_addr()?;
        let advertise = config.advertise_addr.unwrap_or(local_addr);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new().name("confer-sfu".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the media thread's runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                match tokio::net::UdpSocket::from_std(socket) {
                    Ok(socket) => router::Router::new(socket, advertise, event_tx).run(command_rx).await,
                    Err(e) => tracing::error!(error = %e, "cannot register the media socket"),
                }
            });
        })?;
        tracing::info!(udp = %local_addr, %advertise, "media (SFU) listening");
        Ok(Sfu { handle: SfuHandle { commands, local_addr }, events, thread })
    }
}
