//! The SQLite backend: the embedded default, one file beside the server.
//!
//! One connection behind a mutex, used from blocking threads: the room API is not a
//! hot path, and SQLite serializes writers anyway. Schema changes are migrations,
//! applied in order at open; a database written by a newer server is refused.

use std::path::Path;
use std::sync::{Arc, Mutex};

use confer_proto::room::{Room, RoomSort};
use confer_proto::{Identity, RoomId, UnixMillis};
use rusqlite::{params, Connection, OptionalExtension};
use rusqlite_migration::{Migrations, M};

use super::*;

/// The migrations, in order; a database's `user_version` says how many it has had.
pub(super) const MIGRATIONS: [&str; 3] = [
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
    // Refresh tokens remember the lifetime their join tokens were minted with, and a
    // refresh token that can no longer be used says why: used already (a second,
    // concurrent or replayed use), its holder kicked, or its room deleted.
    "ALTER TABLE refresh_tokens ADD COLUMN ttl INTEGER;
             CREATE TABLE spent_refresh_tokens (
                 hash TEXT PRIMARY KEY,
                 reason TEXT NOT NULL,
                 expires_at INTEGER NOT NULL
             );",
    // A kick refuses the kicked identity's join tokens issued up to the kick.
    "CREATE TABLE kicks (
                 room TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                 identity TEXT NOT NULL,
                 kicked_at INTEGER NOT NULL,
                 PRIMARY KEY (room, identity)
             );",
];

fn migrations() -> Migrations<'static> {
    Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect())
}

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
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
}

impl Storage for SqliteStore {
    async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        let key = key.to_owned();
        self.with(move |c| {
            Ok(c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0)).optional()?)
        })
        .await
    }

    async fn init_setting(&self, key: &str, value: &str) -> StoreResult<String> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.with(move |c| {
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
                params![key, value],
            )?;
            Ok(c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0))?)
        })
        .await
    }

    async fn insert_room(&self, room: Room) -> StoreResult<bool> {
        let json = RoomColumns::of(&room)?;
        self.with(move |c| {
            let n = c.execute(
                "INSERT INTO rooms (id, name, members, managers, public_meta, private_meta,
                                    policy, version, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT(id) DO NOTHING",
                params![
                    room.id.0,
                    room.name,
                    json.members,
                    json.managers,
                    room.public_meta.0,
                    room.private_meta.0,
                    json.policy,
                    room.version as i64,
                    room.created_at as i64,
                    room.updated_at as i64,
                ],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn room(&self, id: &RoomId) -> StoreResult<Option<Room>> {
        let id = id.clone();
        self.with(move |c| {
            let row = c
                .query_row(&format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = ?1"), [id.0], read_room)
                .optional()?;
            row.map(RawRoom::decode).transpose()
        })
        .await
    }

    async fn list_rooms(&self, skip: u32, limit: u32, sort: RoomSort) -> StoreResult<(Vec<Room>, u64)> {
        self.with(move |c| {
            let order = match sort {
                // Rooms created in the same millisecond keep the order they were
                // created in (rowid), not the order of their random ids.
                RoomSort::CreatedAsc => "created_at ASC, rowid ASC",
                RoomSort::CreatedDesc => "created_at DESC, rowid DESC",
                RoomSort::NameAsc => "name ASC, id ASC",
                RoomSort::NameDesc => "name DESC, id DESC",
            };
            let mut stmt =
                c.prepare(&format!("SELECT {ROOM_COLUMNS} FROM rooms ORDER BY {order} LIMIT ?1 OFFSET ?2"))?;
            let rooms = stmt
                .query_map(params![limit, skip], read_room)?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .map(RawRoom::decode)
                .collect::<StoreResult<Vec<_>>>()?;
            let total: i64 = c.query_row("SELECT COUNT(*) FROM rooms", [], |r| r.get(0))?;
            Ok((rooms, total as u64))
        })
        .await
    }

    async fn update_room(&self, room: Room, expected_version: Option<u64>) -> StoreResult<Option<(Room, bool)>> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let current = tx
                .query_row(&format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = ?1"), [&room.id.0], read_room)
                .optional()?
                .map(RawRoom::decode)
                .transpose()?;
            let Some(current) = current else { return Ok(None) };
            if expected_version.is_some_and(|v| v != current.version) {
                return Ok(Some((current, false)));
            }
            let updated = Room { version: current.version + 1, created_at: current.created_at, ..room };
            let json = RoomColumns::of(&updated)?;
            tx.execute(
                "UPDATE rooms SET name = ?2, members = ?3, managers = ?4, public_meta = ?5,
                        private_meta = ?6, policy = ?7, version = ?8, updated_at = ?9
                 WHERE id = ?1",
                params![
                    updated.id.0,
                    updated.name,
                    json.members,
                    json.managers,
                    updated.public_meta.0,
                    updated.private_meta.0,
                    json.policy,
                    updated.version as i64,
                    updated.updated_at as i64,
                ],
            )?;
            tx.commit()?;
            Ok(Some((updated, true)))
        })
        .await
    }

    async fn delete_room(&self, id: &RoomId) -> StoreResult<bool> {
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

    async fn record_kick(&self, room: &RoomId, identity: &Identity, at: u64) -> StoreResult<usize> {
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

    async fn kicked_at(&self, room: &RoomId, identity: &Identity) -> StoreResult<Option<u64>> {
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

    async fn insert_invite(
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

    async fn invite_room(&self, hash: String, now: UnixMillis) -> StoreResult<Option<RoomId>> {
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

    async fn invite_state(&self, hash: String, now: UnixMillis) -> StoreResult<Option<(RoomId, InviteState)>> {
        self.with(move |c| {
            let row: Option<(String, i64, Option<i64>, i64)> = c
                .query_row("SELECT room, expires_at, max_uses, uses FROM invites WHERE hash = ?1", [hash], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            Ok(row.map(|(room, expires_at, max_uses, uses)| {
                (RoomId(room), InviteState::of(expires_at, max_uses, uses, now))
            }))
        })
        .await
    }

    async fn use_invite(&self, hash: String, now: UnixMillis) -> StoreResult<InviteUse> {
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

    async fn insert_refresh(&self, hash: String, grant: RefreshGrant, expires_at: UnixMillis) -> StoreResult<()> {
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

    async fn take_refresh(&self, hash: String, now: UnixMillis) -> StoreResult<RefreshUse> {
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

    async fn purge_expired(&self, now: UnixMillis) -> StoreResult<usize> {
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

fn read_room(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRoom> {
    Ok(RawRoom {
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
