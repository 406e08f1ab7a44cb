//! A change to the room's definition reaches everyone in it, in the event and the state.

use crate::common::*;
use confer_client::RoomEvent;

#[tokio::test]
async fn participants_see_the_room_change() {
    let server = TestServer::start().await;
    server.create_room("r").await;
    let (alice, mut alice_events) = server.join("r", "alice").await;
    let before = alice.state().room.version;

    server.rename_room("r", "Renamed").await;

    let (updated, _) = wait_for(&mut alice_events, "the update", |e| matches!(e, RoomEvent::RoomUpdated { .. })).await;
    let RoomEvent::RoomUpdated { room } = updated else { unreachable!() };
    assert_eq!(room.name, "Renamed");
    assert_eq!(room.version, before + 1);
    assert_eq!(alice.state().room, room, "the state already holds the new definition");
}
