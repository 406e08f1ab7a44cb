//! The call engine without the window: one app hosts a meeting on its own server, a
//! second joins with the invite link, and each sees and decodes the other's camera
//! (the synthetic pattern, its stamps read back from the decoded pictures). Chat goes
//! both ways, a muted microphone shows as muted on the other side, and the host's kick
//! ends the guest's call with `kicked`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confer_app_core::call::{Call, EventSink, JoinRequest, MediaSettings, LOCAL_TILE};
use confer_app_core::frames::FrameHub;
use confer_app_core::host::HostedServer;
use confer_app_core::link::JoinTarget;
use confer_app_core::publish;
use confer_app_core::view::{CallEvent, CallView, EndReason};
use confer_media::pattern::read_stamp;

/// Calls encode and decode video on the machine's cores: two at once on a loaded CI
/// machine can starve each other's decoders for longer than a test waits.
async fn one_call_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    logs();
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// The calls' and the server's log, shown with a failed test's output (`RUST_LOG`
/// overrides the default).
fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,str0m=warn,rtc=error,rtc_ice=error,rtc_dtls=error,confer_media::audio=error".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// A call and everything it told its view.
struct App {
    call: Call,
    hub: Arc<FrameHub>,
    events: Arc<Mutex<Vec<CallEvent>>>,
}

impl App {
    async fn join(name: &str, link: &str, host: Option<confer_app_core::call::HostAccess>) -> App {
        let media = MediaSettings { camera: Some("synthetic".into()), ..MediaSettings::default() };
        App::join_with(name, link, host, media).await
    }

    async fn join_with(
        name: &str,
        link: &str,
        host: Option<confer_app_core::call::HostAccess>,
        media: MediaSettings,
    ) -> App {
        let hub = FrameHub::new();
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let sink: EventSink = Arc::new(move |e| seen.lock().unwrap().push(e));
        let request = JoinRequest {
            server: "http://127.0.0.1:1".into(),
            name: name.into(),
            target: JoinTarget::parse(link).unwrap(),
            media,
            host,
        };
        let call = Call::join(request, hub.clone(), sink).await.unwrap_or_else(|e| panic!("{name} joins: {e}"));
        App { call, hub, events }
    }

    fn view(&self) -> CallView {
        self.call.view()
    }

    /// Waits until `pred` holds for the call's view.
    async fn until(&self, what: &str, pred: impl Fn(&CallView) -> bool) -> CallView {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.view();
            if pred(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {v:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn until_event(&self, what: &str, pred: impl Fn(&CallEvent) -> bool) -> CallEvent {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(e) = self.events.lock().unwrap().iter().find(|e| pred(e)) {
                return e.clone();
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The pattern stamps of `tile`'s decoded pictures, a second or more apart. One
    /// picture coded coarsely (the bandwidth estimate dipping) can hide its stamp, so
    /// each read waits for the next readable picture rather than failing on it.
    async fn playing(&self, tile: &str) -> (u32, u32) {
        let first = self.readable_stamp(tile, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let later = self.readable_stamp(tile, Duration::from_secs(5)).await;
        (first, later)
    }

    async fn readable_stamp(&self, tile: &str, wait: Duration) -> u32 {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(stamp) = self.hub.latest(tile).and_then(|f| read_stamp(&f.picture)) {
                return stamp.frame_number;
            }
            if Instant::now() >= deadline {
                let latest = self.hub.latest(tile).map(|f| (f.seq, f.picture.width, f.picture.height, f.capture_ms));
                panic!("no pattern in tile {tile} for {wait:?}: its latest picture (seq, width, height, capture ms) is {latest:?}, now {}", publish::unix_ms());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_meeting_is_joined_by_invite_and_both_sides_see_each_other() {
    let _one_call_at_a_time = one_call_at_a_time().await;
    let host = HostedServer::start(":memory:".into()).await.unwrap();
    let meeting = host.create_meeting("Planning").await.unwrap();
    let owner = App::join("Olivia", &meeting.room, Some(meeting.access.clone())).await;
    assert!(owner.view().moderator, "the host is the meeting's moderator");
    assert_eq!(owner.view().invite_link.as_deref(), Some(meeting.access.invite_link.as_str()));

    let guest = App::join("Gus", &meeting.access.invite_link, None).await;
    let gus = guest.view().me;
    let olivia = owner.view().me;

    // Each decodes the other's camera: the pattern, moving.
    let v =
        guest.until("the host's tile", |v| v.participants.iter().any(|p| p.id == olivia && !p.tiles.is_empty())).await;
    let tile = v.participants.iter().find(|p| p.id == olivia).unwrap().tiles[0].tile.clone();
    let (a, b) = guest.playing(&tile).await;
    assert!(b > a, "the host's video moves at the guest: frame {a} then {b}");
    let v =
        owner.until("the guest's tile", |v| v.participants.iter().any(|p| p.id == gus && !p.tiles.is_empty())).await;
    let tile = v.participants.iter().find(|p| p.id == gus).unwrap().tiles[0].tile.clone();
    let (a, b) = owner.playing(&tile).await;
    assert!(b > a, "the guest's video moves at the host: frame {a} then {b}");
    // The self view shows the local camera.
    assert!(owner.hub.latest(LOCAL_TILE).is_some());

    // The guest turns the camera off: the host's view says so.
    guest.call.set_camera(false).await.unwrap();
    owner.until("the guest's camera off", |v| v.participants.iter().any(|p| p.id == gus && p.camera_off)).await;

    // Chat both ways.
    guest.call.send_chat("hi Olivia", None).await.unwrap();
    owner
        .until_event("the guest's message", |e| matches!(e, CallEvent::Chat { message } if message.text == "hi Olivia"))
        .await;
    owner.call.send_chat("welcome", Some(gus.clone())).await.unwrap();
    let CallEvent::Chat { message } = guest
        .until_event(
            "the host's private answer",
            |e| matches!(e, CallEvent::Chat { message } if message.text == "welcome"),
        )
        .await
    else {
        unreachable!()
    };
    assert!(message.private && message.from_name == "Olivia");

    // The host removes the guest: the guest's call ends, saying why.
    owner.call.kick(&gus).await.unwrap();
    let ended = guest.until_event("the end of the guest's call", |e| matches!(e, CallEvent::Ended { .. })).await;
    assert!(matches!(&ended, CallEvent::Ended { code: EndReason::Kicked, .. }), "{ended:?}");
    owner.until("the guest gone", |v| v.participants.iter().all(|p| p.id != gus)).await;

    owner.call.leave().await;
    host.stop().await;
}

/// Issue 12: a guest who joined by invite, on a server whose join tokens live 12 s, is
/// still in the call after 75 s (six lifetimes), seeing the host's video move the whole
/// time (the call renews its token with the refresh token from the invite exchange).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_stays_in_a_call_much_longer_than_a_join_token_lives() {
    let _one_call_at_a_time = one_call_at_a_time().await;
    let host = HostedServer::start_with(":memory:".into(), 12).await.unwrap();
    let meeting = host.create_meeting("All hands").await.unwrap();
    let owner = App::join("Olivia", &meeting.room, Some(meeting.access.clone())).await;
    let guest = App::join("Gus", &meeting.access.invite_link, None).await;
    let olivia = owner.view().me;
    let gus = guest.view().me;
    let v =
        guest.until("the host's tile", |v| v.participants.iter().any(|p| p.id == olivia && !p.tiles.is_empty())).await;
    let tile = v.participants.iter().find(|p| p.id == olivia).unwrap().tiles[0].tile.clone();
    let started = Instant::now();
    let mut checks = 0;
    while started.elapsed() < Duration::from_secs(75) {
        let (a, b) = guest.playing(&tile).await;
        assert!(b > a, "after {:?} the host's video still moves at the guest: {a} then {b}", started.elapsed());
        assert!(owner.view().participants.iter().any(|p| p.id == gus), "the guest is still in the host's call");
        let ended = guest.events.lock().unwrap().iter().find(|e| matches!(e, CallEvent::Ended { .. })).cloned();
        assert!(ended.is_none(), "the guest's call ended after {:?}: {ended:?}", started.elapsed());
        checks += 1;
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    assert!(checks >= 10, "checked {checks} times in 75 s");
    guest.call.leave().await;
    owner.call.leave().await;
    host.stop().await;
}

/// Issue 15, devices during the call. The host joins with a camera that is not there
/// and the test tone as a muted microphone: sound into the muted microphone brings "you
/// are muted". Then the host picks the test pattern as the camera during the call: the
/// guest decodes it on the tile that was dark, with no rejoin and no new publication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_picked_during_the_call_is_seen_without_rejoining() {
    let _one_call_at_a_time = one_call_at_a_time().await;
    let host = HostedServer::start(":memory:".into()).await.unwrap();
    let meeting = host.create_meeting("Devices").await.unwrap();
    let media = MediaSettings {
        camera: Some("7".into()),
        microphone: Some("tone".into()),
        start_muted: true,
        ..MediaSettings::default()
    };
    let owner = App::join_with("Olivia", &meeting.room, Some(meeting.access.clone()), media.clone()).await;
    owner
        .until_event("you are muted", |e| matches!(e, CallEvent::Notice { code, .. } if code == "speaking_while_muted"))
        .await;
    let guest = App::join("Gus", &meeting.access.invite_link, None).await;
    let olivia = owner.view().me;
    let v =
        guest.until("the host's tile", |v| v.participants.iter().any(|p| p.id == olivia && !p.tiles.is_empty())).await;
    let tile = v.participants.iter().find(|p| p.id == olivia).unwrap().tiles[0].tile.clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(guest.hub.latest(&tile).is_none(), "a camera that is not there shows nothing");
    let tiles_of = |app: &App| app.view().participants.iter().find(|p| p.id == olivia).map(|p| p.tiles.clone());
    let before = tiles_of(&guest);

    let picked = Instant::now();
    owner.call.use_devices(&MediaSettings { camera: Some("synthetic".into()), ..media }).await.unwrap();
    while guest.hub.latest(&tile).is_none() && picked.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("camera picked during the call: the guest's first decoded picture after {:?}", picked.elapsed());
    let (a, b) = guest.playing(&tile).await;
    assert!(b > a, "the picked camera moves at the guest: frame {a} then {b}");
    assert_eq!(tiles_of(&guest), before, "the same tile, not a new publication");
    assert!(owner.hub.latest(LOCAL_TILE).is_some(), "the self view shows the new camera");
    guest.call.leave().await;
    owner.call.leave().await;
    host.stop().await;
}

/// A call that was left says nothing more to its view: its room's goodbye, coming late,
/// would otherwise end the next call in the view (the tray's "Leave", then a quick
/// rejoin, then "Quit" that did not ask: the app thought it was out of the call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_was_left_tells_its_view_nothing_more() {
    let _one_call_at_a_time = one_call_at_a_time().await;
    let host = HostedServer::start(":memory:".into()).await.unwrap();
    let meeting = host.create_meeting("Stand-up").await.unwrap();
    let owner = App::join("Olivia", &meeting.room, Some(meeting.access.clone())).await;
    owner.until("the call connected", |v| v.participants.iter().any(|p| p.local)).await;
    let told = owner.events.lock().unwrap().len();
    owner.call.leave().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after: Vec<CallEvent> = owner.events.lock().unwrap()[told..].to_vec();
    assert!(after.is_empty(), "after leaving, the view was told {after:?}");
    host.stop().await;
}

#[tokio::test]
async fn joining_fails_with_codes_a_person_can_act_on() {
    let sink: EventSink = Arc::new(|_| {});
    let join = |link: &str| JoinRequest {
        server: "http://127.0.0.1:1".into(),
        name: "Ann".into(),
        target: JoinTarget::parse(link).unwrap(),
        media: MediaSettings { camera: Some("synthetic".into()), ..MediaSettings::default() },
        host: None,
    };
    // Nothing listens on port 1.
    let e = Call::join(
        join("confer://join?server=http%3A%2F%2F127.0.0.1%3A1&room=r&invite=x"),
        FrameHub::new(),
        sink.clone(),
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(e.code, "server_unreachable", "{e}");

    let host = HostedServer::start(":memory:".into()).await.unwrap();
    let meeting = host.create_meeting("Planning").await.unwrap();
    let forged = meeting.access.invite_link.replace("invite=", "invite=x");
    let e = Call::join(join(&forged), FrameHub::new(), sink.clone()).await.err().expect("refused");
    assert_eq!(e.code, "invalid_invite", "{e}");
    assert!(e.message.contains("invalid or has expired"), "{e}");

    let e = Call::join(join("some-room"), FrameHub::new(), sink).await.err().expect("refused");
    assert_eq!(e.code, "link_needed", "{e}");
    host.stop().await;
}

/// The server restarts under a call (SIGTERM's path: `Server::shutdown`, then a new
/// process on the same address and database): both apps say "reconnecting", come back
/// on their own, and see each other's video again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_comes_back_after_the_server_restarts() {
    let _one_call_at_a_time = one_call_at_a_time().await;
    use confer_app_core::view::Connection;
    use confer_server::{Server, ServerConfig};

    let dir = std::env::temp_dir().join(format!("confer-app-restart-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let config = ServerConfig {
        db: dir.join("db.sqlite").to_string_lossy().into_owned(),
        api_key: Some("k".into()),
        api_secret: Some("s".into()),
        ..ServerConfig::default()
    };
    let server = Server::start(config.clone()).await.unwrap();
    let addr = server.http_addr();
    let api = confer_client::api::ApiClient::new(
        format!("http://{addr}").parse().unwrap(),
        Some("k".into()),
        Some("s".into()),
        "hosted-call-test",
    )
    .unwrap();
    let room: confer_client::proto::room::CreateRoom =
        serde_json::from_value(serde_json::json!({"id": "standup", "name": "Standup"})).unwrap();
    api.send(&confer_client::api::Call::CreateRoom(room)).await.expect("room created");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let credentials = confer_server::auth::Credentials::new("k".into(), "s".into());
    let link = |who: &str| {
        let token = credentials.mint(&"standup".into(), &who.into(), who, &Default::default(), now, 600);
        format!("confer://join?server=http%3A%2F%2F{}%3A{}&room=standup&token={token}", addr.ip(), addr.port())
    };
    let olivia = App::join("Olivia", &link("olivia"), None).await;
    let gus = App::join("Gus", &link("gus"), None).await;
    let tile_of = |app: &App, other: &App| {
        let id = other.view().me;
        let v = app.view();
        v.participants.iter().find(|p| p.id == id).and_then(|p| p.tiles.first()).map(|t| t.tile.clone())
    };
    olivia.until("gus's tile", |_| tile_of(&olivia, &gus).is_some()).await;
    gus.until("olivia's tile", |_| tile_of(&gus, &olivia).is_some()).await;

    server.shutdown().await;
    let restarted = Instant::now();
    let server = Server::start(ServerConfig { http_addr: addr, ..config }).await.unwrap();
    // The view said so (it may be brief: the apps retry as soon as the server is back).
    olivia
        .until_event(
            "reconnecting",
            |e| matches!(e, CallEvent::Updated { view } if view.connection == Connection::Reconnecting),
        )
        .await;
    for (app, other) in [(&olivia, &gus), (&gus, &olivia)] {
        app.until("connected again", |v| v.connection == Connection::Connected).await;
        let tile = loop {
            if let Some(t) = tile_of(app, other) {
                break t;
            }
            assert!(restarted.elapsed() < Duration::from_secs(20), "no tile after the restart");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (a, b) = app.playing(&tile).await;
        assert!(b > a, "the other's video moves again: {a} then {b}");
        let ended = app.events.lock().unwrap().iter().find(|e| matches!(e, CallEvent::Ended { .. })).cloned();
        assert!(ended.is_none(), "the call did not end: {ended:?}");
    }
    println!("both apps back with video {:?} after the restart", restarted.elapsed());
    assert!(restarted.elapsed() < Duration::from_secs(15), "{:?}", restarted.elapsed());
    olivia.call.leave().await;
    gus.call.leave().await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
