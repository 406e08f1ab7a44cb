//! The desktop app, driven through its real window: tauri-driver and WebKitWebDriver
//! under Xvfb and a session bus, a real server, two bots publishing the synthetic
//! pattern and a tone.
//!
//! - The app joins by invite link (home, then pre-join); the grid shows two remote
//!   tiles, and the pixels of each, read back from a screenshot, carry the bots'
//!   pattern stamp (frame number and capture time, CRC-checked), advancing over time.
//! - The microphone button makes the bots see `track_disabled`, then `track_enabled`.
//! - A chat message typed in the UI reaches a bot, and the bot's answer shows in the UI.
//! - Leaving returns home. A join link opened on the desktop while the app runs goes
//!   to this instance (the second start exits) and leads to the pre-join screen; back
//!   in, a moderator bot's kick ends the call with a message that says so.
//!
//! - Settings survive a restart: the next start shows the name and the recent room.
//!
//! Screenshots are kept in test-artifacts/ (`app-in-call.png` shows two remote videos).
//!
//! Needs the app built (`cargo build -p confer --features custom-protocol`) and
//! tauri-driver installed; `scripts/test.sh` does both and runs this with `--ignored`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use confer_e2e::devices::{pulse, pulse_env, Display};
use confer_e2e::{artifacts_dir, cli_json, create_room, free_port, temp_dir, token, Bot, ServerProcess};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const T: Duration = Duration::from_secs(20);

/// tauri-driver in a session bus of its own, on an Xvfb display; it starts the app.
struct Driver {
    child: Child,
    port: u16,
    display: Display,
    app: PathBuf,
    data: PathBuf,
}

/// The app binary under test.
fn app_binary() -> PathBuf {
    std::env::var_os("CONFER_APP").map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
        target.join("debug/confer")
    })
}

impl Driver {
    fn start(data: &std::path::Path) -> Self {
        let display = Display::blank(1280, 800);
        let port = free_port();
        let native = free_port();
        let driver = std::env::var_os("TAURI_DRIVER").map(PathBuf::from).unwrap_or_else(|| {
            let home = std::env::var_os("CARGO_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
            home.join("bin/tauri-driver")
        });
        let child = Command::new("dbus-run-session")
            .arg("--")
            .arg(&driver)
            .args(["--port", &port.to_string(), "--native-port", &native.to_string()])
            .env("DISPLAY", &display.name)
            // WebKitGTK draws a blank window under Xvfb with compositing on.
            .env("WEBKIT_DISABLE_COMPOSITING_MODE", "1")
            // The synthetic camera, as Chromium's fake device: these machines have none.
            .env("CONFER_FAKE_CAMERA", "1")
            // A fresh profile: settings and recent rooms start empty.
            .env("XDG_DATA_HOME", data.join("data"))
            .env("XDG_CONFIG_HOME", data.join("config"))
            .env("XDG_CACHE_HOME", data.join("cache"))
            .envs(pulse_env())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("tauri-driver at {} starts ({e}); cargo install tauri-driver", driver.display())
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tauri-driver did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, port, display, app: app_binary(), data: data.to_owned() }
    }

    /// Starts the app a second time, as the desktop does for a clicked link, in the
    /// first instance's session (its bus and display), and waits for it to exit.
    fn open_link(&self, link: &str) -> std::process::ExitStatus {
        let first = Command::new("pgrep").args(["-o", "-x", "confer"]).output().unwrap();
        let pid = String::from_utf8_lossy(&first.stdout).trim().to_owned();
        assert!(!pid.is_empty(), "the app runs");
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let bus = environ
            .split(|b| *b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok())
            .find_map(|kv| kv.strip_prefix("DBUS_SESSION_BUS_ADDRESS="))
            .expect("the app's session bus")
            .to_owned();
        let mut second = Command::new(&self.app)
            .arg(link)
            .env("DISPLAY", &self.display.name)
            .env("DBUS_SESSION_BUS_ADDRESS", bus)
            .env("XDG_DATA_HOME", self.data.join("data"))
            .env("XDG_CONFIG_HOME", self.data.join("config"))
            .env("XDG_CACHE_HOME", self.data.join("cache"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + T;
        loop {
            if let Some(status) = second.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = second.kill();
                panic!("a second instance stayed up instead of handing the link over");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    async fn session(&self) -> Client {
        let app = &self.app;
        assert!(app.exists(), "no app at {} (cargo build -p confer --features custom-protocol)", app.display());
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("wry"));
        caps.insert("tauri:options".into(), json!({ "application": app }));
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session with the app")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the window showed when the test failed.
            save_screenshot(self, "app-failure.png");
        }
        // The group: dbus, tauri-driver, WebKitWebDriver and the app.
        let _ = Command::new("kill").args(["--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

async fn click(c: &Client, css: &str) {
    within(&format!("click {css}"), async {
        c.wait().at_most(T).for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await
    })
    .await
    .unwrap();
}

async fn type_into(c: &Client, css: &str, text: &str) {
    within(&format!("type into {css}"), async {
        let field = c.wait().at_most(T).for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    })
    .await;
}

/// Runs `script` until it returns something truthy, returning that.
async fn until(c: &Client, what: &str, script: &str) -> serde_json::Value {
    let deadline = Instant::now() + T;
    loop {
        let v = match tokio::time::timeout(Duration::from_secs(5), c.execute(script, vec![])).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                eprintln!("waiting for {what}: {e}");
                serde_json::Value::Null
            }
            Err(_) => {
                eprintln!("waiting for {what}: the view did not answer within 5 s");
                serde_json::Value::Null
            }
        };
        if !(v.is_null() || v == false || v == "" || v == 0) {
            return v;
        }
        if Instant::now() >= deadline {
            if let Ok(Ok(png)) = tokio::time::timeout(Duration::from_secs(5), c.screenshot()).await {
                std::fs::write(artifacts_dir().join("app-failure.png"), png).unwrap();
            }
            panic!("timed out waiting for {what} (screen in test-artifacts/app-failure.png)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `fut`, or a failure naming `what` if the app does not answer within [`T`].
async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    eprintln!("app_ui: {what}");
    tokio::time::timeout(T, fut).await.unwrap_or_else(|_| panic!("the app did not answer within {T:?}: {what}"))
}

/// The whole screen as the X server shows it (the real window, not the web view's
/// idea of it), kept as a test artifact.
fn save_screenshot(driver: &Driver, name: &str) {
    let path = artifacts_dir().join(name);
    let status = Command::new("import")
        .args(["-display", &driver.display.name, "-window", "root", path.to_str().unwrap()])
        .status()
        .expect("ImageMagick's import is installed (scripts/setup.sh)");
    assert!(status.success(), "screenshot {name} failed");
}

/// The pattern stamp shown by a tile's canvas, read from an element screenshot (kept
/// in `last_tile` for a failure's artifact).
async fn stamp_of(c: &Client, css: &str, last_tile: &mut Vec<u8>) -> Option<confer_media::pattern::Stamp> {
    let canvas = within(&format!("find {css}"), c.find(Locator::Css(css))).await.ok()?;
    let png = within(&format!("screenshot {css}"), canvas.screenshot()).await.ok()?;
    *last_tile = png.clone();
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()?];
    let info = reader.next_frame(&mut buf).ok()?;
    let (w, h) = (info.width as usize & !1, info.height as usize & !1);
    let rgba: Vec<u8> = match info.color_type {
        png::ColorType::Rgba => buf[..info.buffer_size()].to_vec(),
        png::ColorType::Rgb => buf[..info.buffer_size()].chunks(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
        _ => return None,
    };
    let frame = confer_media::video::convert::rgba_to_i420(&rgba, w, h, info.width as usize * 4).ok()?;
    confer_media::pattern::read_stamp(&frame)
}

/// Home, then pre-join, then in the call.
async fn join(c: &Client, link: &str) {
    type_into(c, "#join-name", "Tester").await;
    type_into(c, "#join-link", link).await;
    click(c, "#join-submit").await;
    click(c, "#prejoin-join").await;
    within("the call screen", c.wait().at_most(T).for_element(Locator::Css("#call"))).await.expect("the call screen");
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs the desktop app and tauri-driver: scripts/test.sh runs it"]
async fn the_app_joins_shows_two_videos_mutes_chats_leaves_and_is_kicked() {
    pulse();
    let dir = temp_dir("app-ui");
    let server = ServerProcess::start(dir.join("db.sqlite3"));
    let room = create_room(&server, "Design review", &[]);
    let invite = cli_json(&server, &["invite", "create", "--room", &room]);
    let link = invite["link"].as_str().expect("an invite link").to_owned();
    let mut alice =
        Bot::publisher("alice", &server, &room, &["--echo-messages", "--tone", "440", "--video", "640x360@15"]);
    let mut bob = Bot::publisher("bob", &server, &room, &["--tone", "660", "--video", "640x360@15"]);

    let driver = Driver::start(&dir);
    let c = driver.session().await;

    // Joined: two remote tiles playing the bots' pattern.
    join(&c, &link).await;
    until(
        &c,
        "two remote tiles drawing video",
        r#"
        const drawn = [...document.querySelectorAll('.tile.remote canvas')]
            .filter(c => Number(c.dataset.frames || 0) > 20);
        return drawn.length >= 2;"#,
    )
    .await;
    let app_identity =
        alice.expect_event("participant_joined", T, |v| v["name"] == "Tester")["identity"].as_str().unwrap().to_owned();
    let mut stamps = Vec::new();
    for slot in ["alice", "bob"] {
        let pid = alice_or_bob_id(&mut alice, &mut bob, slot);
        let css = format!(".tile.remote[data-participant='{pid}'] canvas");
        let first = poll_stamp(&c, &css).await.unwrap_or_else(|| panic!("{slot}'s tile shows no pattern stamp"));
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let later = poll_stamp(&c, &css).await.unwrap_or_else(|| panic!("{slot}'s tile stopped showing the pattern"));
        assert!(later.frame_number > first.frame_number, "{slot}'s video does not move: {first:?} then {later:?}");
        stamps.push((slot, first, later));
    }
    eprintln!("pattern stamps read from the window: {stamps:?}");
    save_screenshot(&driver, "app-in-call.png");

    // Mute and unmute in the UI: the bots are told.
    click(&c, "#mic-toggle[data-state='on']").await;
    bob.expect_event("track_disabled", T, |v| v["kind"] == "audio" || v["track_id"].is_string());
    click(&c, "#mic-toggle[data-state='off']").await;
    bob.expect_event("track_enabled", T, |_| true);

    // Chat: typed in the UI, answered by alice.
    click(&c, "#chat-toggle").await;
    type_into(&c, "#chat-input", "hello from the app").await;
    click(&c, "#chat-send").await;
    alice.expect_event("message_received", T, |v| v["text"] == "hello from the app");
    until(
        &c,
        "alice's answer in the chat",
        r#"
        return [...document.querySelectorAll('.chat-message .text')]
            .some(e => e.textContent === 're: hello from the app');"#,
    )
    .await;
    save_screenshot(&driver, "app-chat.png");

    // Leaving returns home.
    click(&c, "#leave").await;
    within("home after leaving", c.wait().at_most(T).for_element(Locator::Css("#home")))
        .await
        .expect("home after leaving");
    bob.expect_event("participant_left", T, |v| v["identity"] == app_identity.as_str());

    // Back in through a link opened on the desktop: a second start hands it to this
    // instance and exits; this one shows the pre-join screen for it.
    let status = driver.open_link(&link);
    assert!(status.success(), "the second instance exited with {status}");
    click(&c, "#prejoin-join").await;
    within("the call screen", c.wait().at_most(T).for_element(Locator::Css("#call"))).await.expect("in the call");

    // Then removed by a moderator.
    let again = alice
        .expect_event("participant_joined", T, |v| v["name"] == "Tester" && v["identity"] != app_identity.as_str())
        ["identity"]
        .as_str()
        .unwrap()
        .to_owned();
    let moderator = token(&server, &room, "moderator", &["--moderator"]);
    let mut kicker = Bot::spawn("moderator", &server, &moderator, &["--kick", &again, "--wait-for", &again]);
    kicker.expect_event("kick_succeeded", T, |_| true);
    let message = until(
        &c,
        "the kicked message",
        r#"
        const m = document.querySelector('#ended-message[data-code="kicked"]');
        return m && m.textContent;"#,
    )
    .await;
    assert!(message.as_str().unwrap().contains("removed you"), "{message}");
    save_screenshot(&driver, "app-kicked.png");

    // Settings survive a restart: a new app process shows the name and the room.
    let _ = tokio::time::timeout(Duration::from_secs(5), c.close()).await;
    let c = driver.session().await;
    let name = until(&c, "the stored name", "return document.querySelector('#join-name')?.value").await;
    assert_eq!(name, "Tester");
    until(&c, "the room among the recent ones", "return document.querySelectorAll('#recent li').length > 0").await;
    let _ = tokio::time::timeout(Duration::from_secs(5), c.close()).await;
    drop(driver);
    alice.kill();
    bob.kill();
    kicker.kill();
}

/// A bot's participant id, from its own `connected` line.
fn alice_or_bob_id(alice: &mut Bot, bob: &mut Bot, who: &str) -> String {
    let bot = if who == "alice" { alice } else { bob };
    let line = bot.expect_event("connected", T, |_| true);
    line["participant_id"].as_str().expect("the bot's participant id").to_owned()
}

/// A tile's stamp, trying a few screenshots (one may catch a frame mid-draw); the
/// last screenshot is kept as `app-tile-failure.png` when none can be read.
async fn poll_stamp(c: &Client, css: &str) -> Option<confer_media::pattern::Stamp> {
    let mut last = Vec::new();
    for _ in 0..20 {
        if let Some(s) = stamp_of(c, css, &mut last).await {
            return Some(s);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    std::fs::write(artifacts_dir().join("app-tile-failure.png"), last).unwrap();
    None
}
