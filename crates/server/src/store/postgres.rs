//! The PostgreSQL backend (`--db postgres://...`): the store that several servers
//! share.
//!
//! A small pool of connections (deadpool), so that calls run side by side and a
//! connection lost to a database restart is replaced on the next call. Nothing here
//! relies on calls being serialized, as the SQLite backend may: every read-then-write
//! is one statement, or a transaction that locks the rows it decides on
//! (`FOR UPDATE`). Sessions get lock and statement timeouts, so a call never waits on
//! the database longer than an HTTP request may.
//!
//! The schema is the SQLite one with the same migration numbers, in PostgreSQL's
//! types: `BIGINT` for every integer, `BYTEA` for metadata, JSON kept as `TEXT` (it must
//! round-trip byte for byte), and `COLLATE "C"` on what is sorted, so that names sort
//! by their bytes whatever the cluster's locale. Rooms carry a `seq` for their creation
//! order, which SQLite gets from its rowid.

use std::time::Duration;

use confer_proto::room::{Room, RoomSort};
use confer_proto::{Identity, RoomId, UnixMillis};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, NoTls, Row};

use super::*;

/// The migrations, numbered as the SQLite backend's are.
pub(super) const MIGRATIONS: [&str; 3] = [
    r#"CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
       CREATE TABLE rooms (
           seq BIGINT GENERATED ALWAYS AS IDENTITY,
           id TEXT COLLATE "C" PRIMARY KEY,
           name TEXT COLLATE "C" NOT NULL,
           members TEXT NOT NULL,
           managers TEXT NOT NULL,
           public_meta BYTEA NOT NULL,
           private_meta BYTEA NOT NULL,
           policy TEXT NOT NULL,
           version BIGINT NOT NULL,
           created_at BIGINT NOT NULL,
           updated_at BIGINT NOT NULL
       );
       CREATE INDEX rooms_created ON rooms (created_at, seq);
       CREATE INDEX rooms_name ON rooms (name, id);
       CREATE TABLE invites (
           hash TEXT PRIMARY KEY,
           room TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
           expires_at BIGINT NOT NULL,
           max_uses BIGINT,
           uses BIGINT NOT NULL DEFAULT 0
       );
       CREATE INDEX invites_room ON invites (room);
       CREATE TABLE refresh_tokens (
           hash TEXT PRIMARY KEY,
           room TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
           identity TEXT NOT NULL,
           name TEXT NOT NULL,
           grants TEXT NOT NULL,
           expires_at BIGINT NOT NULL
       );
       CREATE INDEX refresh_tokens_holder ON refresh_tokens (room, identity);"#,
    "ALTER TABLE refresh_tokens ADD COLUMN ttl BIGINT;
     CREATE TABLE spent_refresh_tokens (
         hash TEXT PRIMARY KEY,
         reason TEXT NOT NULL,
         expires_at BIGINT NOT NULL
     );",
    "CREATE TABLE kicks (
         room TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
         identity TEXT NOT NULL,
         kicked_at BIGINT NOT NULL,
         PRIMARY KEY (room, identity)
     );",
];

/// The advisory lock servers take to migrate one at a time ("confer" in ASCII).
const MIGRATION_LOCK: i64 = 0x636f_6e66_6572;

/// How long a call waits for a connection, or to make one.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Connects to the database at `url` and brings its schema up to date.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let mut config: tokio_postgres::Config = url.parse()?;
        // Bounded waits on locks and statements, and no transaction left open by a
        // server that stalled: below the HTTP request timeout.
        let options = format!(
            "{} -c lock_timeout=5s -c statement_timeout=10s -c idle_in_transaction_session_timeout=15s",
            config.get_options().unwrap_or_default()
        );
        config.options(options.trim_start());
        config.connect_timeout(CONNECT_WAIT);
        if config.get_application_name().is_none() {
            config.application_name("confer-server");
        }
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(8)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_WAIT))
            .create_timeout(Some(CONNECT_WAIT))
            .recycle_timeout(Some(CONNECT_WAIT))
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations this database has not had, one server at a time.
    async fn migrate(&self) -> StoreResult<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS confer_schema (version BIGINT NOT NULL)").await?;
        let found = match tx.query_opt("SELECT version FROM confer_schema", &[]).await? {
            Some(row) => row.try_get::<_, i64>(0)?,
            None => {
                tx.execute("INSERT INTO confer_schema (version) VALUES (0)", &[]).await?;
                0
            }
        };
        let known = MIGRATIONS.len() as i64;
        if found > known {
            return Err(StoreError::TooNew { found, known });
        }
        for sql in &MIGRATIONS[found as usize..] {
            tx.batch_execute(sql).await?;
        }
        tx.execute("UPDATE confer_schema SET version = $1", &[&known]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One row or none, on a connection of the pool.
    async fn row(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Option<Row>> {
        Ok(self.pool.get().await?.query_opt(sql, params).await?)
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<u64> {
        Ok(self.pool.get().await?.execute(sql, params).await?)
    }
}

/// SQLSTATEs that mean the database is out of reach or overloaded, not that the
/// request was wrong.
pub(super) fn unavailable_state(code: &SqlState) -> bool {
    code.code().starts_with("08") // connection exceptions
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::QUERY_CANCELED,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ]
        .contains(code)
}

/// PostgreSQL's text cannot hold NUL; SQLite's can. A key with one was never stored.
fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

fn raw_room(r: &Row) -> Result<RawRoom, tokio_postgres::Error> {
    Ok(RawRoom {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        members: r.try_get(2)?,
        managers: r.try_get(3)?,
        public_meta: r.try_get(4)?,
        private_meta: r.try_get(5)?,
        policy: r.try_get(6)?,
        version: r.try_get(7)?,
        created_at: r.try_get(8)?,
        updated_at: r.try_get(9)?,
    })
}

/// Moves the refresh tokens matching `filter` to the spent ones, with `reason`: one
/// statement, so that only the rows it deleted are recorded (a token used meanwhile
/// keeps its own reason). Returns how many it moved.
async fn spend(
    tx: &impl GenericClient,
    filter: &str,
    params: &[&(dyn ToSql + Sync)],
    reason: SpentReason,
) -> StoreResult<usize> {
    let sql = format!(
        "WITH gone AS (DELETE FROM refresh_tokens WHERE {filter} RETURNING hash, expires_at)
         INSERT INTO spent_refresh_tokens (hash, reason, expires_at)
         SELECT hash, '{}', expires_at FROM gone
         ON CONFLICT (hash) DO UPDATE SET reason = excluded.reason, expires_at = excluded.expires_at",
        reason.as_str()
    );
    Ok(tx.execute(&sql, params).await? as usize)
}

impl Storage for PgStore {
    async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        let row = self.row("SELECT value FROM settings WHERE key = $1", &[&key]).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn init_setting(&self, key: &str, value: &str) -> StoreResult<String> {
        // Two servers starting on one new database both insert; one wins, both read it.
        self.execute("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", &[&key, &value])
            .await?;
        let row = self.row("SELECT value FROM settings WHERE key = $1", &[&key]).await?;
        let row = row.ok_or_else(|| StoreError::Config(format!("setting {key} vanished")))?;
        Ok(row.try_get(0)?)
    }

    async fn insert_room(&self, room: Room) -> StoreResult<bool> {
        let json = RoomColumns::of(&room)?;
        let n = self
            .execute(
                "INSERT INTO rooms (id, name, members, managers, public_meta, private_meta,
                                    policy, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &room.id.0,
                    &room.name,
                    &json.members,
                    &json.managers,
                    &room.public_meta.0,
                    &room.private_meta.0,
                    &json.policy,
                    &(room.version as i64),
                    &(room.created_at as i64),
                    &(room.updated_at as i64),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn room(&self, id: &RoomId) -> StoreResult<Option<Room>> {
        if has_nul(&id.0) {
            return Ok(None);
        }
        let row = self.row(&format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = $1"), &[&id.0]).await?;
        row.map(|r| raw_room(&r).map_err(StoreError::from).and_then(RawRoom::decode)).transpose()
    }

    async fn list_rooms(&self, skip: u32, limit: u32, sort: RoomSort) -> StoreResult<(Vec<Room>, u64)> {
        let order = match sort {
            RoomSort::CreatedAsc => "created_at ASC, seq ASC",
            RoomSort::CreatedDesc => "created_at DESC, seq DESC",
            RoomSort::NameAsc => "name ASC, id ASC",
            RoomSort::NameDesc => "name DESC, id DESC",
        };
        let mut client = self.pool.get().await?;
        // The page and the total from one snapshot.
        let tx =
            client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
        let rows = tx
            .query(
                &format!("SELECT {ROOM_COLUMNS} FROM rooms ORDER BY {order} LIMIT $1 OFFSET $2"),
                &[&i64::from(limit), &i64::from(skip)],
            )
            .await?;
        let total: i64 = tx.query_one("SELECT COUNT(*) FROM rooms", &[]).await?.try_get(0)?;
        tx.commit().await?;
        let rooms = rows.iter().map(|r| raw_room(r).map_err(StoreError::from).and_then(RawRoom::decode));
        Ok((rooms.collect::<StoreResult<Vec<_>>>()?, total as u64))
    }

    async fn update_room(&self, room: Room, expected_version: Option<u64>) -> StoreResult<Option<(Room, bool)>> {
        if has_nul(&room.id.0) {
            return Ok(None);
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The row stays locked until the commit: a concurrent update of the same
        // version waits here, then sees the new version and loses.
        let current =
            tx.query_opt(&format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = $1 FOR UPDATE"), &[&room.id.0]).await?;
        let Some(current) =
            current.map(|r| raw_room(&r).map_err(StoreError::from).and_then(RawRoom::decode)).transpose()?
        else {
            return Ok(None);
        };
        if expected_version.is_some_and(|v| v != current.version) {
            return Ok(Some((current, false)));
        }
        let updated = Room { version: current.version + 1, created_at: current.created_at, ..room };
        let json = RoomColumns::of(&updated)?;
        tx.execute(
            "UPDATE rooms SET name = $2, members = $3, managers = $4, public_meta = $5,
                    private_meta = $6, policy = $7, version = $8, updated_at = $9
             WHERE id = $1",
            &[
                &updated.id.0,
                &updated.name,
                &json.members,
                &json.managers,
                &updated.public_meta.0,
                &updated.private_meta.0,
                &json.policy,
                &(updated.version as i64),
                &(updated.updated_at as i64),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(Some((updated, true)))
    }

    async fn delete_room(&self, id: &RoomId) -> StoreResult<bool> {
        if has_nul(&id.0) {
            return Ok(false);
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Locking the room holds back new invites and refresh tokens for it (their
        // foreign keys wait on this row) until it is gone.
        if tx.query_opt("SELECT 1 FROM rooms WHERE id = $1 FOR UPDATE", &[&id.0]).await?.is_none() {
            return Ok(false);
        }
        spend(&tx, "room = $1", &[&id.0], SpentReason::RoomDeleted).await?;
        let deleted = tx.execute("DELETE FROM rooms WHERE id = $1", &[&id.0]).await? == 1;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn record_kick(&self, room: &RoomId, identity: &Identity, at: u64) -> StoreResult<usize> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO kicks (room, identity, kicked_at) VALUES ($1, $2, $3)
             ON CONFLICT (room, identity) DO UPDATE SET kicked_at = excluded.kicked_at",
            &[&room.0, &identity.0, &(at as i64)],
        )
        .await?;
        let n = spend(&tx, "room = $1 AND identity = $2", &[&room.0, &identity.0], SpentReason::Kicked).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn kicked_at(&self, room: &RoomId, identity: &Identity) -> StoreResult<Option<u64>> {
        if has_nul(&room.0) || has_nul(&identity.0) {
            return Ok(None);
        }
        let row =
            self.row("SELECT kicked_at FROM kicks WHERE room = $1 AND identity = $2", &[&room.0, &identity.0]).await?;
        Ok(row.map(|r| r.try_get::<_, i64>(0)).transpose()?.map(|t| t as u64))
    }

    async fn insert_invite(
        &self,
        hash: String,
        room: RoomId,
        expires_at: UnixMillis,
        max_uses: Option<u32>,
    ) -> StoreResult<()> {
        self.execute(
            "INSERT INTO invites (hash, room, expires_at, max_uses) VALUES ($1, $2, $3, $4)",
            &[&hash, &room.0, &(expires_at as i64), &max_uses.map(i64::from)],
        )
        .await?;
        Ok(())
    }

    async fn invite_room(&self, hash: String, now: UnixMillis) -> StoreResult<Option<RoomId>> {
        if has_nul(&hash) {
            return Ok(None);
        }
        let row = self
            .row(
                "SELECT room FROM invites
                 WHERE hash = $1 AND expires_at > $2 AND (max_uses IS NULL OR uses < max_uses)",
                &[&hash, &(now as i64)],
            )
            .await?;
        Ok(row.map(|r| r.try_get(0).map(RoomId)).transpose()?)
    }

    async fn invite_state(&self, hash: String, now: UnixMillis) -> StoreResult<Option<(RoomId, InviteState)>> {
        if has_nul(&hash) {
            return Ok(None);
        }
        let row = self.row("SELECT room, expires_at, max_uses, uses FROM invites WHERE hash = $1", &[&hash]).await?;
        let Some(r) = row else { return Ok(None) };
        let state = InviteState::of(r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, now);
        Ok(Some((RoomId(r.try_get(0)?), state)))
    }

    async fn use_invite(&self, hash: String, now: UnixMillis) -> StoreResult<InviteUse> {
        if has_nul(&hash) {
            return Ok(InviteUse::Invalid);
        }
        // One statement: of concurrent uses of the last one, the waiting update
        // re-checks the row it waited for and finds it used up.
        let row = self
            .row(
                "UPDATE invites SET uses = uses + 1
                 WHERE hash = $1 AND expires_at > $2 AND (max_uses IS NULL OR uses < max_uses)
                 RETURNING room",
                &[&hash, &(now as i64)],
            )
            .await?;
        Ok(match row {
            Some(r) => InviteUse::Accepted(RoomId(r.try_get(0)?)),
            None => InviteUse::Invalid,
        })
    }

    async fn insert_refresh(&self, hash: String, grant: RefreshGrant, expires_at: UnixMillis) -> StoreResult<()> {
        self.execute(
            "INSERT INTO refresh_tokens (hash, room, identity, name, grants, expires_at, ttl)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &hash,
                &grant.room.0,
                &grant.identity.0,
                &grant.name,
                &serde_json::to_string(&grant.grants)?,
                &(expires_at as i64),
                &grant.ttl.map(|t| t as i64),
            ],
        )
        .await?;
        Ok(())
    }

    async fn take_refresh(&self, hash: String, now: UnixMillis) -> StoreResult<RefreshUse> {
        if has_nul(&hash) {
            return Ok(RefreshUse::Unknown);
        }
        let mut client = self.pool.get().await?;
        // Read committed, whatever the database's default: the second of two
        // concurrent uses waits on the first's delete, finds no row, and then (in a
        // statement of its own, with a fresh snapshot) the first's spent record.
        let tx = client.build_transaction().isolation_level(IsolationLevel::ReadCommitted).start().await?;
        let row = tx
            .query_opt(
                "DELETE FROM refresh_tokens WHERE hash = $1
                 RETURNING room, identity, name, grants, expires_at, ttl",
                &[&hash],
            )
            .await?;
        let Some(row) = row else {
            let spent = tx.query_opt("SELECT reason FROM spent_refresh_tokens WHERE hash = $1", &[&hash]).await?;
            let reason = spent.map(|r| r.try_get::<_, String>(0)).transpose()?;
            return Ok(match reason.as_deref().and_then(SpentReason::parse) {
                Some(reason) => RefreshUse::Spent(reason),
                None => RefreshUse::Unknown,
            });
        };
        let expires_at: i64 = row.try_get(4)?;
        if (expires_at as u64) <= now {
            tx.commit().await?;
            return Ok(RefreshUse::Expired);
        }
        tx.execute(
            "INSERT INTO spent_refresh_tokens (hash, reason, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (hash) DO UPDATE SET reason = excluded.reason, expires_at = excluded.expires_at",
            &[&hash, &SpentReason::Used.as_str(), &expires_at],
        )
        .await?;
        tx.commit().await?;
        let grants: String = row.try_get(3)?;
        Ok(RefreshUse::Granted(RefreshGrant {
            room: RoomId(row.try_get(0)?),
            identity: Identity(row.try_get(1)?),
            name: row.try_get(2)?,
            grants: serde_json::from_str(&grants)?,
            ttl: row.try_get::<_, Option<i64>>(5)?.map(|t| t as u64),
        }))
    }

    async fn purge_expired(&self, now: UnixMillis) -> StoreResult<usize> {
        let kept = now.saturating_sub(EXPIRED_INVITES_KEPT_MS) as i64;
        let a = self.execute("DELETE FROM invites WHERE expires_at <= $1", &[&kept]).await?;
        let b = self.execute("DELETE FROM refresh_tokens WHERE expires_at <= $1", &[&(now as i64)]).await?;
        self.execute("DELETE FROM spent_refresh_tokens WHERE expires_at <= $1", &[&(now as i64)]).await?;
        let horizon = (now / 1000).saturating_sub(crate::auth::MAX_TOKEN_LIFETIME_SECS) as i64;
        self.execute("DELETE FROM kicks WHERE kicked_at < $1", &[&horizon]).await?;
        Ok((a + b) as usize)
    }
}
