//! Who is speaking and how the network is: `audio_activity` names the speakers with
//! their levels and an active speaker, the SDK reports audio levels of local and remote
//! tracks, and `network_metrics` describe the participants asked about.

use std::time::Duration;

use confer_e2e::report::*;
use confer_e2e::*;

#[test]
fn speakers_levels_and_network_metrics() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("activity-metrics");
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "activity", &[]);
    let mut alice =
        Bot::publisher("alice", &server, &room, &["--tone", "440", "--subscribe", "none", "--duration", "14"]);
    let report = dir.join("bob.json");
    let t = token(&server, &room, "bob", &[]);
    let args =
        ["--publish", "--tone", "550", "--metrics", "all", "--duration", "9", "--report", report.to_str().unwrap()];
    let mut bob = Bot::spawn("bob", &server, &t, &args);
    assert_eq!(bob.wait_exit(Duration::from_secs(30)), 0);
    let id_of = |bot: &Bot| bot.seen.iter().find(|l| l["event"] == "connected").unwrap()["participant_id"].clone();
    let (alice_id, bob_id) = (id_of(&alice), id_of(&bob));

    // audio_activity: both tones heard, with levels, and an active speaker.
    let activity: Vec<&serde_json::Value> = bob.seen.iter().filter(|l| l["event"] == "audio_activity").collect();
    assert!(activity.len() >= 10, "audio_activity about every 250 ms: {}", activity.len());
    let loud: std::collections::HashSet<String> = activity
        .iter()
        .flat_map(|l| l["levels"].as_array().unwrap())
        .filter(|l| l["level"].as_f64().unwrap() > 0.1)
        .filter_map(|l| l["participant_id"].as_str().map(str::to_owned))
        .collect();
    for id in [&alice_id, &bob_id] {
        assert!(loud.contains(id.as_str().unwrap()), "{id} heard speaking: {activity:?}");
    }
    let speaker = &activity.last().unwrap()["active_speaker"];
    assert!(*speaker == alice_id || *speaker == bob_id, "an active speaker: {speaker}");

    // network_metrics: reports about both, good on loopback.
    let metrics: Vec<&serde_json::Value> = bob.seen.iter().filter(|l| l["event"] == "network_metrics").collect();
    assert!(metrics.len() >= 2, "network_metrics every 2 s: {:?}", bob.seen);
    let reports = metrics.last().unwrap()["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 2, "about alice and bob: {reports:?}");
    for r in reports {
        assert!(r["score"].as_u64().unwrap() >= 4, "a clean path scores well: {r}");
        assert!(r["publish_loss"].as_f64().unwrap() < 0.01, "{r}");
    }

    // The SDK's levels: bob's own microphone and alice's, both audible.
    let report = read_report(&report);
    let levels = report["audio_levels"].as_array().unwrap();
    let of = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        levels.iter().find(|l| pred(l)).map(|l| l["level"].as_f64().unwrap())
    };
    let local = of(&|l| l["local"] == true).unwrap_or_else(|| panic!("no local level: {levels:?}"));
    let remote = of(&|l| l["identity"] == "alice").unwrap_or_else(|| panic!("no level of alice: {levels:?}"));
    assert!(local > 0.1 && remote > 0.1, "levels {local} (local) and {remote} (alice)");
    assert!(stream(&report, "alice", "audio")["tone_hz"].as_f64().is_some());
    alice.wait_exit(Duration::from_secs(20));
    server.stop();
}
