//! `confer-cli load`: many participants in one or more rooms, to see what a server
//! carries (like LiveKit's `lk load-test`).
//!
//! Publishers send one pre-encoded [`clip::Clip`] (the load tool must not be the
//! bottleneck); subscribers take everything published in their room without decoding
//! ([`peer`]). At the end a table (or with `--json` one object) says how joins went and
//! what arrived: packets and bit rate, loss from sequence gaps, delay from RTP times.

pub mod clip;
mod janus;
mod media;
pub mod peer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use confer_client::api::{ApiClient, Call};
use confer_proto::room::{CreateRoom, Room, RoomPolicy};
use confer_proto::token::{CreateToken, Grants, TokenPair};
use confer_proto::track::Quality;
use confer_proto::RoomId;
use serde::Serialize;

use self::clip::{Clip, VideoFormat};
use self::peer::{Plan, Role, Seen, Target};
use crate::args::LoadArgs;

/// The steady-state window starts this long after the last join...
const WINDOW_SETTLE: Duration = Duration::from_secs(3);
/// ...and ends this long before everyone leaves.
const WINDOW_MARGIN: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Api(#[from] confer_client::api::ApiError),
    #[error("cannot prepare the media: {0}")]
    Media(String),
    #[error("{0}")]
    Args(String),
}

/// Percentiles of a sample.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Spread {
    pub p50: f64,
    pub p95: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Spread { p50: at(0.5), p95: at(0.95) }
    }
}

/// The result, as `--json` prints it (scripts depend on these names).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub participants: usize,
    pub rooms: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub duration_s: f64,
    /// Participants that could not join, or were cut off before the end.
    pub failures: usize,
    pub join_ms: Spread,
    /// From the join to the first frame received, over subscribers.
    pub first_frame_ms: Spread,
    /// Tracks received, over all subscribers.
    pub tracks: usize,
    /// RTP packets received, over all subscribers.
    pub packets_received: u64,
    pub packets_per_second: f64,
    pub mbit_per_second: f64,
    /// Lost packets over those sent (from gaps in sequence numbers).
    pub loss: f64,
    pub latency_ms: Spread,
    /// The first few failures, each with what happened.
    pub errors: Vec<String>,
    /// The steady state: from a moment after the last join to a moment before the end.
    pub steady: Steady,
}

/// What arrived in the steady state, and what it cost the server (with --server-pid).
#[derive(Debug, Clone, Serialize)]
pub struct Steady {
    pub seconds: f64,
    pub packets_received: u64,
    pub packets_per_second: f64,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_packet: Option<f64>,
}

/// Runs the load test; prints the table or the JSON on stdout.
pub async fn run(api: &ApiClient, url: &str, args: LoadArgs) -> Result<Summary, LoadError> {
    let format: VideoFormat = args.video.parse().map_err(LoadError::Args)?;
    let target = match args.target.as_str() {
        "confer" => Target::Confer,
        "janus" => Target::Janus,
        other => return Err(LoadError::Args(format!("--target is confer or janus, not {other}"))),
    };
    let janus_url = url::Url::parse(url).map_err(|e| LoadError::Args(format!("--url {url}: {e}")))?;
    let rooms = match target {
        Target::Confer => rooms(api, &args).await?,
        Target::Janus => janus::create_rooms(&janus_url, args.rooms, args.publishers)
            .await
            .map_err(|e| LoadError::Args(format!("cannot create Janus rooms at {url}: {e}")))?
            .into_iter()
            .map(|r| RoomId::from(r.to_string()))
            .collect(),
    };
    let simulcast = args.simulcast;
    let clip = tokio::task::spawn_blocking(move || Clip::encode(format, simulcast))
        .await
        .map_err(|e| LoadError::Media(e.to_string()))?
        .map_err(|e| LoadError::Media(e.to_string()))?;
    let clip = Arc::new(clip);
    let signal_url = match target {
        Target::Confer => confer_client::endpoint::signal_url(url).map_err(|e| LoadError::Args(e.to_string()))?,
        Target::Janus => janus_url,
    };
    let quality = match args.quality.as_str() {
        "low" => Quality::Low,
        "medium" => Quality::Medium,
        "high" => Quality::High,
        other => return Err(LoadError::Args(format!("--quality is low, medium or high, not {other}"))),
    };
    // Everyone's plan, publishers of each room first so that subscribers find them.
    let mut roles = Vec::new();
    for room in &rooms {
        for i in 0..args.publishers {
            roles.push((room.clone(), format!("pub-{i}"), Role::Publisher { audio: args.audio }));
        }
        for i in 0..args.subscribers {
            roles.push((room.clone(), format!("sub-{i}"), Role::Subscriber { quality }));
        }
    }
    let epoch = Instant::now();
    let mut plans = Vec::new();
    for (room, identity, role) in roles {
        let token = match target {
            Target::Confer => token(api, &room, &identity).await?,
            // Janus needs no token: the plan carries the room number.
            Target::Janus => room.to_string(),
        };
        plans.push((token, role));
    }
    // Joins are spread at --join-rate a second, then everyone stays for --duration.
    let stagger = Duration::from_secs(1) / args.join_rate.max(1);
    let started = Instant::now();
    let duration = Duration::from_secs(args.duration);
    let all_in = started + stagger * plans.len() as u32;
    let until = all_in + duration;
    // Steady state: from a moment after the last join (its handshakes done, queues
    // settled) to a moment before anyone leaves.
    let window = ((all_in + WINDOW_SETTLE).min(until), until.checked_sub(WINDOW_MARGIN).unwrap_or(until).max(all_in));
    let cpu = args.server_pid.map(|pid| tokio::spawn(server_cpu(pid, window)));
    let mut tasks = Vec::new();
    for (i, (token, role)) in plans.into_iter().enumerate() {
        let plan = Plan {
            signal_url: signal_url.clone(),
            token,
            role,
            media_ip: args.media_ip,
            until,
            epoch,
            target,
            publishers: args.publishers,
            window,
        };
        let clip = clip.clone();
        let start = started + stagger * i as u32;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let is_publisher = matches!(plan.role, Role::Publisher { .. });
            (is_publisher, peer::run(plan, clip).await)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        if let Ok(r) = t.await {
            results.push(r);
        }
    }
    let server_cpu = match cpu {
        Some(task) => task.await.ok().flatten(),
        None => None,
    };
    let measured = window.1.saturating_duration_since(window.0);
    Ok(summarize(&args, rooms.len(), results, duration, measured, server_cpu))
}

/// The server process's CPU time (user and system) over `window`, from /proc.
async fn server_cpu(pid: u32, window: (Instant, Instant)) -> Option<Duration> {
    let ticks = || -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces) close with ')'.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    };
    tokio::time::sleep_until(window.0.into()).await;
    let start = ticks()?;
    tokio::time::sleep_until(window.1.into()).await;
    let end = ticks()?;
    // Linux counts in USER_HZ, 100 a second on every architecture Confer builds for.
    Some(Duration::from_millis(end.saturating_sub(start) * 10))
}

fn summarize(
    args: &LoadArgs,
    rooms: usize,
    results: Vec<(bool, Seen)>,
    duration: Duration,
    measured: Duration,
    server_cpu: Option<Duration>,
) -> Summary {
    let subscribers: Vec<&Seen> = results.iter().filter(|(p, _)| !p).map(|(_, s)| s).collect();
    let packets: u64 = subscribers.iter().map(|s| s.packets).sum();
    let lost: u64 = subscribers.iter().map(|s| s.lost).sum();
    let bytes: u64 = subscribers.iter().map(|s| s.bytes).sum();
    let window_packets: u64 = subscribers.iter().map(|s| s.window_packets).sum();
    let secs = duration.as_secs_f64().max(0.001);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Summary {
        participants: results.len(),
        rooms,
        publishers: args.publishers * rooms,
        subscribers: args.subscribers * rooms,
        duration_s: secs,
        failures: results.iter().filter(|(_, s)| s.error.is_some()).count(),
        join_ms: Spread::of(results.iter().filter_map(|(_, s)| s.joined_in.map(ms)).collect()),
        first_frame_ms: Spread::of(subscribers.iter().filter_map(|s| s.first_frame_in.map(ms)).collect()),
        tracks: subscribers.iter().map(|s| s.tracks).sum(),
        packets_received: packets,
        packets_per_second: packets as f64 / secs,
        mbit_per_second: bytes as f64 * 8.0 / secs / 1e6,
        loss: if packets + lost == 0 { 0.0 } else { lost as f64 / (packets + lost) as f64 },
        latency_ms: Spread::of(
            subscribers.iter().flat_map(|s| s.delays_us.iter().map(|d| f64::from(*d) / 1000.0)).collect(),
        ),
        errors: results.iter().filter_map(|(_, s)| s.error.clone()).take(5).collect(),
        steady: Steady {
            seconds: measured.as_secs_f64(),
            packets_received: window_packets,
            packets_per_second: window_packets as f64 / measured.as_secs_f64().max(0.001),
            server_cpu_s: server_cpu.map(|d| d.as_secs_f64()),
            server_cpu_us_per_packet: server_cpu
                .filter(|_| window_packets > 0)
                .map(|d| d.as_secs_f64() * 1e6 / window_packets as f64),
        },
    }
}

/// The rooms to load: the one named, or new ones.
async fn rooms(api: &ApiClient, args: &LoadArgs) -> Result<Vec<RoomId>, LoadError> {
    if let Some(room) = &args.room {
        return Ok(vec![room.as_str().into()]);
    }
    let mut rooms = Vec::new();
    for i in 0..args.rooms.max(1) {
        let create = CreateRoom {
            id: None,
            name: format!("load {i}"),
            members: Vec::new(),
            managers: Vec::new(),
            public_meta: Default::default(),
            private_meta: Default::default(),
            policy: RoomPolicy::default(),
        };
        let room: Room = api.send_as(&Call::CreateRoom(create)).await?;
        rooms.push(room.id);
    }
    Ok(rooms)
}

async fn token(api: &ApiClient, room: &RoomId, identity: &str) -> Result<String, LoadError> {
    let create = CreateToken {
        room: room.clone(),
        identity: identity.into(),
        name: Some(identity.to_owned()),
        ttl: Some(86_400),
        grants: Grants::default(),
    };
    let pair: TokenPair = api.send_as(&Call::CreateToken(create)).await?;
    Ok(pair.token)
}

impl Summary {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let mut row = |k: &str, v: String| t.push_str(&format!("{k:<24}{v}\n"));
        row(
            "participants",
            format!(
                "{} in {} room(s): {} publishing, {} subscribing",
                self.participants, self.rooms, self.publishers, self.subscribers
            ),
        );
        row("duration", format!("{:.1} s", self.duration_s));
        row("joins", format!("p50 {:.0} ms, p95 {:.0} ms", self.join_ms.p50, self.join_ms.p95));
        row(
            "first frame",
            format!("p50 {:.0} ms, p95 {:.0} ms after joining", self.first_frame_ms.p50, self.first_frame_ms.p95),
        );
        row("tracks received", self.tracks.to_string());
        row("forwarded", format!("{:.0} packets/s, {:.1} Mbit/s", self.packets_per_second, self.mbit_per_second));
        row("loss", format!("{:.2} %", self.loss * 100.0));
        row("latency", format!("p50 {:.1} ms, p95 {:.1} ms", self.latency_ms.p50, self.latency_ms.p95));
        row("failures", self.failures.to_string());
        if let Some(us) = self.steady.server_cpu_us_per_packet {
            row(
                "server CPU",
                format!("{us:.1} us per packet received ({:.0} packets/s steady)", self.steady.packets_per_second),
            );
        }
        for e in &self.errors {
            row("  error", e.clone());
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let s = Spread::of((1..=100).map(f64::from).collect());
        assert_eq!(s.p50, 51.0);
        assert_eq!(s.p95, 95.0);
        assert_eq!(Spread::of(Vec::new()), Spread::default());
    }
}
