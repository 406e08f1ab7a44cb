//! An invite link, as `confer-cli invite create` prints it, opened in Chromium: the
//! join page names the meeting and its "Open in Confer" button carries the app's link;
//! a link that cannot be used says why.
//!
//! Needs Node.js, `tests/browser/node_modules` and Chromium, as `browser_interop`.

use std::path::Path;
use std::process::Command;

use confer_e2e::*;
use serde_json::Value;

/// What Chromium shows at `url` (`tests/browser/page.mjs`).
pub(crate) fn open_in_chromium(url: &str, dir: &Path, name: &str, extra: &[&str]) -> Value {
    let chromium = std::env::var("CONFER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).exists(), "Chromium is not at {chromium}: run scripts/setup.sh");
    let out_file = dir.join(format!("{name}.json"));
    let screenshot = artifacts_dir().join(format!("{name}.png"));
    let out = Command::new("node")
        .arg(browser_dir().join("page.mjs"))
        .args(["--url", url, "--chromium", &chromium, "--out", out_file.to_str().unwrap()])
        .args(["--screenshot", screenshot.to_str().unwrap()])
        .args(extra)
        .output()
        .expect("node runs");
    assert!(out.status.success(), "Chromium could not open {url}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap()
}

#[test]
fn an_invite_link_opens_the_join_page_in_chromium() {
    let dir = temp_dir("join-page");
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "Design review", &[]);
    let invite = cli_json(&server, &["invite", "create", "--room", &room, "--max-uses", "1"]);
    let link = invite["link"].as_str().unwrap();
    assert_eq!(link, format!("{}/j/{room}?invite={}", server.url, invite["invite"].as_str().unwrap()));

    let page = open_in_chromium(link, &dir, "join-page", &[]);
    assert_eq!(page["status"], 200, "{page:#}");
    assert_eq!(page["headings"][0], "Design review", "{page:#}");
    assert_eq!(page["scripts"], 0, "the page runs no script");
    let open =
        page["links"].as_array().unwrap().iter().find(|l| l["id"] == "open-app").expect("an Open in Confer button");
    assert_eq!(open["text"], "Open in Confer");
    assert_eq!(open["visible"], true);
    assert_eq!(open["href"], invite["app_link"], "the button opens the app with the same invite");
    assert!(open["href"].as_str().unwrap().starts_with("confer://join?server="));
    let web = page["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == "join-web")
        .expect("a Join in this browser button");
    assert_eq!(web["text"], "Join in this browser");
    assert_eq!(
        web["href"],
        format!("../web/#/j/{room}?invite={}", invite["invite"].as_str().unwrap()),
        "the web client, with the invite after #"
    );

    // Used up: the page says so, and offers nothing to click through to.
    let exchange = serde_json::json!({"invite": invite["invite"], "name": "Guest"}).to_string();
    let used = Command::new("curl")
        .args(["-sf", "-X", "POST", "-H", "content-type: application/json", "--data", &exchange])
        .arg(format!("{}/v1/invites/exchange", server.url))
        .output()
        .unwrap();
    assert!(used.status.success(), "the invite is exchanged once");
    let page = open_in_chromium(link, &dir, "join-page-used-up", &[]);
    assert_eq!(page["status"], 410, "{page:#}");
    assert_eq!(page["headings"][0], "This invite has been used up", "{page:#}");
    assert!(page["text"].as_str().unwrap().contains("Ask whoever invited you for a new link"), "{page:#}");
    assert!(page["links"].as_array().unwrap().is_empty(), "{page:#}");
    server.stop();
}

/// `--tls-cert` and `--tls-key`: the invite link is https and Chromium shows its page
/// (the certificate is the test's own, so Chromium is told to accept it).
#[test]
fn the_join_page_over_https_with_the_servers_own_certificate() {
    let dir = temp_dir("join-page-tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-keyout", key.to_str().unwrap(), "-out", cert.to_str().unwrap()])
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let server = ServerProcess::start_with(
        dir.join("db.sqlite"),
        free_port(),
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    let https = server.url.replacen("http://", "https://", 1);
    // The room API over HTTPS, trusting the test's certificate.
    let api = |path: &str, body: serde_json::Value| -> Value {
        let out = Command::new("curl")
            .args(["-sf", "--cacert", cert.to_str().unwrap(), "-u", &format!("{KEY}:{SECRET}")])
            .args(["-H", "content-type: application/json", "--data", &body.to_string()])
            .arg(format!("{https}{path}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "POST {path} over HTTPS failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let room = api("/v1/rooms", serde_json::json!({"name": "Over TLS"}))["id"].as_str().unwrap().to_owned();
    let invite = api(&format!("/v1/rooms/{room}/invites"), serde_json::json!({}));
    let link = invite["link"].as_str().unwrap();
    assert!(link.starts_with("https://127.0.0.1:"), "{link}");
    let page = open_in_chromium(link, &dir, "join-page-https", &["--ignore-https-errors", "1"]);
    assert_eq!(page["status"], 200, "{page:#}");
    assert_eq!(page["headings"][0], "Over TLS", "{page:#}");
    let open = page["links"].as_array().unwrap().iter().find(|l| l["id"] == "open-app").expect("Open in Confer");
    assert!(open["href"].as_str().unwrap().starts_with("confer://join?server=https%3A%2F%2F127.0.0.1"), "{open}");

    // "Join in this browser" over HTTPS: the web client loads, signals over WSS and
    // sends its camera and microphone.
    let _one_at_a_time = confer_e2e::report::exclusive();
    let result_file = dir.join("guest.json");
    let chromium = std::env::var("CONFER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let out = Command::new("node")
        .arg(browser_dir().join("web_guests.mjs"))
        .args(["--link", link, "--guests", "Cleo", "--seconds", "2", "--ignore-https-errors", "1"])
        .args(["--chromium", &chromium, "--out", result_file.to_str().unwrap()])
        .output()
        .expect("node runs");
    eprintln!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let result: Value = serde_json::from_str(&std::fs::read_to_string(&result_file).unwrap()).unwrap();
    assert!(out.status.success(), "{result:#}");
    let report = &result["guests"][0]["report"];
    assert_eq!(report["publisher"], "connected", "{report:#}");
    let sent = report["outbound"].as_array().unwrap().iter().filter_map(|s| s["frames_sent"].as_u64()).max();
    assert!(sent > Some(30), "{report:#}");
    server.stop();
}
