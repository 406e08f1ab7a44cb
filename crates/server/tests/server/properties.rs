//! Property tests of every input a peer controls: signaling frames and requests, room API
//! bodies, paths and queries, join-token claims, and SDP offers into the SFU. Whatever
//! comes in, the answer is success or an error from the catalog (never a panic, a hang
//! or a 500), and the server still answers afterwards.

use std::sync::atomic::{AtomicU64, Ordering};

use confer_proto::signal::{Outcome, Request, ServerMessage};
use confer_proto::{ErrorBody, ErrorCode};
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// Field names of the protocol, so that generated objects often hit real fields.
#[rustfmt::skip]
const FIELDS: &[&str] = &[
    "id", "request", "type", "key", "tracks", "sdp", "participant_id", "options", "token", "mid", "kind", "source",
    "simulcast", "muted", "text", "to", "audio", "video", "quality", "track_id", "participants", "resume", "name",
    "context", "room", "protocol", "resume_token", "last_seq", "identity", "grants", "ttl", "publish", "subscribe",
    "data", "moderator", "guest", "publish_sources", "policy", "members", "managers", "public_meta", "private_meta",
    "max_participants", "allow_guests", "audio_only", "max_uses", "invite", "refresh_token", "version", "skip",
    "limit", "sort", "iss", "sub", "iat", "nbf", "exp", "jti",
];

/// Values of the protocol's enumerations and request types.
#[rustfmt::skip]
const WORDS: &[&str] = &[
    "join", "leave", "publish", "unpublish", "update_stream", "subscribe", "update_subscription", "unsubscribe",
    "subscriber_answer", "publisher_offer", "restart_subscriber", "send_message", "kick", "update_token", "ping",
    "censor", "uncensor", "set_network_metrics", "audio", "video", "data", "microphone", "camera", "screen_share",
    "screen_share_audio", "low", "medium", "high", "main", "screen", "r", "a", "PA_x", "TR_x", "created", "name",
];

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(WORDS).prop_map(str::to_owned),
        2 => "\\PC{0,24}",
        1 => Just(String::new()),
        1 => (0usize..5000).prop_map(|n| "x".repeat(n)),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(|f| json!(f)),
        arb_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(FIELDS), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// An object with protocol field names: most inputs a server meets are almost right.
fn arb_object() -> impl Strategy<Value = Value> {
    proptest::collection::vec((proptest::sample::select(FIELDS), arb_json()), 0..8)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>()))
}

/// A signaling frame: a request of a real type with arbitrary fields, or anything.
fn arb_frame() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (any::<u32>(), proptest::sample::select(WORDS), arb_object()).prop_map(|(id, ty, mut body)| {
            body["type"] = json!(ty);
            json!({ "id": id, "request": body }).to_string()
        }),
        2 => arb_json().prop_map(|v| v.to_string()),
        1 => "\\PC{0,64}",
    ]
}

/// A runtime for the properties' async bodies, and a server in it with room `r`.
fn server_with_room() -> (tokio::runtime::Runtime, TestServer) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let t = rt.block_on(async {
        let t = TestServer::start().await;
        t.create_room(json!({"id": "r", "name": "r"})).await;
        t
    });
    (rt, t)
}

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig { cases: n, failure_persistence: None, ..ProptestConfig::default() }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads server frames until the answer to `id` (or an answer without id), checking
/// each is a frame of the protocol. `None` when the connection closed first.
async fn answer(ws: &mut Ws, id: Option<u64>) -> Option<Outcome> {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next()).await.expect("an answer in time")?;
        let text = match frame {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        };
        // Deserializing checks the error codes too: only the catalog's are known.
        let msg: ServerMessage =
            serde_json::from_str(text.as_str()).unwrap_or_else(|e| panic!("not a frame of the protocol ({e}): {text}"));
        if let ServerMessage::Response { id: rid, outcome } = msg {
            if rid.is_none() || rid == id {
                return Some(outcome);
            }
        }
    }
}

/// A fresh connection, joined as a new identity in room `r`.
async fn joined(t: &TestServer, n: &AtomicU64) -> Ws {
    let identity = format!("p{}", n.fetch_add(1, Ordering::Relaxed));
    let (mut ws, _) = tokio_tungstenite::connect_async(t.ws_url()).await.unwrap();
    let join = json!({"id": 0, "request": {"type": "join", "token": t.token("r", &identity).await}});
    ws.send(Message::text(join.to_string())).await.unwrap();
    assert!(matches!(answer(&mut ws, Some(0)).await, Some(Outcome::Result(_))), "join accepted");
    ws
}

/// The server still answers: a ping on `ws` if it is open, and a fresh join.
async fn still_answers(t: &TestServer, ws: Option<&mut Ws>, n: &AtomicU64) {
    if let Some(ws) = ws {
        let ping = json!({"id": u32::MAX as u64 + 1, "request": {"type": "ping"}}).to_string();
        if ws.send(Message::text(ping)).await.is_ok() {
            // Closed is fine (a `leave`, or too many errors); a wrong answer is not.
            if let Some(outcome) = answer(ws, Some(u32::MAX as u64 + 1)).await {
                assert!(matches!(outcome, Outcome::Result(_) | Outcome::Error(_)));
            }
        }
    }
    let mut fresh = joined(t, n).await;
    let _ = fresh.send(Message::text(json!({"id": 1, "request": {"type": "leave"}}).to_string())).await;
}

#[test]
fn any_signaling_frame_gets_an_answer_from_the_catalog() {
    let (rt, t) = server_with_room();
    let n = AtomicU64::new(0);
    proptest!(cases(192), |(frame in arb_frame(), before_join in any::<bool>())| {
        rt.block_on(async {
            let mut ws = if before_join {
                tokio_tungstenite::connect_async(t.ws_url()).await.unwrap().0
            } else {
                joined(&t, &n).await
            };
            ws.send(Message::text(frame.clone())).await.unwrap();
            let id = serde_json::from_str::<Value>(&frame).ok().and_then(|v| v.get("id")?.as_u64());
            let _ = answer(&mut ws, id).await;
            still_answers(&t, Some(&mut ws), &n).await;
            let _ = ws.close(None).await;
        });
    });
}

/// Every route a client can send a body, a path or a query to.
fn arb_http_request() -> impl Strategy<Value = (reqwest::Method, String, Option<Value>)> {
    let segment = prop_oneof![
        proptest::sample::select(WORDS).prop_map(str::to_owned),
        "[a-zA-Z0-9_%.~-]{0,40}",
        (0usize..400).prop_map(|n| "r".repeat(n)),
    ];
    let query = proptest::collection::vec(
        (proptest::sample::select(&["skip", "limit", "sort", "x"][..]), "[a-zA-Z0-9_%+-]{0,12}"),
        0..4,
    )
    .prop_map(|kv| kv.into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"));
    let body = prop_oneof![3 => arb_object(), 1 => arb_json()];
    (0usize..8, segment, query, body).prop_map(|(route, seg, query, body)| {
        use reqwest::Method;
        match route {
            0 => (Method::POST, "/v1/rooms".into(), Some(body)),
            1 => (Method::PUT, format!("/v1/rooms/{seg}"), Some(body)),
            2 => (Method::POST, "/v1/tokens".into(), Some(body)),
            3 => (Method::POST, "/v1/tokens/refresh".into(), Some(body)),
            4 => (Method::POST, "/v1/invites/exchange".into(), Some(body)),
            5 => (Method::POST, format!("/v1/rooms/{seg}/invites"), Some(body)),
            6 => (Method::GET, format!("/v1/rooms?{query}"), None),
            _ => (Method::DELETE, format!("/v1/rooms/{seg}/participants/{seg}"), None),
        }
    })
}

#[test]
fn any_room_api_request_gets_an_answer_from_the_catalog() {
    let (rt, t) = server_with_room();
    proptest!(cases(256), |((method, path, body) in arb_http_request())| {
        rt.block_on(async {
            let mut req = t.api(method.clone(), &path);
            if let Some(body) = &body {
                req = req.json(body);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            assert!(status < 500, "{method} {path} {body:?}: {status} {text}");
            if status >= 400 {
                let err: ErrorBody = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{method} {path}: not an error body ({e}): {text}"));
                assert_eq!(err.code.http_status(), status, "{method} {path}: {text}");
            }
            let health = t.http.get(t.url("/healthz")).send().await.unwrap();
            assert_eq!(health.status(), 200);
        });
    });
}

/// Claims of a valid token with arbitrary changes: fields replaced, removed or added.
fn arb_claims() -> impl Strategy<Value = Value> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let base = json!({"iss": KEY, "sub": "a", "room": "r", "name": "A", "grants": {},
                      "iat": now, "nbf": now, "exp": now + 600, "jti": "j"});
    let change = (proptest::sample::select(FIELDS), prop_oneof![3 => arb_json().prop_map(Some), 1 => Just(None)]);
    proptest::collection::vec(change, 0..4).prop_map(move |changes| {
        let mut claims = base.clone();
        for (field, value) in changes {
            match value {
                Some(v) => claims[field] = v,
                None => {
                    claims.as_object_mut().unwrap().remove(field);
                }
            }
        }
        claims
    })
}

#[test]
fn any_signed_claims_join_or_get_a_catalog_error() {
    let (rt, t) = server_with_room();
    let n = AtomicU64::new(0);
    proptest!(cases(192), |(claims in arb_claims())| {
        rt.block_on(async {
            let (mut ws, _) = tokio_tungstenite::connect_async(t.ws_url()).await.unwrap();
            let join = json!({"id": 5, "request": {"type": "join", "token": sign(&claims)}});
            ws.send(Message::text(join.to_string())).await.unwrap();
            let outcome = answer(&mut ws, Some(5)).await.expect("the join is answered");
            if let Outcome::Error(e) = &outcome {
                assert_ne!(e.code, ErrorCode::Internal, "{claims}: {}", e.message);
            }
            still_answers(&t, Some(&mut ws), &n).await;
        });
    });
}

/// A real offer: str0m offering audio and video to send.
fn valid_offer() -> (String, String, String) {
    use str0m::media::{Direction, MediaKind};
    let mut rtc = str0m::Rtc::builder().build(std::time::Instant::now());
    let mut change = rtc.sdp_api();
    let audio = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let video = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, _pending) = change.apply().expect("an offer");
    (offer.to_sdp_string(), audio.to_string(), video.to_string())
}

/// SDP lines a broken or hostile client might add.
const SDP_LINES: &[&str] = &[
    "m=video 9 UDP/TLS/RTP/SAVPF 96",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "a=mid:",
    "a=mid:0",
    "a=rid:q send",
    "a=simulcast:send q;h;f",
    "a=rtpmap:96 VP8/90000",
    "a=rtpmap:111 opus/48000/2",
    "a=fmtp:96 x-google-max-bitrate=999999999999",
    "a=ssrc:4294967295 cname:x",
    "a=ssrc-group:FID 1 2 3",
    "a=fingerprint:sha-256 00",
    "a=setup:actpass",
    "a=ice-ufrag:",
    "a=extmap:99 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=group:BUNDLE 0 1 2 3 4 5 6 7 8 9",
    "c=IN IP4 0.0.0.0",
    "",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Insert(usize, &'static str),
    Replace(usize, String),
    Truncate(usize),
}

fn arb_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let m = prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), proptest::sample::select(SDP_LINES)).prop_map(|(i, l)| Mutation::Insert(i, l)),
        (any::<usize>(), "\\PC{0,40}").prop_map(|(i, l)| Mutation::Replace(i, l)),
        any::<usize>().prop_map(Mutation::Truncate),
    ];
    proptest::collection::vec(m, 0..5)
}

fn mutate(sdp: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = sdp.lines().map(str::to_owned).collect();
    for m in mutations {
        let len = lines.len().max(1);
        match m {
            Mutation::Delete(i) if !lines.is_empty() => {
                lines.remove(i % len);
            }
            Mutation::Duplicate(i) if !lines.is_empty() => {
                let l = lines[i % len].clone();
                lines.insert(i % len, l);
            }
            Mutation::Insert(i, l) => lines.insert(i % (lines.len() + 1), (*l).to_owned()),
            Mutation::Replace(i, l) if !lines.is_empty() => lines[i % len] = l.clone(),
            Mutation::Truncate(i) => {
                let text = lines.join("\r\n");
                let mut cut = i % (text.len() + 1);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                lines = text[..cut].lines().map(str::to_owned).collect();
            }
            _ => {}
        }
    }
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    out
}

#[test]
fn any_offer_into_the_sfu_is_answered_or_refused() {
    let (rt, t) = server_with_room();
    let (offer, audio_mid, video_mid) = valid_offer();
    let n = AtomicU64::new(0);
    let published = std::sync::atomic::AtomicU32::new(0);
    proptest!(cases(128), |(mutations in arb_mutations(), renegotiate in any::<bool>())| {
        rt.block_on(async {
            let sdp = mutate(&offer, &mutations);
            let mut ws = joined(&t, &n).await;
            let request = if renegotiate {
                Request::PublisherOffer { sdp }
            } else {
                let track = |mid: &str, kind: &str| json!({"mid": mid, "kind": kind});
                serde_json::from_value(json!({"type": "publish", "key": "main", "sdp": sdp,
                    "tracks": [track(&audio_mid, "audio"), track(&video_mid, "video")]})).unwrap()
            };
            let frame = serde_json::to_string(&confer_proto::signal::ClientMessage { id: 9, request }).unwrap();
            ws.send(Message::text(frame)).await.unwrap();
            match answer(&mut ws, Some(9)).await.expect("the offer is answered") {
                Outcome::Result(_) => {
                    published.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Error(e) => assert_ne!(e.code, ErrorCode::Internal, "{}", e.message),
            }
            still_answers(&t, Some(&mut ws), &n).await;
            let _ = ws.send(Message::text(json!({"id": 10, "request": {"type": "leave"}}).to_string())).await;
        });
    });
    // The unchanged offer (no mutations) must have been accepted at least once.
    assert!(published.load(Ordering::Relaxed) > 0, "no offer was accepted: the test would not see a bad answer");
}
