//! Webhooks: room and participant events posted to the operator's backend
//! (`--webhook-url`).
//!
//! Events: `room_started`, `room_finished`, `participant_joined`, `participant_left`,
//! `track_published`, `track_unpublished`. Each is a `POST` of one JSON object with a
//! unique `id`, the `event` name, `created_at` (Unix ms), the `room`, the `node` that
//! sent it (in a cluster) and the event's own fields. Only the node holding a room's
//! session sees its events, so a cluster sends each event once.
//!
//! The `Confer-Signature` header is `t=<unix seconds>,v1=<hex>`, where the hex is
//! HMAC-SHA256 under the API secret of `<t>.<body>`: a receiver checks it and refuses
//! old times, as with Stripe's. A delivery that fails for want of a connection, a
//! timeout, a 429 or a 5xx is tried again after 1, 2, 4, 8 and 16 s; a receiver may see
//! an event twice when its answer was lost, and tells by the `id`. Events go out in
//! the order they happened, one at a time; when a receiver is down for long, those that
//! no longer fit the queue are dropped, with a warning.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use confer_proto::RoomId;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{mpsc, watch};

/// Events waiting for delivery before new ones are dropped.
const QUEUE: usize = 10_000;
/// Waits between the tries of one delivery.
const RETRIES: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];
/// How long a receiver may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping server keeps delivering what is queued.
const FLUSH: Duration = Duration::from_secs(3);
pub const SIGNATURE_HEADER: &str = "confer-signature";

/// Where the hub hands its events; does nothing without webhooks configured.
#[derive(Debug, Clone, Default)]
pub struct Sink(Option<(mpsc::Sender<Value>, Arc<AtomicU64>)>);

impl Sink {
    /// Queues `event` about `room`, with `fields` (a JSON object) merged in, but for
    /// those that are null.
    pub fn send(&self, event: &str, room: &RoomId, fields: Value) {
        let Some((tx, dropped)) = &self.0 else { return };
        let unix_ms = crate::hub::Now::system().unix_ms;
        let mut body = json!({
            "id": crate::auth::random_secret(12),
            "event": event,
            "created_at": unix_ms,
            "room": { "id": room },
        });
        if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) {
            body.extend(fields.into_iter().filter(|(_, v)| !v.is_null()));
        }
        if tx.try_send(body).is_err() {
            // Logged at the 1st, 2nd, 4th, 8th... drop: a receiver down for long does not
            // flood the log.
            let n = dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(event, %room, dropped = n, "webhook queue full: events dropped");
            }
        }
    }
}

/// Starts delivering to `urls`, signed with `secret`; `node` names this node in the
/// events. The task ends once `stopped` turns true and the queue is flushed (or
/// [`FLUSH`] has passed).
pub fn start(
    urls: Vec<String>,
    secret: String,
    node: Option<String>,
    http: reqwest::Client,
    stopped: watch::Receiver<bool>,
) -> (Sink, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    tracing::info!(urls = ?urls, "webhooks on");
    let task = tokio::spawn(deliver_all(rx, urls, secret, node, http, stopped));
    (Sink(Some((tx, Arc::default()))), task)
}

async fn deliver_all(
    mut rx: mpsc::Receiver<Value>,
    urls: Vec<String>,
    secret: String,
    node: Option<String>,
    http: reqwest::Client,
    mut stopped: watch::Receiver<bool>,
) {
    let stamp = |mut event: Value| {
        if let (Some(node), Some(obj)) = (&node, event.as_object_mut()) {
            obj.insert("node".into(), node.clone().into());
        }
        event
    };
    // The event whose retries the stop cut short.
    let mut interrupted = None;
    loop {
        let event = tokio::select! {
            event = rx.recv() => match event { Some(e) => stamp(e), None => return },
            _ = stopped.wait_for(|s| *s) => break,
        };
        let body = event.to_string();
        let delivered = async {
            for url in &urls {
                deliver(&http, url, &secret, &body, &event).await;
            }
        };
        tokio::select! {
            () = delivered => {}
            _ = stopped.wait_for(|s| *s) => {
                interrupted = Some(event);
                break;
            }
        }
    }
    // Stopping: what is queued gets one try each, for a short while.
    let flush = async {
        let queued = std::iter::from_fn(|| rx.try_recv().ok().map(stamp));
        for event in interrupted.into_iter().chain(queued) {
            for url in &urls {
                let _ = post(&http, url, &secret, &event.to_string()).await;
            }
        }
    };
    let _ = tokio::time::timeout(FLUSH, flush).await;
}

/// Delivers one event to one receiver, with retries.
async fn deliver(http: &reqwest::Client, url: &str, secret: &str, body: &str, event: &Value) {
    let name = event["event"].as_str().unwrap_or_default();
    for (attempt, wait) in std::iter::once(Duration::ZERO).chain(RETRIES).enumerate() {
        tokio::time::sleep(wait).await;
        match post(http, url, secret, body).await {
            Ok(()) => return,
            Err(Failure::Final(why)) => {
                tracing::warn!(url, event = name, %why, "webhook refused: not retried");
                return;
            }
            Err(Failure::Retry(why)) => {
                tracing::info!(url, event = name, attempt = attempt + 1, %why, "webhook delivery failed");
            }
        }
    }
    tracing::warn!(url, event = name, id = %event["id"], "webhook not delivered after every retry: dropped");
}

enum Failure {
    Retry(String),
    Final(String),
}

async fn post(http: &reqwest::Client, url: &str, secret: &str, body: &str) -> Result<(), Failure> {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let answer = http
        .post(url)
        .timeout(TIMEOUT)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, format!("t={t},v1={}", sign(secret, t, body)))
        .body(body.to_owned())
        .send()
        .await
        .map_err(|e| Failure::Retry(e.to_string()))?;
    let status = answer.status();
    match status.as_u16() {
        200..=299 => Ok(()),
        429 | 500..=599 => Err(Failure::Retry(status.to_string())),
        _ => Err(Failure::Final(status.to_string())),
    }
}

/// Whether `header` (a `Confer-Signature` value) signs `body` under `secret`, made at
/// most `tolerance` seconds away from `now` (Unix seconds): what a receiver checks.
pub fn verify(secret: &str, header: &str, body: &str, now: u64, tolerance: u64) -> bool {
    let mut t = None;
    let mut signatures = vec![];
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<u64>().ok(),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if t.abs_diff(now) > tolerance {
        return false;
    }
    let mac = mac(secret, t, body);
    // `verify_slice` compares in constant time.
    signatures.iter().filter_map(|v1| hex::decode(v1).ok()).any(|v1| mac.clone().verify_slice(&v1).is_ok())
}

/// The hex HMAC-SHA256 under `secret` of `<t>.<body>`.
pub fn sign(secret: &str, t: u64, body: &str) -> String {
    hex::encode(mac(secret, t, body).finalize().into_bytes())
}

fn mac(secret: &str, t: u64, body: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_an_hmac_of_the_time_and_body() {
        // Known answer, computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            sign("secret", 1_700_000_000, "{}"),
            "b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }

    #[test]
    fn a_receiver_accepts_a_fresh_signature_of_the_body_only() {
        let body = r#"{"event":"room_started"}"#;
        let header = format!("t=1700000000,v1={}", sign("secret", 1_700_000_000, body));
        assert!(verify("secret", &header, body, 1_700_000_100, 300));
        assert!(!verify("secret", &header, body, 1_700_000_400, 300), "too old");
        assert!(!verify("other", &header, body, 1_700_000_000, 300), "another secret");
        assert!(!verify("secret", &header, r#"{"event":"room_finished"}"#, 1_700_000_000, 300), "another body");
        for bad in ["", "t=1700000000", "v1=00", "t=x,v1=zz", "t=1700000000,v1=abc"] {
            assert!(!verify("secret", bad, body, 1_700_000_000, 300), "{bad:?}");
        }
    }
}
