//! Two nodes sharing a PostgreSQL and a Redis: a room's session starts on one node,
//! which the other then knows; with Redis gone, running calls go on and new ones are
//! refused with `unavailable`.

use confer_proto::signal::{Reply, Request};
use confer_proto::ErrorCode;
use confer_server::config::ClusterConfig;
use confer_server::ServerConfig;
use serde_json::json;

use crate::common::*;
use crate::test_pg;
use crate::test_redis::RedisServer;

async fn node(id: &str, db: &str, redis: &RedisServer) -> TestServer {
    let cluster = ClusterConfig { redis: redis.url(), node_id: id.into(), node_url: format!("http://{id}.internal") };
    TestServer::with(ServerConfig { db: db.into(), cluster: Some(cluster), ..config() }).await
}

#[tokio::test]
async fn a_session_lives_on_one_node_and_redis_going_away_stops_only_new_ones() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(db) = test_pg::database("cluster").await else { return };
    let a = node("a", &db, &redis).await;
    let b = node("b", &db, &redis).await;
    // Rooms are shared: created on one node, known to the other.
    a.create_room(json!({"id": "standup", "name": "Standup"})).await;
    b.create_room(json!({"id": "retro", "name": "Retro"})).await;

    // Both idle: the tie goes to "a", which starts the session.
    let (mut ann, _) = a.join(&a.token("standup", "ann").await).await;
    // The session is a's: b does not start another.
    let mut ben = Peer::connect(&b.ws_url()).await;
    let refused = ben.join(&b.token("standup", "ben").await).await.expect_err("b does not start a second session");
    assert_eq!(refused.code, ErrorCode::Unavailable, "{}", refused.message);
    assert!(refused.message.contains("node a"), "{}", refused.message);

    // Redis goes away: ann's call goes on; no new session starts anywhere.
    drop(redis);
    let mut cat = Peer::connect(&a.ws_url()).await;
    let refused = cat.join(&a.token("retro", "cat").await).await.expect_err("no new session without redis");
    assert_eq!(refused.code, ErrorCode::Unavailable, "{}", refused.message);
    let (mut dan, _) = a.join(&a.token("standup", "dan").await).await;
    assert!(matches!(ann.request(Request::Ping).await, Ok(Reply::Pong)), "ann's call stopped with redis");
    assert!(matches!(dan.request(Request::Ping).await, Ok(Reply::Pong)));
}
