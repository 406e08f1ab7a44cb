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
pub struct Sink(Option<mpsc::Sender<Value>>);

impl Sink {
    /// Queues `event` about `room`, with `fields` (a JSON object) merged in, but for
    /// those that are null.
    pub fn send(&self, event: &str, room: &RoomId, fields: Value) {
        let Some(tx) = &self.0 else { return };
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
            tracing::warn!(event, %room, "webhook queue full: event dropped");
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
    (Sink(Some(tx)), task)
}

async fn deliver_all(
    mut rx: mpsc::Receiver<Value>,
    urls: Vec<String>,
    secret: String,
    node: Option<String>,
    http: reqwest::Client,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let mut event = tokio::select! {
            event = rx.recv() => match event { Some(e) => e, None => return },
            _ = stopped.wait_for(|s| *s) => break,
        };
        if let (Some(node), Some(obj)) = (&node, event.as_object_mut()) {
            obj.insert("node".into(), node.clone().into());
        }
        let body = event.to_string();
        for url in &urls {
            deliver(&http, url, &secret, &body, &event).await;
        }
    }
    // Stopping: what is queued gets one try each, for a short while.
    let flush = async {
        while let Ok(event) = rx.try_recv() {
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

/// The hex HMAC-SHA256 under `secret` of `<t>.<body>`.
pub fn sign(secret: &str, t: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
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
}
