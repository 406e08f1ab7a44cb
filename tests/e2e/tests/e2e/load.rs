//! `confer-cli load` against a two-worker server: three rooms of a simulcast publisher
//! and four viewers receive what is sent (no loss on loopback), the rooms are spread
//! over both workers, each worker reads its clients' packets from its own sockets, and
//! `/metrics` counts what was forwarded, behind the API credentials.

use std::io::{Read, Write};
use std::time::Duration;

use confer_e2e::report::exclusive;
use confer_e2e::*;

/// `GET /metrics` on `addr` with optional Basic credentials: (status, body).
fn metrics(addr: std::net::SocketAddr, auth: Option<&str>) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth.map(|a| format!("Authorization: Basic {a}\r\n")).unwrap_or_default();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: confer\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    (status, response)
}

/// The sum of a metric's samples (over its labels).
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_load_test_over_two_workers_reports_what_arrived() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("load");
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let server = ServerProcess::start_with(
        dir.join("db.sqlite"),
        free_port(),
        &["--udp-addr", "127.0.0.1:0", "--sfu-workers", "2", "--metrics-addr", &metrics_addr],
    );
    let args = [
        "load",
        "--rooms",
        "3",
        "--publishers",
        "1",
        "--subscribers",
        "4",
        "--simulcast",
        "--audio",
        "--video",
        "320x180@15",
        "--duration",
        "6",
        "--json",
    ];
    let summary = cli_json(&server, &args);
    assert_eq!(summary["participants"], 15, "{summary:#}");
    assert_eq!(summary["failures"], 0, "{summary:#}");
    // Every viewer receives its publisher's video and audio.
    assert_eq!(summary["tracks"], 24, "{summary:#}");
    assert!(summary["packets_received"].as_u64().unwrap() > 12 * 6 * 20, "{summary:#}");
    assert!(summary["loss"].as_f64().unwrap() < 0.01, "{summary:#}");
    assert!(summary["latency_ms"]["p95"].as_f64().unwrap() < 200.0, "{summary:#}");
    assert!(summary["join_ms"]["p50"].as_f64().unwrap() > 0.0, "{summary:#}");

    let (status, _) = metrics(server.http_addr(), None);
    assert_eq!(status, 401, "/metrics on the API address needs the credentials");
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:{SECRET}"));
    let (status, text) = metrics(server.http_addr(), Some(&auth));
    assert_eq!(status, 200, "{text}");
    let (status, open) = metrics(metrics_addr.parse().unwrap(), None);
    assert_eq!(status, 200, "--metrics-addr needs no credentials: {open}");
    for worker in ["0", "1"] {
        let sent = text
            .lines()
            .find(|l| l.starts_with(&format!("confer_sfu_packets_sent_total{{worker=\"{worker}\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(sent > 100.0, "worker {worker} forwarded media ({sent} packets): the rooms are spread\n{text}");
    }
    let received = summary["packets_received"].as_f64().unwrap();
    assert!(total(&text, "confer_sfu_packets_sent_total") >= received, "{text}");
    assert!(total(&text, "confer_sfu_plis_sent_total") >= 1.0, "viewers starting asked for keyframes");
    assert!(total(&text, "confer_sfu_packet_seconds_count") > 0.0);
    // Each worker reads its clients' sockets: only new paths' first packets pass
    // through the receive thread.
    let handed = total(&text, "confer_sfu_handed_over_packets_total");
    let arrived = total(&text, "confer_sfu_packets_received_total");
    assert!(handed * 10.0 < arrived, "{handed} of {arrived} packets were handed over between threads");
    server.stop();
}
