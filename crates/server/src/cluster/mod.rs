//! Cluster state in Redis (`--redis redis://...`): which nodes exist, how loaded they
//! are, whether they are draining, and which node holds each room's live session.
//!
//! Two hashes. `confer:nodes` maps a node id to its [`NodeState`] as JSON, rewritten by
//! the node's heartbeat twice a second; `confer:room_node` maps a room id to the node
//! holding its session. Liveness is the heartbeat's time in the value, set from Redis's
//! own clock (`TIME`) so that the nodes' clocks do not matter: a node not heard from
//! for [`NODE_LIVE_MS`] is dead to placement, and one silent for [`NODE_FORGET_MS`] is
//! removed by the next heartbeat of another. (Redis 7.0, Debian's, has no expiry of
//! single hash fields.)
//!
//! Placement and release are Lua scripts, so that two nodes starting the same room at
//! once agree on one holder, and a node that lost a room cannot clear its new holder.
//!
//! A client may reach any node. Signaling for a room held elsewhere is relayed to the
//! holder ([`relay`]); a room API call about a live session is forwarded to it
//! ([`forward`]). Why, and the rest of the design: `docs/architecture.md`.

pub mod forward;
pub mod relay;
pub mod route;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confer_proto::RoomId;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// A node not heard from for this long is dead to placement (four heartbeats): what
/// a lost node's meetings wait before they can start again elsewhere.
pub const NODE_LIVE_MS: u64 = 2_000;
/// A node silent for this long is removed from the registry.
pub const NODE_FORGET_MS: u64 = 30_000;
/// How often a node says it is alive, with its load.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// How long a room placed here may go without a session before its placement is given
/// back (the join that asked for it failed, or its client went away): longer than a
/// join may take.
const PLACEMENT_UNUSED: Duration = Duration::from_secs(15);
/// How many heartbeats between updates of the other nodes' addresses.
const PEERS_EVERY: u32 = 20;
/// How long reading the other nodes and resolving their addresses may take (less than
/// the time between refreshes, so that refreshes never pile up).
const PEERS_LOOKUP: Duration = Duration::from_secs(5);
/// Marks a request or a signaling connection that one node passes to another, with the
/// passing node's id. A node serves such a request itself and never passes it on, so
/// that two nodes disagreeing for a moment cannot bounce it between them.
pub const RELAYED_BY: &str = "x-confer-relayed-by";

const NODES: &str = "confer:nodes";
const ROOM_NODE: &str = "confer:room_node";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("a node's state in redis is not readable: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("no live node takes new sessions")]
    NoNode,
}

/// What a node tells the others about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    pub id: String,
    /// Where the other nodes reach its HTTP and signaling.
    pub url: String,
    pub participants: u32,
    pub tracks: u32,
    /// Load average over the last minute per core (0 = idle, 1 = every core busy).
    pub cpu: f32,
    /// Takes no new sessions.
    pub draining: bool,
    /// When Redis last heard from it (Unix ms, Redis's clock); set by the heartbeat.
    #[serde(default)]
    pub updated_at: u64,
}

impl NodeState {
    /// This node as it is now: `census` for its load, the machine's CPU.
    fn now(id: &str, url: &str, census: &crate::hub::Census, draining: bool) -> Self {
        Self {
            id: id.to_owned(),
            url: url.to_owned(),
            participants: census.participants as u32,
            tracks: census.tracks as u32,
            cpu: cpu_load(),
            draining,
            updated_at: 0,
        }
    }
}

/// Where a room's session is, or is to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// This node holds it (or is to start it).
    Here,
    /// Another live node does: its id and URL.
    There { node: String, url: String },
}

/// One node's handle on the cluster state.
#[derive(Clone)]
pub struct Registry {
    redis: ConnectionManager,
    me: String,
    /// Rooms placed here, and when: a placement whose session never started is given
    /// back by the heartbeat.
    placed: Arc<Mutex<HashMap<RoomId, Instant>>>,
    /// Takes no new sessions (said in every heartbeat).
    draining: Arc<AtomicBool>,
    /// Wakes the heartbeat early, to say something new at once.
    wake: Arc<tokio::sync::Notify>,
}

impl Registry {
    /// Connects to Redis at `url` as node `me`. Commands fail after a bounded wait
    /// while Redis is out of reach; the connection comes back by itself.
    pub async fn connect(url: &str, me: &str) -> Result<Self, ClusterError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let redis = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            redis,
            me: me.to_owned(),
            placed: Default::default(),
            draining: Default::default(),
            wake: Default::default(),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.me
    }

    /// From now on placement passes this node over (said at once, by an early
    /// heartbeat).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Says this node is alive, with its load; forgets nodes long silent.
    pub async fn heartbeat(&self, state: &NodeState) -> Result<(), ClusterError> {
        static SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(HEARTBEAT_LUA));
        let json = serde_json::to_string(state)?;
        let () =
            SCRIPT.key(NODES).arg(&self.me).arg(json).arg(NODE_FORGET_MS).invoke_async(&mut self.redis.clone()).await?;
        Ok(())
    }

    /// Leaves the cluster (a clean stop): no longer a candidate for anything.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        let _: i64 = redis::cmd("HDEL").arg(NODES).arg(&self.me).query_async(&mut self.redis.clone()).await?;
        Ok(())
    }

    /// The nodes Redis knows, live or not.
    pub async fn nodes(&self) -> Result<Vec<NodeState>, ClusterError> {
        let all: Vec<(String, String)> = redis::cmd("HGETALL").arg(NODES).query_async(&mut self.redis.clone()).await?;
        Ok(all.into_iter().map(|(_, v)| serde_json::from_str(&v)).collect::<Result<_, _>>()?)
    }

    /// Where `room`'s session is: the live node that holds it, or else the live,
    /// non-draining node with the fewest participants (then tracks, then CPU), which
    /// from now on holds it.
    pub async fn place(&self, room: &RoomId) -> Result<Placement, ClusterError> {
        static SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(PLACE_LUA));
        match self.room_script(&SCRIPT, room).await? {
            None => Err(ClusterError::NoNode),
            Some((node, _)) if node == self.me => {
                self.placed.lock().unwrap_or_else(|p| p.into_inner()).entry(room.clone()).or_insert_with(Instant::now);
                Ok(Placement::Here)
            }
            Some((node, url)) => Ok(Placement::There { node, url }),
        }
    }

    /// Where `room`'s session is, if a live node holds it; places nothing.
    pub async fn holder(&self, room: &RoomId) -> Result<Option<Placement>, ClusterError> {
        static SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(HOLDER_LUA));
        let held = self.room_script(&SCRIPT, room).await?;
        Ok(held.map(|(node, url)| if node == self.me { Placement::Here } else { Placement::There { node, url } }))
    }

    /// Runs a script that finds `room`'s node: `{node id, node url}` or nil.
    async fn room_script(&self, script: &Script, room: &RoomId) -> Result<Option<(String, String)>, ClusterError> {
        let found = script
            .key(NODES)
            .key(ROOM_NODE)
            .arg(&room.0)
            .arg(NODE_LIVE_MS)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(found)
    }

    /// The other nodes heard from lately.
    pub async fn peers(&self) -> Result<Vec<NodeState>, ClusterError> {
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut self.redis.clone()).await?;
        let now = secs * 1000 + micros / 1000;
        let nodes = self.nodes().await?;
        Ok(nodes.into_iter().filter(|n| n.id != self.me && now.saturating_sub(n.updated_at) < NODE_LIVE_MS).collect())
    }

    /// Rooms placed here more than [`PLACEMENT_UNUSED`] ago that have no session in
    /// `live`; they are forgotten here (the caller releases them). Rooms in `live` are
    /// no longer watched: the heartbeat releases them when their session ends.
    fn unused_placements(&self, live: &HashSet<RoomId>) -> Vec<RoomId> {
        let mut placed = self.placed.lock().unwrap_or_else(|p| p.into_inner());
        placed.retain(|room, _| !live.contains(room));
        let unused: Vec<RoomId> =
            placed.iter().filter(|(_, at)| at.elapsed() > PLACEMENT_UNUSED).map(|(room, _)| room.clone()).collect();
        for room in &unused {
            placed.remove(room);
        }
        unused
    }

    /// `room`'s session on this node ended: its entry goes, unless another node holds
    /// the room by now. Returns whether the entry was this node's.
    pub async fn release(&self, room: &RoomId) -> Result<bool, ClusterError> {
        static SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(RELEASE_LUA));
        let n: i64 = SCRIPT.key(ROOM_NODE).arg(&room.0).arg(&self.me).invoke_async(&mut self.redis.clone()).await?;
        Ok(n == 1)
    }
}

/// KEYS[1] nodes; ARGV: node id, its state as JSON, forget after (ms).
const HEARTBEAT_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = cjson.decode(ARGV[2])
state.updated_at = now
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(state))
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, other = pcall(cjson.decode, all[i + 1])
  if not ok or now - (tonumber(other.updated_at) or 0) > tonumber(ARGV[3]) then
    redis.call('HDEL', KEYS[1], all[i])
  end
end
"#;

/// The start of the scripts about a room's node (KEYS[1] nodes, KEYS[2] room -> node;
/// ARGV: room id, live within (ms)): `node(id)`, the node's state if it is live.
macro_rules! live_node_lua {
    () => {
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live_ms = tonumber(ARGV[2])
local function node(id)
  local v = redis.call('HGET', KEYS[1], id)
  if not v then return nil end
  local ok, n = pcall(cjson.decode, v)
  if ok and now - (tonumber(n.updated_at) or 0) < live_ms then return n end
  return nil
end
local holder = redis.call('HGET', KEYS[2], ARGV[1])
local held = holder and node(holder)
"#
    };
}

/// Returns {node id, node url} of the room's holder if it is live, else of the live
/// node that takes sessions with the least load (which then holds it), or nil.
const PLACE_LUA: &str = concat!(
    live_node_lua!(),
    r#"
if held then return {holder, held.url} end
local best, best_n = nil, nil
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local n = node(all[i])
  if n and not n.draining then
    local better = best == nil
      or n.participants < best_n.participants
      or (n.participants == best_n.participants and (n.tracks < best_n.tracks
        or (n.tracks == best_n.tracks and (n.cpu < best_n.cpu
          or (n.cpu == best_n.cpu and all[i] < best)))))
    if better then best, best_n = all[i], n end
  end
end
if not best then return nil end
redis.call('HSET', KEYS[2], ARGV[1], best)
return {best, best_n.url}
"#
);

/// Returns {node id, node url} of the room's holder if it is live, or nil.
const HOLDER_LUA: &str = concat!(
    live_node_lua!(),
    r#"
if held then return {holder, held.url} end
return nil
"#
);

/// KEYS[1] room -> node; ARGV: room id, node id. Deletes the entry if it is the node's.
const RELEASE_LUA: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"#;

/// The IP addresses the hosts of `nodes`' URLs resolve to.
async fn addresses(nodes: &[NodeState]) -> HashSet<std::net::IpAddr> {
    let mut ips = HashSet::new();
    for node in nodes {
        let Ok(url) = url::Url::parse(&node.url) else { continue };
        let port = url.port_or_known_default().unwrap_or(80);
        match url.host() {
            Some(url::Host::Ipv4(ip)) => drop(ips.insert(ip.into())),
            Some(url::Host::Ipv6(ip)) => drop(ips.insert(ip.into())),
            Some(url::Host::Domain(name)) => match tokio::net::lookup_host((name, port)).await {
                Ok(found) => ips.extend(found.map(|a| a.ip())),
                Err(e) => {
                    tracing::debug!(node = %node.id, url = %node.url, error = %e, "cannot resolve a node's address")
                }
            },
            None => {}
        }
    }
    ips
}

/// This machine's load average over the last minute per core (Linux; 0 elsewhere).
pub fn cpu_load() -> f32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f32;
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f32>().ok())
        .map_or(0.0, |l| l / cores)
}

/// Joins the cluster that `config` names: connects to Redis and says this node is
/// alive. The store must be shared too, so `db` must be PostgreSQL.
pub async fn join(config: &crate::config::ClusterConfig, url: &str, db: &str) -> anyhow::Result<Registry> {
    if !crate::store::is_postgres_url(db) {
        anyhow::bail!("--redis needs a --db shared by every node: a postgres:// URL, not {db}");
    }
    let registry = Registry::connect(&config.redis, &config.node_id)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the cluster's redis: {e}"))?;
    let state = NodeState::now(&config.node_id, url, &Default::default(), false);
    registry.heartbeat(&state).await.map_err(|e| anyhow::anyhow!("cannot register with the cluster: {e}"))?;
    tracing::info!(node = %config.node_id, %url, "joined the cluster");
    Ok(registry)
}

/// Every [`HEARTBEAT`]: tells the cluster this node's load, and releases the rooms
/// whose sessions ended here; every [`PEERS_EVERY`] heartbeats, updates `trusted`
/// with the other nodes' addresses. Redis out of reach is logged once, and once when
/// it is back; running sessions do not notice. On stop, the node leaves the cluster.
pub async fn heartbeat(
    registry: Registry,
    url: String,
    hub: std::sync::Arc<crate::hub::Hub>,
    trusted: crate::http::listener::Trusted,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    let mut beats = 0u32;
    let mut held: HashSet<RoomId> = Default::default();
    let mut reachable = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = registry.wake.notified() => {}
            _ = stopped.wait_for(|s| *s) => break,
        }
        let draining = registry.draining.load(Ordering::Relaxed);
        let state = NodeState::now(registry.node_id(), &url, &hub.census(), draining);
        let now = hub.rooms();
        let mut result = registry.heartbeat(&state).await;
        let mut ended: Vec<RoomId> = held.difference(&now).cloned().collect();
        ended.extend(registry.unused_placements(&now));
        let mut unreleased = vec![];
        for room in ended {
            if let Err(e) = registry.release(&room).await {
                result = Err(e);
                unreleased.push(room);
            }
        }
        match result {
            Ok(()) if !reachable => {
                reachable = true;
                tracing::info!("the cluster's redis is reachable again");
            }
            Err(e) if reachable => {
                reachable = false;
                tracing::warn!(error = %e, "the cluster's redis is out of reach: running calls go on, new ones cannot start");
            }
            _ => {}
        }
        // A room not released (Redis away) is tried again next time.
        held = now;
        held.extend(unreleased);
        if beats.is_multiple_of(PEERS_EVERY) {
            // Off the heartbeat's path: a slow resolver must not make this node look dead.
            let (registry, trusted) = (registry.clone(), trusted.clone());
            tokio::spawn(async move {
                if let Ok(Ok(peers)) = tokio::time::timeout(PEERS_LOOKUP, registry.peers()).await {
                    if let Ok(ips) = tokio::time::timeout(PEERS_LOOKUP, addresses(&peers)).await {
                        trusted.set(ips);
                    }
                }
            });
        }
        beats = beats.wrapping_add(1);
    }
    if let Err(e) = registry.leave().await {
        tracing::warn!(error = %e, "could not leave the cluster cleanly");
    }
}
