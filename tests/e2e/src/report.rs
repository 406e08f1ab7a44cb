//! Reading `confer-cli bot --report` files and the bots' event lines, the way the media
//! tests judge what a viewer would have noticed.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

/// Media tests run one at a time: on two cores, several bots encoding and decoding at
/// once would measure the machine, not Confer.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn read_report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("no report at {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The stream of `kind` (`video`, `audio`, `data`) received from `identity`.
pub fn stream<'a>(report: &'a Value, identity: &str, kind: &str) -> &'a Value {
    find_stream(report, identity, kind).unwrap_or_else(|| panic!("no {kind} from {identity} in {report:#}"))
}

pub fn find_stream<'a>(report: &'a Value, identity: &str, kind: &str) -> Option<&'a Value> {
    report["streams"].as_array()?.iter().find(|s| s["identity"] == identity && s["kind"] == kind)
}

/// When an audio stream's dominant tone changed, as (Unix ms, Hz).
pub fn tone_changes(stream: &Value) -> Vec<(u64, f64)> {
    stream["tone_changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no tone changes: {stream:#}"))
        .iter()
        .map(|c| (c[0].as_u64().unwrap(), c[1].as_f64().unwrap()))
        .collect()
}

/// Whether `hz` is heard as the tone `want` (within the analysis' resolution).
pub fn near_tone(hz: f64, want: f64) -> bool {
    (hz - want).abs() < 10.0
}

/// The stalls of a stream as (from, to) Unix milliseconds; `to` is `None` for one that
/// lasted to the end of the run.
pub fn stalls(stream: &Value) -> Vec<(u64, Option<u64>)> {
    stream["stalls"]
        .as_array()
        .map(|list| list.iter().map(|s| (s["from_ms"].as_u64().unwrap(), s["to_ms"].as_u64())).collect())
        .unwrap_or_default()
}

/// The stall that covers the moment `at_ms` (frames stopped before it and resumed
/// after it, or never resumed).
pub fn stall_covering(stream: &Value, at_ms: u64) -> Option<(u64, Option<u64>)> {
    stalls(stream).into_iter().find(|(from, to)| *from <= at_ms && to.is_none_or(|t| t >= at_ms))
}

/// The decoded resolutions of a video stream over time: (ms since the bot joined,
/// width, height).
pub fn resolutions(stream: &Value) -> Vec<(u64, u64, u64)> {
    stream["resolutions"]
        .as_array()
        .map(|list| {
            list.iter().map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap(), r[2].as_u64().unwrap())).collect()
        })
        .unwrap_or_default()
}

/// How long, between `from_ms` and `to_ms` after joining, the stream showed `width`.
pub fn time_at_width(stream: &Value, width: u64, from_ms: u64, to_ms: u64) -> u64 {
    let changes = resolutions(stream);
    let mut total = 0;
    for (i, (at, w, _)) in changes.iter().enumerate() {
        let end = changes.get(i + 1).map_or(to_ms, |c| c.0).min(to_ms);
        let start = (*at).max(from_ms);
        if *w == width && end > start {
            total += end - start;
        }
    }
    total
}

/// The share of the sender's frames (by pattern stamp) that were decoded.
pub fn decoded_share(stream: &Value) -> f64 {
    let decoded = stream["frames_decoded"].as_u64().unwrap_or(0) as f64;
    let expected = stream["frames_expected"].as_u64().unwrap_or(0).max(1) as f64;
    decoded / expected
}

/// The `at` time (Unix ms) of a bot's event line.
pub fn at(line: &Value) -> u64 {
    line["at"].as_u64().unwrap_or_else(|| panic!("no time on {line}"))
}

/// The stream a bot's report holds from `participant` (by id): stream `key`, `kind`.
pub fn stream_from<'a>(report: &'a Value, participant: &str, key: &str, kind: &str) -> &'a Value {
    report["streams"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["participant_id"] == participant && s["key"] == key && s["kind"] == kind))
        .unwrap_or_else(|| panic!("no {kind} of {key} from {participant} in {report:#}"))
}

/// The share of a web guest's camera frames a bot decoded: its `video` stream against
/// the frames of the busiest simulcast layer the guest's browser sent (`page` is the web
/// client's `window.confer.report()`, as `tests/browser/web_guests.mjs` writes it).
pub fn share_of_sent(video: &Value, page: &Value) -> (f64, u64) {
    let sent = page["outbound"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "video" && !s["rid"].is_null())
        .filter_map(|s| s["frames_sent"].as_u64())
        .max()
        .unwrap_or_else(|| panic!("the browser sent no camera layers: {page:#}"));
    (video["frames_decoded"].as_u64().unwrap_or(0) as f64 / sent as f64, sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_at_a_width_follows_the_changes() {
        let s = serde_json::json!({"resolutions": [[100, 160, 90], [1000, 640, 360], [3000, 320, 180]]});
        assert_eq!(time_at_width(&s, 640, 0, 5000), 2000);
        assert_eq!(time_at_width(&s, 320, 0, 5000), 2000);
        assert_eq!(time_at_width(&s, 160, 500, 5000), 500);
        let s = serde_json::json!({"stalls": [{"from_ms": 10, "to_ms": 20}, {"from_ms": 50, "to_ms": null}]});
        assert_eq!(stall_covering(&s, 15), Some((10, Some(20))));
        assert_eq!(stall_covering(&s, 30), None);
        assert_eq!(stall_covering(&s, 99), Some((50, None)));
    }
}
