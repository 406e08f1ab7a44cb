//! Text messages: to everyone, and to chosen participants only.

use crate::common::*;
use confer_client::proto::ErrorCode;
use confer_client::RoomEvent;

fn is_message(e: &RoomEvent) -> bool {
    matches!(e, RoomEvent::MessageReceived { .. })
}

#[tokio::test]
async fn broadcast_reaches_everyone_else_and_targeted_only_the_recipients() {
    let server = TestServer::start().await;
    server.create_room("chat").await;
    let (alice, mut alice_events) = server.join("chat", "alice").await;
    let (bob, mut bob_events) = server.join("chat", "bob").await;
    let (carol, mut carol_events) = server.join("chat", "carol").await;

    let id = alice.send_message("hello all", None).await.expect("broadcast");
    for (who, events) in [("bob", &mut bob_events), ("carol", &mut carol_events)] {
        let (msg, _) = wait_for(events, "the broadcast", is_message).await;
        let RoomEvent::MessageReceived { message_id, from, text, to, .. } = msg else { unreachable!() };
        assert_eq!(message_id, id, "{who}");
        assert_eq!(from.identity.as_str(), "alice");
        assert_eq!(text, "hello all");
        assert!(to.is_none(), "a broadcast has no recipient list");
    }

    let bob_id = bob.local_participant().id;
    alice.send_message("just for bob", Some(vec![bob_id.clone()])).await.expect("targeted");
    let (msg, _) = wait_for(&mut bob_events, "the targeted message", is_message).await;
    let RoomEvent::MessageReceived { text, to, .. } = msg else { unreachable!() };
    assert_eq!(text, "just for bob");
    let to = to.expect("recipients listed");
    assert_eq!(to.len(), 1);
    assert_eq!(to[0].identity.as_str(), "bob");

    // Carol's next message is the one after, so the targeted one never reached her.
    bob.send_message("after", None).await.expect("broadcast");
    let (msg, _) = wait_for(&mut carol_events, "bob's broadcast", is_message).await;
    let RoomEvent::MessageReceived { text, from, .. } = msg else { unreachable!() };
    assert_eq!((text.as_str(), from.identity.as_str()), ("after", "bob"));

    // The sender does not get its own broadcast back.
    let (msg, _) = wait_for(&mut alice_events, "bob's broadcast", is_message).await;
    let RoomEvent::MessageReceived { text, .. } = msg else { unreachable!() };
    assert_eq!(text, "after");
    assert!(drain(&mut alice_events).iter().all(|e| !is_message(e)));

    let err = carol.send_message("to nobody", Some(vec!["PA_nope".into()])).await.expect_err("unknown recipient");
    assert_eq!(err.code(), Some(ErrorCode::ParticipantNotFound), "{err}");
}
