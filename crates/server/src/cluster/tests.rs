//! The registry against a real `redis-server` of each test's own.

use super::*;
use confer_test_services::redis::RedisServer;

fn state(id: &str, participants: u32) -> NodeState {
    NodeState {
        id: id.into(),
        url: format!("http://{id}.internal:7880"),
        participants,
        tracks: participants * 2,
        cpu: 0.1,
        draining: false,
        updated_at: 0,
    }
}

async fn nodes(redis: &RedisServer, ids: &[&str]) -> Vec<Registry> {
    let mut out = vec![];
    for id in ids {
        out.push(Registry::connect(&redis.url(), id).await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_room_goes_to_the_least_loaded_live_node_and_stays_there() {
    let Some(redis) = RedisServer::start() else { return };
    let [a, b, c] = <[Registry; 3]>::try_from(nodes(&redis, &["a", "b", "c"]).await).ok().unwrap();
    a.heartbeat(&state("a", 10)).await.unwrap();
    b.heartbeat(&state("b", 2)).await.unwrap();
    c.heartbeat(&NodeState { draining: true, ..state("c", 0) }).await.unwrap();
    // The draining node is the least loaded, and is skipped.
    assert_eq!(
        a.place(&"r1".into()).await.unwrap(),
        Placement::There { node: "b".into(), url: "http://b.internal:7880".into() }
    );
    assert_eq!(b.place(&"r1".into()).await.unwrap(), Placement::Here);
    // b fills up: r1 stays on b, a new room goes to a.
    b.heartbeat(&state("b", 50)).await.unwrap();
    assert_eq!(
        c.place(&"r1".into()).await.unwrap(),
        Placement::There { node: "b".into(), url: "http://b.internal:7880".into() }
    );
    assert_eq!(a.place(&"r2".into()).await.unwrap(), Placement::Here);
    let mut known = a.nodes().await.unwrap().into_iter().map(|n| (n.id, n.participants)).collect::<Vec<_>>();
    known.sort();
    assert_eq!(known, [("a".to_owned(), 10), ("b".to_owned(), 50), ("c".to_owned(), 0)]);
}

#[tokio::test]
async fn two_nodes_starting_one_room_at_once_agree_on_its_holder() {
    let Some(redis) = RedisServer::start() else { return };
    let registries = nodes(&redis, &["a", "b", "c", "d"]).await;
    for (i, r) in registries.iter().enumerate() {
        r.heartbeat(&state(r.node_id(), i as u32)).await.unwrap();
    }
    let placements = futures_util::future::join_all(registries.iter().map(|r| {
        let r = r.clone();
        async move { (r.node_id().to_owned(), r.place(&"busy".into()).await.unwrap()) }
    }))
    .await;
    let holders: std::collections::BTreeSet<String> = placements
        .iter()
        .map(|(me, p)| match p {
            Placement::Here => me.clone(),
            Placement::There { node, .. } => node.clone(),
        })
        .collect();
    assert_eq!(holders.len(), 1, "{placements:?}");
}

#[tokio::test]
async fn a_silent_node_loses_its_rooms_to_a_live_one() {
    let Some(redis) = RedisServer::start() else { return };
    let [a, b] = <[Registry; 2]>::try_from(nodes(&redis, &["a", "b"]).await).ok().unwrap();
    a.heartbeat(&state("a", 0)).await.unwrap();
    b.heartbeat(&state("b", 5)).await.unwrap();
    assert_eq!(a.place(&"r".into()).await.unwrap(), Placement::Here);
    // a dies (no more heartbeats); b keeps beating.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(NODE_LIVE_MS + 2000);
    loop {
        b.heartbeat(&state("b", 5)).await.unwrap();
        if b.place(&"r".into()).await.unwrap() == Placement::Here {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the dead node kept its room");
        tokio::time::sleep(HEARTBEAT).await;
    }
    // The dead node, come back, no longer holds it: its release changes nothing.
    assert!(!a.release(&"r".into()).await.unwrap());
    assert_eq!(
        a.place(&"r".into()).await.unwrap(),
        Placement::There { node: "b".into(), url: "http://b.internal:7880".into() }
    );
    assert!(b.release(&"r".into()).await.unwrap());
    b.leave().await.unwrap();
    a.leave().await.unwrap();
    assert!(matches!(a.place(&"r".into()).await, Err(ClusterError::NoNode)));
}

#[tokio::test]
async fn with_redis_gone_calls_fail_quickly_and_recover_when_it_is_back() {
    let Some(redis) = RedisServer::start() else { return };
    let port = redis.port;
    let a = Registry::connect(&redis.url(), "a").await.unwrap();
    a.heartbeat(&state("a", 0)).await.unwrap();
    drop(redis);
    let started = std::time::Instant::now();
    assert!(a.place(&"r".into()).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(10), "placement waited {:?}", started.elapsed());
    // Back on the same port (empty: Redis keeps nothing here): the node registers again.
    let back = RedisServer::start_on(port).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while a.heartbeat(&state("a", 0)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the registry did not reconnect");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(a.place(&"r".into()).await.unwrap(), Placement::Here);
    drop(back);
}

#[tokio::test]
async fn the_other_nodes_addresses_come_from_their_urls() {
    let node = |url: &str| NodeState { url: url.into(), ..state("x", 0) };
    let ips = addresses(&[node("http://127.0.0.2:7880"), node("https://[::1]/"), node("not a url")]).await;
    let want: HashSet<std::net::IpAddr> = ["127.0.0.2".parse().unwrap(), "::1".parse().unwrap()].into();
    assert_eq!(ips, want);
}
