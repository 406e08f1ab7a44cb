//! What an operator can watch: `/metrics` in the Prometheus text format.
//!
//! The SFU's counters live with its workers ([`crate::sfu::driver::WorkerMetrics`]: each
//! worker adds to its own, labelled `worker`); rooms, participants and tracks are read
//! from the hub when scraped; errors are counted by catalog name as they are answered,
//! over HTTP and over signaling.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use confer_proto::ErrorCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::hub::Hub;
use crate::sfu::driver::SfuMetrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    code: String,
    via: &'static str,
}

pub struct Metrics {
    registry: Registry,
    rooms: Gauge,
    participants: Gauge,
    tracks: Gauge,
    signaling_connections: Gauge<i64, AtomicI64>,
    errors: Family<ErrorLabels, Counter>,
}

impl Metrics {
    pub fn new(sfu: &SfuMetrics) -> Self {
        let mut registry = Registry::with_prefix("confer");
        let rooms = Gauge::default();
        let participants = Gauge::default();
        let tracks = Gauge::default();
        let signaling_connections = Gauge::default();
        let errors = Family::default();
        registry.register("rooms", "Rooms with a live session", rooms.clone());
        registry.register("participants", "Participants in live sessions", participants.clone());
        registry.register("tracks", "Tracks published in live sessions", tracks.clone());
        registry.register("signaling_connections", "Open signaling WebSockets", signaling_connections.clone());
        registry.register("errors", "Errors answered, by catalog name and channel", errors.clone());
        registry.register(
            "sfu_dropped_packets",
            "Packets dropped before a worker (its queue full)",
            sfu.dropped.clone(),
        );
        for (index, w) in sfu.workers.iter().enumerate() {
            let r = registry.sub_registry_with_label(("worker".into(), index.to_string().into()));
            r.register("sfu_packets_received", "Media packets received", w.packets_in.clone());
            r.register("sfu_bytes_received", "Media bytes received", w.bytes_in.clone());
            r.register("sfu_packets_sent", "Media packets sent", w.packets_out.clone());
            r.register("sfu_bytes_sent", "Media bytes sent", w.bytes_out.clone());
            r.register("sfu_unrouted_packets", "Packets that matched no transport", w.unrouted.clone());
            r.register("sfu_packets_forwarded", "RTP packets written to subscribers", w.packets_forwarded.clone());
            r.register("sfu_plis_sent", "Keyframe requests (PLI) sent to publishers", w.keyframe_requests.clone());
            r.register("sfu_nacks_received", "Retransmission requests from subscribers", w.nacks_received.clone());
            r.register("sfu_nacks_sent", "Retransmission requests sent to publishers", w.nacks_sent.clone());
            r.register("sfu_layer_switches", "Simulcast layer switches", w.layer_switches.clone());
            r.register("sfu_congestion_limits", "Subscriber paths limited by congestion", w.congestion_limits.clone());
            r.register("sfu_panics", "Panics caught and contained", w.panics.clone());
            r.register("sfu_busy_seconds", "Time the worker spent working", w.busy_seconds.clone());
            r.register("sfu_cpu_seconds", "CPU time of the worker's thread", w.cpu_seconds.clone());
            r.register(
                "sfu_packet_seconds",
                "Time to handle one received packet, forwarding included",
                w.packet_seconds.clone(),
            );
            r.register("sfu_rooms", "Rooms on the worker", w.rooms.clone());
            r.register("sfu_transports", "Media transports on the worker", w.transports.clone());
        }
        Self { registry, rooms, participants, tracks, signaling_connections, errors }
    }

    /// Counts an error answered over `via` (`http` or `signaling`).
    pub fn error(&self, code: ErrorCode, via: &'static str) {
        self.errors.get_or_create(&ErrorLabels { code: code.name().to_owned(), via }).inc();
    }

    /// A signaling connection opened; it counts until the guard is dropped.
    pub fn signaling_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.signaling_connections.inc();
        ConnectionGuard(self.clone())
    }

    /// The text exposition, with the hub's gauges read now.
    pub fn render(&self, hub: &Hub) -> String {
        let census = hub.census();
        self.rooms.set(census.rooms as i64);
        self.participants.set(census.participants as i64);
        self.tracks.set(census.tracks as i64);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// Keeps a signaling connection counted.
pub struct ConnectionGuard(Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.signaling_connections.dec();
    }
}
