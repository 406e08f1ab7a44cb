//! Durable storage: rooms, invites, refresh tokens, kicks and the server's own
//! settings. Live session state is not here; it lives in memory in [`crate::hub`].
//!
//! [`Storage`] is the contract. Two backends keep it: SQLite ([`sqlite`]), the embedded
//! default, one file beside the server; and PostgreSQL ([`postgres`], `--db
//! postgres://...`), which several servers share. Both run the same migrations (by
//! number) and pass the same suite (`tests.rs`), including the races that only a
//! shared database can lose: two uses of one refresh token, the last use of an invite,
//! two updates of one room version.
//!
//! Every domain outcome (taken, used up, spent, version conflict) is a return value;
//! [`StoreError`] is only for the database failing, and says whether that is the
//! database being out of reach ([`StoreError::is_unavailable`]).

use std::future::Future;

use confer_proto::room::{Room, RoomSort};
use confer_proto::token::Grants;
use confer_proto::{Identity, RoomId, UnixMillis};

#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod tests;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[cfg(feature = "postgres")]
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[cfg(feature = "postgres")]
    #[error("postgres connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("the database's schema is version {found}, written by a newer server (this one knows {known})")]
    TooNew { found: i64, known: i64 },
    #[error("database configuration: {0}")]
    Config(String),
    #[error("corrupt row: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("storage task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl StoreError {
    /// The database is out of reach (down, restarting, unreachable), not refusing what
    /// was asked: the caller says "unavailable", and the same request succeeds later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            #[cfg(feature = "postgres")]
            StoreError::Pool(_) => true,
            #[cfg(feature = "postgres")]
            StoreError::Postgres(e) => e.is_closed() || e.code().is_none_or(postgres::unavailable_state),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            }
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

// The backends' migrations go by the same numbers.
#[cfg(feature = "postgres")]
const _: () = assert!(sqlite::MIGRATIONS.len() == postgres::MIGRATIONS.len());

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

impl InviteState {
    fn of(expires_at: i64, max_uses: Option<i64>, uses: i64, now: UnixMillis) -> Self {
        if expires_at <= now as i64 {
            InviteState::Expired
        } else if max_uses.is_some_and(|max| uses >= max) {
            InviteState::UsedUp
        } else {
            InviteState::Good
        }
    }
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

/// The store's contract, kept by every backend. Calls are independent: each is one
/// statement or one transaction, and concurrent calls (from this server or, on a
/// shared database, from others) cannot see one another half done.
pub trait Storage: Send + Sync {
    /// The server's own setting `key`.
    fn setting(&self, key: &str) -> impl Future<Output = StoreResult<Option<String>>> + Send;

    /// Sets `key` unless it is set already; returns the value that holds (its own
    /// or the one set before, perhaps by another server sharing the database).
    fn init_setting(&self, key: &str, value: &str) -> impl Future<Output = StoreResult<String>> + Send;

    /// Inserts a new room; `false` when the id is taken.
    fn insert_room(&self, room: Room) -> impl Future<Output = StoreResult<bool>> + Send;

    fn room(&self, id: &RoomId) -> impl Future<Output = StoreResult<Option<Room>>> + Send;

    /// A page of rooms in `sort` order, and how many there are in all. Rooms created
    /// in the same millisecond keep the order they were created in; names sort by
    /// their bytes, whatever the database's locale.
    fn list_rooms(
        &self,
        skip: u32,
        limit: u32,
        sort: RoomSort,
    ) -> impl Future<Output = StoreResult<(Vec<Room>, u64)>> + Send;

    /// Replaces a room's fields if its stored version is still `expected_version`
    /// (or unconditionally when it is `None`). Returns the stored room after the call
    /// and whether the update happened; `None` when there is no such room.
    fn update_room(
        &self,
        room: Room,
        expected_version: Option<u64>,
    ) -> impl Future<Output = StoreResult<Option<(Room, bool)>>> + Send;

    /// Deletes a room with its invites and refresh tokens (remembered as spent, so that
    /// their holders learn why); `false` if there was none.
    fn delete_room(&self, id: &RoomId) -> impl Future<Output = StoreResult<bool>> + Send;

    /// `identity` was kicked from `room` at `at` (seconds since the epoch): its join
    /// tokens issued up to then stop working there, and every refresh token of it for
    /// the room is taken out of use. Returns how many refresh tokens were revoked.
    fn record_kick(
        &self,
        room: &RoomId,
        identity: &Identity,
        at: u64,
    ) -> impl Future<Output = StoreResult<usize>> + Send;

    /// When `identity` was last kicked from `room` (seconds since the epoch), if ever.
    fn kicked_at(&self, room: &RoomId, identity: &Identity) -> impl Future<Output = StoreResult<Option<u64>>> + Send;

    fn insert_invite(
        &self,
        hash: String,
        room: RoomId,
        expires_at: UnixMillis,
        max_uses: Option<u32>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The room of the invite with this hash, if it is still good at `now` (without
    /// using it).
    fn invite_room(&self, hash: String, now: UnixMillis) -> impl Future<Output = StoreResult<Option<RoomId>>> + Send;

    /// The room of the invite with this hash and whether it can still be used at `now`
    /// (without using it); `None` for an invite this server does not know.
    fn invite_state(
        &self,
        hash: String,
        now: UnixMillis,
    ) -> impl Future<Output = StoreResult<Option<(RoomId, InviteState)>>> + Send;

    /// Counts one use of the invite with this hash, if it is still good at `now`.
    fn use_invite(&self, hash: String, now: UnixMillis) -> impl Future<Output = StoreResult<InviteUse>> + Send;

    fn insert_refresh(
        &self,
        hash: String,
        grant: RefreshGrant,
        expires_at: UnixMillis,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Uses the refresh token with this hash: returns what it stood for if it was still
    /// good at `now`, and marks it spent. Refresh tokens are single-use (the caller
    /// issues a new one); of two concurrent uses exactly one is granted.
    fn take_refresh(&self, hash: String, now: UnixMillis) -> impl Future<Output = StoreResult<RefreshUse>> + Send;

    /// Drops expired refresh tokens, and invites a week after they expired.
    fn purge_expired(&self, now: UnixMillis) -> impl Future<Output = StoreResult<usize>> + Send;
}

/// The server's store: the backend `--db` names.
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    #[cfg(feature = "postgres")]
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens the database `db` names and brings its schema up to date: a
    /// `postgres://` (or `postgresql://`) URL, a SQLite file, or `:memory:`.
    pub async fn open(db: &str) -> StoreResult<Self> {
        if is_postgres_url(db) {
            #[cfg(feature = "postgres")]
            return Ok(Store::Postgres(postgres::PgStore::open(db).await?));
            #[cfg(not(feature = "postgres"))]
            return Err(StoreError::Config("this build has no PostgreSQL support (the `postgres` feature)".into()));
        }
        let db = db.to_owned();
        Ok(Store::Sqlite(tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(&db)).await??))
    }
}

/// Whether `db` names a PostgreSQL database (rather than a SQLite file).
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// `db` as it may be shown (logs, the banner, errors): a PostgreSQL URL's password is
/// replaced with `***`.
pub fn display_db(db: &str) -> String {
    if !is_postgres_url(db) {
        return db.to_owned();
    }
    let (scheme, rest) = db.split_once("://").unwrap_or(("", db));
    // The user info ends at the last '@' before the host (a password may hold '@').
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
            None => db.to_owned(),
        },
        None => db.to_owned(),
    }
}

/// Runs `$body` with `$b` bound to the store's backend.
macro_rules! dispatch {
    ($self:ident, $b:ident => $body:expr) => {
        match $self {
            Store::Sqlite($b) => $body,
            #[cfg(feature = "postgres")]
            Store::Postgres($b) => $body,
        }
    };
}

impl Storage for Store {
    async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        dispatch!(self, b => b.setting(key).await)
    }

    async fn init_setting(&self, key: &str, value: &str) -> StoreResult<String> {
        dispatch!(self, b => b.init_setting(key, value).await)
    }

    async fn insert_room(&self, room: Room) -> StoreResult<bool> {
        dispatch!(self, b => b.insert_room(room).await)
    }

    async fn room(&self, id: &RoomId) -> StoreResult<Option<Room>> {
        dispatch!(self, b => b.room(id).await)
    }

    async fn list_rooms(&self, skip: u32, limit: u32, sort: RoomSort) -> StoreResult<(Vec<Room>, u64)> {
        dispatch!(self, b => b.list_rooms(skip, limit, sort).await)
    }

    async fn update_room(&self, room: Room, expected_version: Option<u64>) -> StoreResult<Option<(Room, bool)>> {
        dispatch!(self, b => b.update_room(room, expected_version).await)
    }

    async fn delete_room(&self, id: &RoomId) -> StoreResult<bool> {
        dispatch!(self, b => b.delete_room(id).await)
    }

    async fn record_kick(&self, room: &RoomId, identity: &Identity, at: u64) -> StoreResult<usize> {
        dispatch!(self, b => b.record_kick(room, identity, at).await)
    }

    async fn kicked_at(&self, room: &RoomId, identity: &Identity) -> StoreResult<Option<u64>> {
        dispatch!(self, b => b.kicked_at(room, identity).await)
    }

    async fn insert_invite(
        &self,
        hash: String,
        room: RoomId,
        expires_at: UnixMillis,
        max_uses: Option<u32>,
    ) -> StoreResult<()> {
        dispatch!(self, b => b.insert_invite(hash, room, expires_at, max_uses).await)
    }

    async fn invite_room(&self, hash: String, now: UnixMillis) -> StoreResult<Option<RoomId>> {
        dispatch!(self, b => b.invite_room(hash, now).await)
    }

    async fn invite_state(&self, hash: String, now: UnixMillis) -> StoreResult<Option<(RoomId, InviteState)>> {
        dispatch!(self, b => b.invite_state(hash, now).await)
    }

    async fn use_invite(&self, hash: String, now: UnixMillis) -> StoreResult<InviteUse> {
        dispatch!(self, b => b.use_invite(hash, now).await)
    }

    async fn insert_refresh(&self, hash: String, grant: RefreshGrant, expires_at: UnixMillis) -> StoreResult<()> {
        dispatch!(self, b => b.insert_refresh(hash, grant, expires_at).await)
    }

    async fn take_refresh(&self, hash: String, now: UnixMillis) -> StoreResult<RefreshUse> {
        dispatch!(self, b => b.take_refresh(hash, now).await)
    }

    async fn purge_expired(&self, now: UnixMillis) -> StoreResult<usize> {
        dispatch!(self, b => b.purge_expired(now).await)
    }
}

/// A room's JSON columns as text, as both backends store them (text, not JSONB: the
/// bytes round-trip exactly).
struct RoomColumns {
    members: String,
    managers: String,
    policy: String,
}

impl RoomColumns {
    fn of(room: &Room) -> StoreResult<Self> {
        Ok(Self {
            members: serde_json::to_string(&room.members)?,
            managers: serde_json::to_string(&room.managers)?,
            policy: serde_json::to_string(&room.policy)?,
        })
    }
}

/// A room row as a backend hands it over, before the JSON columns are decoded.
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
    fn decode(self) -> StoreResult<Room> {
        Ok(Room {
            id: RoomId(self.id),
            name: self.name,
            members: serde_json::from_str(&self.members)?,
            managers: serde_json::from_str(&self.managers)?,
            public_meta: confer_proto::Bytes(self.public_meta),
            private_meta: confer_proto::Bytes(self.private_meta),
            policy: serde_json::from_str(&self.policy)?,
            version: self.version as u64,
            created_at: self.created_at as u64,
            updated_at: self.updated_at as u64,
        })
    }
}

/// The columns of a room, in [`RawRoom`]'s order.
const ROOM_COLUMNS: &str =
    "id, name, members, managers, public_meta, private_meta, policy, version, created_at, updated_at";
