//! The store's contract, run on every backend: SQLite in memory, and PostgreSQL in a
//! fresh database of a throwaway cluster (`confer_test_services::postgres`). The concurrent cases cannot fail
//! on SQLite, whose calls take turns; on PostgreSQL they are real races.

use confer_proto::room::{Room, RoomPolicy, RoomSort};
use confer_proto::token::Grants;
use confer_proto::Bytes;

use super::*;

fn room(id: &str, name: &str, at: u64) -> Room {
    Room {
        id: id.into(),
        name: name.into(),
        members: vec![],
        managers: vec!["alice".into()],
        public_meta: Bytes::from("pub"),
        private_meta: Bytes(vec![0, 255]),
        policy: RoomPolicy::default(),
        version: 1,
        created_at: at,
        updated_at: at,
    }
}

fn grant(identity: &str) -> RefreshGrant {
    RefreshGrant {
        room: "r1".into(),
        identity: identity.into(),
        name: "Bob".into(),
        grants: Grants::default(),
        ttl: Some(30),
    }
}

async fn rooms_round_trip_and_version_check(store: Store) {
    assert!(store.insert_room(room("r1", "b", 1)).await.unwrap());
    assert!(!store.insert_room(room("r1", "x", 2)).await.unwrap());
    assert!(store.insert_room(room("r2", "a", 2)).await.unwrap());
    assert_eq!(store.room(&"r1".into()).await.unwrap(), Some(room("r1", "b", 1)));

    let (page, total) = store.list_rooms(0, 10, RoomSort::NameAsc).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(page[0].id.0, "r2");

    let (stale, done) = store.update_room(room("r1", "c", 5), Some(7)).await.unwrap().unwrap();
    assert!(!done);
    assert_eq!(stale.version, 1);
    let (updated, done) = store.update_room(room("r1", "c", 5), Some(1)).await.unwrap().unwrap();
    assert!(done);
    assert_eq!((updated.version, updated.created_at, updated.name.as_str()), (2, 1, "c"));
    assert_eq!(store.update_room(room("nope", "c", 5), None).await.unwrap(), None);
    assert!(store.delete_room(&"r1".into()).await.unwrap());
    assert!(!store.delete_room(&"r1".into()).await.unwrap());
    assert_eq!(store.room(&"r1".into()).await.unwrap(), None);
}

async fn rooms_list_in_creation_order_and_by_bytes(store: Store) {
    // Created in one millisecond: their creation order, not their ids' order.
    for (id, name) in [("rz", "b"), ("ra", "é"), ("rm", "B"), ("rb", "a")] {
        assert!(store.insert_room(room(id, name, 7)).await.unwrap());
    }
    let ids = |rooms: Vec<Room>| rooms.into_iter().map(|r| r.id.0).collect::<Vec<_>>();
    assert_eq!(ids(store.list_rooms(0, 10, RoomSort::CreatedAsc).await.unwrap().0), ["rz", "ra", "rm", "rb"]);
    assert_eq!(ids(store.list_rooms(0, 10, RoomSort::CreatedDesc).await.unwrap().0), ["rb", "rm", "ra", "rz"]);
    // Byte order: upper case before lower case, then beyond ASCII, whatever the locale.
    assert_eq!(ids(store.list_rooms(0, 10, RoomSort::NameAsc).await.unwrap().0), ["rm", "rb", "rz", "ra"]);
    let (page, total) = store.list_rooms(1, 2, RoomSort::NameDesc).await.unwrap();
    assert_eq!((ids(page), total), (vec!["rz".to_owned(), "rb".to_owned()], 4));
    let (page, total) = store.list_rooms(10, 2, RoomSort::NameDesc).await.unwrap();
    assert_eq!((page.len(), total), (0, 4), "a page past the end still knows the total");
}

async fn invites_count_uses_and_expire(store: Store) {
    store.insert_room(room("r1", "a", 1)).await.unwrap();
    store.insert_invite("h".into(), "r1".into(), 100, Some(1)).await.unwrap();
    assert_eq!(store.invite_room("h".into(), 50).await.unwrap(), Some("r1".into()));
    assert_eq!(store.use_invite("h".into(), 50).await.unwrap(), InviteUse::Accepted("r1".into()));
    assert_eq!(store.use_invite("h".into(), 50).await.unwrap(), InviteUse::Invalid);
    assert_eq!(store.invite_room("h".into(), 50).await.unwrap(), None);
    assert_eq!(store.invite_state("h".into(), 50).await.unwrap(), Some(("r1".into(), InviteState::UsedUp)));
    assert_eq!(store.invite_state("h".into(), 100).await.unwrap(), Some(("r1".into(), InviteState::Expired)));
    assert_eq!(store.invite_state("nope".into(), 50).await.unwrap(), None);
    store.insert_invite("g".into(), "r1".into(), 100, None).await.unwrap();
    assert_eq!(store.use_invite("g".into(), 100).await.unwrap(), InviteUse::Invalid);
    // Purged a week after they expired, so that until then their links say "expired".
    assert_eq!(store.purge_expired(100).await.unwrap(), 0);
    assert_eq!(store.purge_expired(100 + EXPIRED_INVITES_KEPT_MS).await.unwrap(), 2);
    assert_eq!(store.invite_state("g".into(), 50).await.unwrap(), None);
}

async fn refresh_tokens_are_single_use_and_say_why_they_are_spent(store: Store) {
    store.insert_room(room("r1", "a", 1)).await.unwrap();
    store.insert_refresh("h".into(), grant("bob"), 100).await.unwrap();
    let RefreshUse::Granted(g) = store.take_refresh("h".into(), 10).await.unwrap() else { panic!("not granted") };
    assert_eq!((g.ttl, g.identity.0.as_str(), g.name.as_str()), (Some(30), "bob", "Bob"));
    assert!(matches!(store.take_refresh("h".into(), 10).await.unwrap(), RefreshUse::Spent(SpentReason::Used)));
    assert!(matches!(store.take_refresh("nope".into(), 10).await.unwrap(), RefreshUse::Unknown));

    store.insert_refresh("old".into(), grant("bob"), 100).await.unwrap();
    assert!(matches!(store.take_refresh("old".into(), 100).await.unwrap(), RefreshUse::Expired));

    store.insert_refresh("k".into(), grant("carol"), 100).await.unwrap();
    store.insert_refresh("d".into(), grant("dave"), 100).await.unwrap();
    assert_eq!(store.record_kick(&"r1".into(), &"carol".into(), 5).await.unwrap(), 1);
    assert_eq!(store.kicked_at(&"r1".into(), &"carol".into()).await.unwrap(), Some(5));
    assert_eq!(store.kicked_at(&"r1".into(), &"dave".into()).await.unwrap(), None);
    assert!(matches!(store.take_refresh("k".into(), 10).await.unwrap(), RefreshUse::Spent(SpentReason::Kicked)));
    assert!(store.delete_room(&"r1".into()).await.unwrap());
    assert!(matches!(store.take_refresh("d".into(), 10).await.unwrap(), RefreshUse::Spent(SpentReason::RoomDeleted)));
}

async fn settings_keep_the_first_value(store: Store) {
    assert_eq!(store.setting("api_key").await.unwrap(), None);
    assert_eq!(store.init_setting("api_key", "first").await.unwrap(), "first");
    assert_eq!(store.init_setting("api_key", "second").await.unwrap(), "first");
    assert_eq!(store.setting("api_key").await.unwrap().as_deref(), Some("first"));
}

async fn keys_with_nul_bytes_are_unknown_not_errors(store: Store) {
    store.insert_room(room("r1", "a", 1)).await.unwrap();
    assert_eq!(store.room(&"r1\0".into()).await.unwrap(), None);
    assert_eq!(store.update_room(room("r1\0", "a", 1), None).await.unwrap(), None);
    assert!(!store.delete_room(&"r1\0".into()).await.unwrap());
    assert_eq!(store.kicked_at(&"r1".into(), &"a\0".into()).await.unwrap(), None);
    assert_eq!(store.invite_room("h\0".into(), 1).await.unwrap(), None);
    assert_eq!(store.invite_state("h\0".into(), 1).await.unwrap(), None);
    assert_eq!(store.use_invite("h\0".into(), 1).await.unwrap(), InviteUse::Invalid);
    assert!(matches!(store.take_refresh("h\0".into(), 1).await.unwrap(), RefreshUse::Unknown));
}

/// Eight uses of one refresh token at once: one is granted, the others learn it was used.
async fn concurrent_uses_of_a_refresh_token_grant_one(store: Store) {
    store.insert_room(room("r1", "a", 1)).await.unwrap();
    store.insert_refresh("h".into(), grant("bob"), 100).await.unwrap();
    let uses = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.take_refresh("h".into(), 10).await.unwrap() })
    });
    let outcomes = futures_util::future::join_all(uses).await.into_iter().map(Result::unwrap).collect::<Vec<_>>();
    let granted = outcomes.iter().filter(|o| matches!(o, RefreshUse::Granted(_))).count();
    let used = outcomes.iter().filter(|o| matches!(o, RefreshUse::Spent(SpentReason::Used))).count();
    assert_eq!((granted, used), (1, 7), "{outcomes:?}");
}

/// Ten people take an invite good for three at once: three get in.
async fn concurrent_uses_of_an_invite_stop_at_its_limit(store: Store) {
    store.insert_room(room("r1", "a", 1)).await.unwrap();
    store.insert_invite("h".into(), "r1".into(), 100, Some(3)).await.unwrap();
    let uses = (0..10).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.use_invite("h".into(), 10).await.unwrap() })
    });
    let outcomes = futures_util::future::join_all(uses).await.into_iter().map(Result::unwrap).collect::<Vec<_>>();
    assert_eq!(outcomes.iter().filter(|o| matches!(o, InviteUse::Accepted(_))).count(), 3, "{outcomes:?}");
    assert_eq!(store.invite_state("h".into(), 10).await.unwrap(), Some(("r1".into(), InviteState::UsedUp)));
}

/// Six updates of version 1 at once: one wins, the others see version 2.
async fn concurrent_updates_of_one_version_have_one_winner(store: Store) {
    store.insert_room(room("r1", "a", 1)).await.unwrap();
    let updates = (0..6).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { store.update_room(room("r1", &format!("n{i}"), 2), Some(1)).await.unwrap().unwrap() })
    });
    let outcomes = futures_util::future::join_all(updates).await.into_iter().map(Result::unwrap).collect::<Vec<_>>();
    assert_eq!(outcomes.iter().filter(|(_, done)| *done).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|(room, _)| room.version == 2), "{outcomes:?}");
    let stored = store.room(&"r1".into()).await.unwrap().unwrap();
    let winner = outcomes.iter().find(|(_, done)| *done).unwrap();
    assert_eq!(stored.name, winner.0.name);
}

/// Every case on every backend: `sqlite::case` and `postgres::case`.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Store::open(":memory:").await.unwrap()).await
                }
            )*
        }

        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(url) = confer_test_services::postgres::database(stringify!($case)).await else { return };
                    super::$case(super::Store::open(&url).await.unwrap()).await
                }
            )*
        }
    };
}

suite!(
    rooms_round_trip_and_version_check,
    rooms_list_in_creation_order_and_by_bytes,
    invites_count_uses_and_expire,
    refresh_tokens_are_single_use_and_say_why_they_are_spent,
    settings_keep_the_first_value,
    keys_with_nul_bytes_are_unknown_not_errors,
    concurrent_uses_of_a_refresh_token_grant_one,
    concurrent_uses_of_an_invite_stop_at_its_limit,
    concurrent_updates_of_one_version_have_one_winner,
);

/// PostgreSQL: a database migrated by a newer server is refused, and opening an
/// up-to-date one again (another server starting) changes nothing.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_refuses_a_newer_schema() {
    let Some(url) = confer_test_services::postgres::database("newer").await else { return };
    let store = Store::open(&url).await.unwrap();
    store.insert_room(room("r1", "a", 1)).await.unwrap();
    let again = Store::open(&url).await.unwrap();
    assert!(again.room(&"r1".into()).await.unwrap().is_some());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute("UPDATE confer_schema SET version = 99").await.unwrap();
    let err = Store::open(&url).await.err().expect("refused");
    assert!(matches!(err, StoreError::TooNew { found: 99, known: 3 }), "{err}");
}

#[test]
fn a_postgres_password_is_not_shown() {
    assert_eq!(display_db("postgres://confer:s3cr@t@db:5432/confer"), "postgres://confer:***@db:5432/confer");
    assert_eq!(display_db("postgresql://confer@db/confer"), "postgresql://confer@db/confer");
    assert_eq!(display_db("/var/lib/confer/confer.db"), "/var/lib/confer/confer.db");
}
