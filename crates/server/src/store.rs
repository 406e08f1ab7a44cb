//! Durable storage on SQLite: rooms, invites, refresh tokens and the server's own
//! settings. Live session state is not here; it lives in memory in [`crate::hub`].
//!
//! One connection behind a mutex, used from blocking threads: the room API is not a
//! hot path, and SQLite serializes writers anyway. Schema changes are migrations,
//! applied in order at open; a database written by a newer server is refused.

use std::path::Path;
use std::sync::{Arc, Mutex};

use confer_proto::room::{Room, RoomPolicy, RoomSort};
use confer_proto::token::Grants;
use confer_proto::{Bytes, Identity, RoomId, UnixMillis};
use rusqlite::{params, Connection, OptionalExtension};
use rusqlite_migration::{Migrations, M};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("corrupt row: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("storage task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub type StoreResult<T> = Result<T, StoreError>;

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(
            "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE rooms (
             id TEXT PRIMARY KEY,
             name TEXT NOT NULL,
             members TEXT NOT NULL,
             managers TEXT NOT NULL,
             public_meta BLOB NOT NULL,
             private_meta BLOB NOT NULL,
             policy TEXT NOT NULL,
             version INTEGER NOT NULL,
             created_at INTEGER NOT NULL,
             updated_at INTEGER NOT NULL
         );
         CREATE INDEX rooms_created ON rooms (created_at, id);
         CREATE INDEX rooms_name ON rooms (name, id);
         CREATE TABLE invites (
             hash TEXT PRIMARY KEY,
             room TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
             expires_at INTEGER NOT NULL,
             max_uses INTEGER,
             uses INTEGER NOT NULL DEFAULT 0
         );
         CREATE TABLE refresh_tokens (
             hash TEXT PRIMARY KEY,
             room TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
             identity TEXT NOT NULL,
             name TEXT NOT NULL,
             grants TEXT NOT NULL,
             expires_at INTEGER NOT NULL
         );",
        ),
        // Refresh tokens remember the lifetime their join tokens were minted with, and a
        // refresh token that can no longer be used says why: used already (a second,
        // concurrent or replayed use), its holder kicked, or its room deleted.
        M::up(
            "ALTER TABLE refresh_tokens ADD COLUMN ttl INTEGER;
             CREATE TABLE spent_refresh_tokens (
                 hash TEXT PRIMARY KEY,
                 reason TEXT NOT NULL,
                 expires_at INTEGER NOT NULL
             );",
        ),
        // A kick refuses the kicked identity's join tokens issued up to the kick.
        M::up(
            "CREATE TABLE kicks (
                 room TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                 identity TEXT NOT NULL,
                 kicked_at INTEGER NOT NULL,
                 PRIMARY KEY (room, identity)
             );",
        ),
    ])
}

/// What a refresh token stands for.
#[derive(Debug, Clone)]
pub struct RefreshGrant {
    pub room: RoomId,
    pub identity: Identity,
    pub name: String,
    pub grants: Grants,
    /// The join-token lifetime it was first minted with; `None`: the server's default.
    pub ttl: Option<u64>,
}

/// Outcome of trying to use a refresh token.
#[derive(Debug)]
pub enum RefreshUse {
    Granted(RefreshGrant),
    /// Never issued (or purged long after it expired).
    Unknown,
    Expired,
    /// Cannot be used again, and why.
    Spent(SpentReason),
}

/// Why a refresh token was taken out of use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpentReason {
    /// Exchanged already: this use is a second one (concurrent, or replayed).
    Used,
    /// Its holder was kicked from the room.
    Kicked,
    /// Its room was deleted.
    RoomDeleted,
}

impl SpentReason {
    fn as_str(self) -> &'static str {
        match self {
            SpentReason::Used => "used",
            SpentReason::Kicked => "kicked",
            SpentReason::RoomDeleted => "room_deleted",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [SpentReason::Used, SpentReason::Kicked, SpentReason::RoomDeleted].into_iter().find(|r| r.as_str() == s)
    }
}

/// Whether an invite can still be used, as its join page says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteState {
    Good,
    Expired,
    UsedUp,
}

/// Expired invites are kept this long (milliseconds), so that their links say they
/// expired rather than that they were never valid.
const EXPIRED_INVITES_KEPT_MS: u64 = 7 * 24 * 3600 * 1000;

/// Outcome of trying to use an invite.
#[derive(Debug, PartialEq, Eq)]
pub enum InviteUse {
    Accepted(RoomId),
    /// Unknown, expired or used up: all look the same to the caller.
    Invalid,
}

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, or an in-memory one for
    /// `":memory:"`, and brings its schema up to date.
    pub fn open(path: &str) -> StoreResult<Self> {
        let mut conn = if path == ":memory:" {
            Connection::open_in_memory()?
        } else {
            if let Some(dir) = Path::new(path).parent() {
                // A missing directory shows up as an open error just below.
                let _ = std::fs::create_dir_all(dir);
            }
            let conn = Connection::open(path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn
        };
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations().to_latest(&mut conn)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `f` with the connection on a blocking thread.
    async fn with<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written (every
            // change is one statement or one transaction), so a poisoned lock is usable.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await?
    }

    pub async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        let key = key.to_owned();
        self.with(move |c| {
            Ok(c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0)).optional()?)
        })
        .await
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.with(move |c| {
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
        })
        .await
    }

    /// Inserts a new room; `false` when the id is taken.
    pub async fn insert_room(&self, room: Room) -> StoreResult<bool> {
        self.with(move |c| {
            let n = c.execute(
                "INSERT INTO rooms (id, name, members, managers, public_meta, private_meta,
                                    policy, version, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT(id) DO NOTHING",
                params![
                    room.id.0,
                    room.name,
                    serde_json::to_string(&room.members)?,
                    serde_json::to_string(&room.managers)?,
                    room.public_meta.0,
                    room.private_meta.0,
                    serde_json::to_string(&room.policy)?,
                    room.version as i64,
                    room.created_at as i64,
                    room.updated_at as i64,
                ],
            )?;
            Ok(n == 1)
        })
        .await
    }

    pub async fn room(&self, id: &RoomId) -> StoreResult<Option<Room>> {
        let id = id.clone();
        self.with(move |c| {
            let row = c.query_row(&format!("{ROOM_SELECT} WHERE id = ?1"), [id.0], RawRoom::read).optional()?;
            row.map(RawRoom::decode).transpose()
        })
        .await
    }

    pub async fn list_rooms(&self, skip: u32, limit: u32, sort: RoomSort) -> StoreResult<(Vec<Room>, u64)> {
        self.with(move |c| {
            let order = match sort {
                // Rooms created in the same millisecond keep the order they were
                // created in (rowid), not the order of their random ids.
                RoomSort::CreatedAsc => "created_at ASC, rowid ASC",
                RoomSort::CreatedDesc => "created_at DESC, rowid DESC",
                RoomSort::NameAsc => "name ASC, id ASC",
                RoomSort::NameDesc => "name DESC, id DESC",
            };
            let mut stmt = c.prepare(&format!("{ROOM_SELECT} ORDER BY {order} LIMIT ?1 OFFSET ?2"))?;
            let rooms = stmt
                .query_map(params![limit, skip], RawRoom::read)?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .map(RawRoom::decode)
                .collect::<StoreResult<Vec<_>>>()?;
            let total: i64 = c.query_row("SELECT COUNT(*) FROM rooms", [], |r| r.get(0))?;
            Ok((rooms, total as u64))
        })
        .await
    }

    /// Replaces a room's fields if its stored version is still `expected_version`
    /// (or unconditionally when it is `None`). Returns the stored room after the call
    /// and whether the update happened; `None` when there is no such room.
    pub async fn update_room(&self, room: Room, expected_version: Option<u64>) -> StoreResult<Option<(Room, bool)>> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let current = tx
                .query_row(&format!("{ROOM_SELECT} WHERE id = ?1"), [&room.id.0], RawRoom::read)
                .optional()?
                .map(RawRoom::decode)
                .transpose()?;
            let Some(current) = current else { return Ok(None) };
            if expected_version.is_some_and(|v| v != current.version) {
                return Ok(Some((current, false)));
            }
            let updated = Room { version: current.version + 1, created_at: current.created_at, ..room };
            tx.execute(
                "UPDATE rooms SET name = ?2, members = ?3, managers = ?4, public_meta = ?5,
                        private_meta = ?6, policy = ?7, version = ?8, updated_at = ?9
                 WHERE id = ?1",
                params![
                    updated.id.0,
                    updated.name,
                    serde_json::to_string(&updated.members)?,
                    serde_json::to_string(&updated.managers)?,
                    updated.public_meta.0,
                    updated.private_meta.0,
                    serde_json::to_string(&updated.policy)?,
                    updated.version as i64,
                    updated.updated_at as i64,
                ],
            )?;
            tx.commit()?;
            Ok(Some((updated, true)))
        })
        .await
    }

    /// Deletes a room with its invites and refresh tokens (remembered as spent, so that
    /// their holders learn why); `false` if there was none.
    pub async fn delete_room(&self, id: &RoomId) -> StoreResult<bool> {
        let id = id.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            spend(&tx, "room = ?1", params![id.0], SpentReason::RoomDeleted)?;
            let deleted = tx.execute("DELETE FROM rooms WHERE id = ?1", [id.0])? == 1;
            tx.commit()?;
            Ok(deleted)
        })
        .await
    }

    /// `identity` was kicked from `room` at `at` (seconds since the epoch): its join
    /// tokens issued up to then stop working there, and every refresh token of it for
    /// the room is taken out of use. Returns how many refresh tokens were revoked.
    pub async fn record_kick(&self, room: &RoomId, identity: &Identity, at: u64) -> StoreResult<usize> {
        let (room, identity) = (room.clone(), identity.clone());
        self.with(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO kicks (room, identity, kicked_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(room, identity) DO UPDATE SET kicked_at = excluded.kicked_at",
                params![room.0, identity.0, at as i64],
            )?;
            let n = spend(&tx, "room = ?1 AND identity = ?2", params![room.0, identity.0], SpentReason::Kicked)?;
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    /// When `identity` was last kicked from `room` (seconds since the epoch), if ever.
    pub async fn kicked_at(&self, room: &RoomId, identity: &Identity) -> StoreResult<Option<u64>> {
        let (room, identity) = (room.clone(), identity.clone());
        self.with(move |c| {
            let at: Option<i64> = c
                .query_row(
                    "SELECT kicked_at FROM kicks WHERE room = ?1 AND identity = ?2",
                    params![room.0, identity.0],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(at.map(|t| t as u64))
        })
        .await
    }

    pub async fn insert_invite(
        &self,
        hash: String,
        room: RoomId,
        expires_at: UnixMillis,
        max_uses: Option<u32>,
    ) -> StoreResult<()> {
        self.with(move |c| {
            c.execute(
                "INSERT INTO invites (hash, room, expires_at, max_uses) VALUES (?1, ?2, ?3, ?4)",
                params![hash, room.0, expires_at as i64, max_uses],
            )?;
            Ok(())
        })
        .await
    }

    /// The room of the invite with this hash, if it is still good at `now` (without
    /// using it).
    pub async fn invite_room(&self, hash: String, now: UnixMillis) -> StoreResult<Option<RoomId>> {
        self.with(move |c| {
            let room: Option<String> = c
                .query_row(
                    "SELECT room FROM invites
                     WHERE hash = ?1 AND expires_at > ?2 AND (max_uses IS NULL OR uses < max_uses)",
                    params![hash, now as i64],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(room.map(RoomId))
        })
        .await
    }

    /// The room of the invite with this hash and whether it can still be used at `now`
    /// (without using it); `None` for an invite this server does not know.
    pub async fn invite_state(&self, hash: String, now: UnixMillis) -> StoreResult<Option<(RoomId, InviteState)>> {
        self.with(move |c| {
            let row: Option<(String, i64, Option<i64>, i64)> = c
                .query_row("SELECT room, expires_at, max_uses, uses FROM invites WHERE hash = ?1", [hash], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            Ok(row.map(|(room, expires_at, max_uses, uses)| {
                let state = if expires_at <= now as i64 {
                    InviteState::Expired
                } else if max_uses.is_some_and(|max| uses >= max) {
                    InviteState::UsedUp
                } else {
                    InviteState::Good
                };
                (RoomId(room), state)
            }))
        })
        .await
    }

    /// Counts one use of the invite with this hash, if it is still good at `now`.
    pub async fn use_invite(&self, hash: String, now: UnixMillis) -> StoreResult<InviteUse> {
        self.with(move |c| {
            let room: Option<String> = c
                .query_row(
                    "UPDATE invites SET uses = uses + 1
                     WHERE hash = ?1 AND expires_at > ?2 AND (max_uses IS NULL OR uses < max_uses)
                     RETURNING room",
                    params![hash, now as i64],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(room.map_or(InviteUse::Invalid, |r| InviteUse::Accepted(RoomId(r))))
        })
        .await
    }

    pub async fn insert_refresh(&self, hash: String, grant: RefreshGrant, expires_at: UnixMillis) -> StoreResult<()> {
        self.with(move |c| {
            c.execute(
                "INSERT INTO refresh_tokens (hash, room, identity, name, grants, expires_at, ttl)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    hash,
                    grant.room.0,
                    grant.identity.0,
                    grant.name,
                    serde_json::to_string(&grant.grants)?,
                    expires_at as i64,
                    grant.ttl.map(|t| t as i64),
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Uses the refresh token with this hash: returns what it stood for if it was still
    /// good at `now`, and marks it spent. Refresh tokens are single-use (the caller
    /// issues a new one); of two concurrent uses exactly one is granted.
    pub async fn take_refresh(&self, hash: String, now: UnixMillis) -> StoreResult<RefreshUse> {
        self.with(move |c| {
            let tx = c.transaction()?;
            type Row = (String, String, String, String, i64, Option<i64>);
            let row: Option<Row> = tx
                .query_row(
                    "DELETE FROM refresh_tokens WHERE hash = ?1
                     RETURNING room, identity, name, grants, expires_at, ttl",
                    [&hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
                )
                .optional()?;
            let Some((room, identity, name, grants, expires_at, ttl)) = row else {
                let spent: Option<String> = tx
                    .query_row("SELECT reason FROM spent_refresh_tokens WHERE hash = ?1", [&hash], |r| r.get(0))
                    .optional()?;
                return Ok(match spent.as_deref().and_then(SpentReason::parse) {
                    Some(reason) => RefreshUse::Spent(reason),
                    None => RefreshUse::Unknown,
                });
            };
            if (expires_at as u64) <= now {
                tx.commit()?;
                return Ok(RefreshUse::Expired);
            }
            tx.execute(
                "INSERT OR REPLACE INTO spent_refresh_tokens (hash, reason, expires_at) VALUES (?1, ?2, ?3)",
                params![hash, SpentReason::Used.as_str(), expires_at],
            )?;
            tx.commit()?;
            Ok(RefreshUse::Granted(RefreshGrant {
                room: RoomId(room),
                identity: Identity(identity),
                name,
                grants: serde_json::from_str(&grants)?,
                ttl: ttl.map(|t| t as u64),
            }))
        })
        .await
    }

    /// Drops expired refresh tokens, and invites a week after they expired.
    pub async fn purge_expired(&self, now: UnixMillis) -> StoreResult<usize> {
        self.with(move |c| {
            let kept = now.saturating_sub(EXPIRED_INVITES_KEPT_MS);
            let a = c.execute("DELETE FROM invites WHERE expires_at <= ?1", [kept as i64])?;
            let b = c.execute("DELETE FROM refresh_tokens WHERE expires_at <= ?1", [now as i64])?;
            c.execute("DELETE FROM spent_refresh_tokens WHERE expires_at <= ?1", [now as i64])?;
            // Past the longest token lifetime, no token issued before a kick is still valid.
            let horizon = (now / 1000).saturating_sub(crate::auth::MAX_TOKEN_LIFETIME_SECS);
            c.execute("DELETE FROM kicks WHERE kicked_at < ?1", [horizon as i64])?;
            Ok(a + b)
        })
        .await
    }
}

/// Moves the refresh tokens matching `filter` to the spent ones, with `reason`.
fn spend(
    tx: &rusqlite::Transaction<'_>,
    filter: &str,
    args: impl rusqlite::Params + Copy,
    reason: SpentReason,
) -> StoreResult<usize> {
    tx.execute(
        &format!(
            "INSERT OR REPLACE INTO spent_refresh_tokens (hash, reason, expires_at)
             SELECT hash, '{}', expires_at FROM refresh_tokens WHERE {filter}",
            reason.as_str()
        ),
        args,
    )?;
    Ok(tx.execute(&format!("DELETE FROM refresh_tokens WHERE {filter}"), args)?)
}

const ROOM_SELECT: &str = "SELECT id, name, members, managers, public_meta, private_meta, policy, \
                           version, created_at, updated_at FROM rooms";

/// A row as SQLite hands it over, before the JSON columns are decoded.
struct RawRoom {
    id: String,
    name: String,
    members: String,
    managers: String,
    public_meta: Vec<u8>,
    private_meta: Vec<u8>,
    policy: String,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl RawRoom {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            name: r.get(1)?,
            members: r.get(2)?,
            managers: r.get(3)?,
            public_meta: r.get(4)?,
            private_meta: r.get(5)?,
            policy: r.get(6)?,
            version: r.get(7)?,
            created_at: r.get(8)?,
            updated_at: r.get(9)?,
        })
    }

    fn decode(self) -> StoreResult<Room> {
        Ok(Room {
            id: RoomId(self.id),
            name: self.name,
            members: serde_json::from_str(&self.members)?,
            managers: serde_json::from_str(&self.managers)?,
            public_meta: Bytes(self.public_meta),
            private_meta: Bytes(self.private_meta),
            policy: serde_json::from_str::<RoomPolicy>(&self.policy)?,
            version: self.version as u64,
            created_at: self.created_at as u64,
            updated_at: self.updated_at as u64,
        })
    }
}

#[cfg(test)]
mod tests {
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

    #[tokio::test]
    async fn rooms_round_trip_and_version_check() {
        let store = Store::open(":memory:").unwrap();
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
        assert!(store.delete_room(&"r1".into()).await.unwrap());
        assert_eq!(store.room(&"r1".into()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn invites_count_uses_and_expire() {
        let store = Store::open(":memory:").unwrap();
        store.insert_room(room("r1", "a", 1)).await.unwrap();
        store.insert_invite("h".into(), "r1".into(), 100, Some(1)).await.unwrap();
        assert_eq!(store.use_invite("h".into(), 50).await.unwrap(), InviteUse::Accepted("r1".into()));
        assert_eq!(store.use_invite("h".into(), 50).await.unwrap(), InviteUse::Invalid);
        assert_eq!(store.invite_state("h".into(), 50).await.unwrap(), Some(("r1".into(), InviteState::UsedUp)));
        assert_eq!(store.invite_state("h".into(), 100).await.unwrap(), Some(("r1".into(), InviteState::Expired)));
        assert_eq!(store.invite_state("nope".into(), 50).await.unwrap(), None);
        store.insert_invite("g".into(), "r1".into(), 100, None).await.unwrap();
        assert_eq!(store.use_invite("g".into(), 100).await.unwrap(), InviteUse::Invalid);
    }

    #[tokio::test]
    async fn refresh_tokens_are_single_use_and_say_why_they_are_spent() {
        let store = Store::open(":memory:").unwrap();
        store.insert_room(room("r1", "a", 1)).await.unwrap();
        let grant = |identity: &str| RefreshGrant {
            room: "r1".into(),
            identity: identity.into(),
            name: "Bob".into(),
            grants: Grants::default(),
            ttl: Some(30),
        };
        store.insert_refresh("h".into(), grant("bob"), 100).await.unwrap();
        let RefreshUse::Granted(g) = store.take_refresh("h".into(), 10).await.unwrap() else { panic!("not granted") };
        assert_eq!(g.ttl, Some(30));
        assert!(matches!(store.take_refresh("h".into(), 10).await.unwrap(), RefreshUse::Spent(SpentReason::Used)));
        assert!(matches!(store.take_refresh("nope".into(), 10).await.unwrap(), RefreshUse::Unknown));

        store.insert_refresh("old".into(), grant("bob"), 100).await.unwrap();
        assert!(matches!(store.take_refresh("old".into(), 100).await.unwrap(), RefreshUse::Expired));

        store.insert_refresh("k".into(), grant("carol"), 100).await.unwrap();
        store.insert_refresh("d".into(), grant("dave"), 100).await.unwrap();
        assert_eq!(store.record_kick(&"r1".into(), &"carol".into(), 0).await.unwrap(), 1);
        assert!(matches!(store.take_refresh("k".into(), 10).await.unwrap(), RefreshUse::Spent(SpentReason::Kicked)));
        assert!(store.delete_room(&"r1".into()).await.unwrap());
        assert!(matches!(
            store.take_refresh("d".into(), 10).await.unwrap(),
            RefreshUse::Spent(SpentReason::RoomDeleted)
        ));
    }
}
