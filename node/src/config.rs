//! Broker configuration: defaults that need no file, overridden by a TOML
//! file (`--config weir.toml`), then `WEIR_*` environment variables, then
//! command-line flags. Every limit has a unit in its name.

use clap::Parser;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use weir_core::log::LogConfig;

/// The resolved configuration of one broker.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub node_id: u64,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub connections_max: usize,
    /// Connections one client address may hold, so one client cannot
    /// take every slot.
    pub connections_per_ip_max: usize,
    pub frame_bytes_max: usize,
    pub in_flight_per_connection_max: usize,
    /// Bytes of partly received request frames the broker holds across all
    /// connections (Kafka's `queued.max.request.bytes`): a client that
    /// announces a large frame waits for this budget before more of it is read.
    pub request_bytes_queued_max: usize,
    /// Bytes of responses one connection may have in preparation or queued
    /// (fetches count their `max_bytes`): a client that does not read its
    /// responses stops being read from.
    pub response_bytes_queued_per_connection_max: usize,
    /// A connection must complete each frame it starts (and its first one)
    /// within this long.
    pub frame_timeout: Duration,
    pub idle_timeout: Duration,
    pub retention_check_interval: Duration,
    /// Longest a produce may ask to wait for durability.
    pub produce_timeout_max: Duration,
    /// Longest a fetch may long-poll.
    pub fetch_wait_max: Duration,
    pub partitions_max: u32,
    /// Committed offsets of a group empty this long are deleted; `None`
    /// (the default) keeps them forever.
    pub offsets_retention_ms: Option<i64>,
    /// Compact the internal offsets log when it holds this many bytes.
    pub offsets_compact_bytes: u64,
    /// Allowed range of consumer group session timeouts.
    pub group_session_timeout_min_ms: u32,
    pub group_session_timeout_max_ms: u32,
    /// Files the process may hold open (the soft `RLIMIT_NOFILE`, set by
    /// the binary at start); topic creation is refused beyond it. `None`:
    /// not checked.
    pub file_descriptors_max: Option<u64>,
    /// Defaults for topics that do not set their own.
    pub log: LogConfig,
    /// Where peers reach this node's Raft traffic. `None` without
    /// `initial_members` (a single broker); otherwise this node's address in
    /// `initial_members` unless set.
    pub raft_listen: Option<SocketAddr>,
    /// The cluster's first voters, node id → Raft address (`ID@HOST:PORT,...`).
    /// Empty: a single broker, every group's only voter this node.
    pub initial_members: BTreeMap<u64, String>,
    /// Raft heartbeat and election timing.
    pub raft_heartbeat_ms: u64,
    pub raft_election_min_ms: u64,
    pub raft_election_max_ms: u64,
    /// How often a cluster node hands partitions it leads back to their
    /// preferred (first) replica once that one is caught up; `None`: never
    /// on its own (`weirctl cluster balance-leaders` still does).
    pub leader_balance_interval: Option<Duration>,
    /// Client addresses of running members to join through (`--join`): a
    /// new node with an empty data directory (see `join.rs`).
    pub join: Vec<String>,
    /// This node joined a running cluster (it is not one of
    /// `initial_members`, which then hold the cluster's first voters).
    pub joined: bool,
    /// `node_id` was set (flag, variable or file), not the default.
    pub node_id_explicit: bool,
    /// The rack (zone, failure domain) this node is in: placement spreads
    /// each partition's replicas over racks. `None`: a rack of its own.
    pub rack: Option<String>,
    /// Whether the client port answers Kafka clients too (told apart by a
    /// connection's first bytes).
    pub kafka_enabled: bool,
    /// Whether a Kafka Metadata request that allows it creates the unknown
    /// topics it names (with `default_partitions`).
    pub auto_create_topics: bool,
    pub default_partitions: u32,
}

/// `leader_balance_interval_ms`: 0 turns automatic balancing off.
fn balance_interval(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Most nodes `initial_members` may list.
pub const MEMBERS_MAX: usize = 64;

/// Whether `addr` is `HOST:PORT`: a host of 1–253 characters without
/// whitespace, and a port 1–65535. One rule for every address a node is
/// given or registers.
pub fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && host.len() <= 253 && !host.contains(char::is_whitespace) && port.parse::<u16>().is_ok_and(|p| p > 0)
    })
}

/// Parses `ID@HOST:PORT,...` (the cluster's first voters and their Raft
/// addresses): ids 1..=2^32-1, each once, at most [`MEMBERS_MAX`].
pub fn parse_members(list: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut members = BTreeMap::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || format!("initial_members entry {item:?} is not ID@HOST:PORT (for example 1@127.0.0.1:9192)");
        let (id, addr) = item.split_once('@').ok_or_else(bad)?;
        let id: u64 = id.parse().map_err(|_| bad())?;
        if id == 0 || id > u64::from(u32::MAX) {
            return Err(format!("initial_members: node id {id} is not between 1 and {}", u32::MAX));
        }
        if !is_host_port(addr) {
            return Err(bad());
        }
        if members.insert(id, addr.to_owned()).is_some() {
            return Err(format!("initial_members lists node {id} twice"));
        }
        if members.len() > MEMBERS_MAX {
            return Err(format!("initial_members lists more than {MEMBERS_MAX} nodes"));
        }
    }
    Ok(members)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 1,
            listen: "127.0.0.1:9092".parse().expect("valid default address"),
            data_dir: PathBuf::from("weir-data"),
            connections_max: 1024,
            connections_per_ip_max: 256,
            frame_bytes_max: weir_net::frame::FRAME_BYTES_MAX_DEFAULT,
            in_flight_per_connection_max: 64,
            request_bytes_queued_max: 256 << 20,
            response_bytes_queued_per_connection_max: 64 << 20,
            frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            retention_check_interval: Duration::from_secs(60),
            produce_timeout_max: Duration::from_secs(60),
            fetch_wait_max: Duration::from_secs(30),
            partitions_max: 10_000,
            offsets_retention_ms: None,
            offsets_compact_bytes: 64 << 20,
            group_session_timeout_min_ms: 1_000,
            group_session_timeout_max_ms: 300_000,
            file_descriptors_max: None,
            log: LogConfig::default(),
            raft_listen: None,
            initial_members: BTreeMap::new(),
            raft_heartbeat_ms: 100,
            raft_election_min_ms: 1000,
            raft_election_max_ms: 2000,
            leader_balance_interval: Some(Duration::from_secs(30)),
            join: Vec::new(),
            joined: false,
            node_id_explicit: false,
            rack: None,
            kafka_enabled: true,
            auto_create_topics: true,
            default_partitions: 1,
        }
    }
}

/// Command-line flags; each can also come from a `WEIR_*` variable.
#[derive(Debug, Parser, Default)]
#[command(name = "weir", version, about = "Weir message broker: with no arguments serves 127.0.0.1:9092 with data in ./weir-data")]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// This node's id in a cluster (1 to 4294967295; default 1). A data
    /// directory remembers the id it was created with.
    #[arg(long, env = "WEIR_NODE_ID")]
    pub node_id: Option<u64>,
    /// Address to listen on.
    #[arg(long, env = "WEIR_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory holding topics and logs.
    #[arg(long, env = "WEIR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML file with any of the settings below (flags and variables win).
    #[arg(long, env = "WEIR_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "WEIR_CONNECTIONS_MAX", alias = "max-connections")]
    pub connections_max: Option<usize>,
    #[arg(long, env = "WEIR_FRAME_BYTES_MAX", alias = "max-frame-bytes")]
    pub frame_bytes_max: Option<usize>,
    #[arg(long, env = "WEIR_CONNECTIONS_PER_IP_MAX")]
    pub connections_per_ip_max: Option<usize>,
    #[arg(long, env = "WEIR_FRAME_TIMEOUT_MS")]
    pub frame_timeout_ms: Option<u64>,
    #[arg(long, env = "WEIR_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    #[arg(long, env = "WEIR_RETENTION_MS")]
    pub retention_ms: Option<i64>,
    #[arg(long, env = "WEIR_RETENTION_BYTES")]
    pub retention_bytes: Option<u64>,
    #[arg(long, env = "WEIR_RETENTION_CHECK_INTERVAL_MS")]
    pub retention_check_interval_ms: Option<u64>,
    #[arg(long, env = "WEIR_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Address for Raft traffic from peers (default: this node's address
    /// in --initial-members).
    #[arg(long, env = "WEIR_RAFT_LISTEN")]
    pub raft_listen: Option<SocketAddr>,
    /// The cluster's first voters with their Raft addresses,
    /// `ID@HOST:PORT,...` (the same on every node). Omit for a single broker.
    #[arg(long, env = "WEIR_INITIAL_MEMBERS")]
    pub initial_members: Option<String>,
    #[arg(long, env = "WEIR_RAFT_HEARTBEAT_MS")]
    pub raft_heartbeat_ms: Option<u64>,
    #[arg(long, env = "WEIR_RAFT_ELECTION_MIN_MS")]
    pub raft_election_min_ms: Option<u64>,
    #[arg(long, env = "WEIR_RAFT_ELECTION_MAX_MS")]
    pub raft_election_max_ms: Option<u64>,
    /// How often leaderships return to their preferred replicas (0: only
    /// when asked, `weirctl cluster balance-leaders`).
    #[arg(long, env = "WEIR_LEADER_BALANCE_INTERVAL_MS")]
    pub leader_balance_interval_ms: Option<u64>,
    /// Join a running cluster through a member's client address (repeat,
    /// or `A,B`): for a new node with an empty data directory. Ignored once
    /// the node is a member.
    #[arg(long, env = "WEIR_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,
    /// The rack (zone, failure domain) of this node: each partition's
    /// replicas are spread over racks where the nodes allow it.
    #[arg(long, env = "WEIR_RACK")]
    pub rack: Option<String>,
    /// Answer Kafka clients on the client port too (default true).
    #[arg(long, env = "WEIR_KAFKA_ENABLED")]
    pub kafka_enabled: Option<bool>,
    /// Create the unknown topics a Kafka Metadata request names, when it
    /// allows it (default true).
    #[arg(long, env = "WEIR_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of a topic created by a Kafka client without a count
    /// (auto-create, or -1 in CreateTopics).
    #[arg(long, env = "WEIR_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<u32>,
}

/// Operator commands run instead of serving (with the broker stopped).
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Accept the loss of acknowledged data that recovery reported for one
    /// partition (it is offline until then): the damaged bytes are copied
    /// aside as lost-<from>-<to>.bin in the partition's directory, the
    /// damaged tail is cut, and the partition continues after the lost
    /// offsets, never reusing one.
    AcceptLoss {
        /// The topic (omit with --offsets-log).
        #[arg(required_unless_present = "offsets_log")]
        topic: Option<String>,
        /// The partition.
        #[arg(required_unless_present = "offsets_log")]
        partition: Option<u32>,
        /// Act on the internal log of committed group offsets instead.
        #[arg(long, conflicts_with_all = ["topic", "partition"])]
        offsets_log: bool,
    },
}

/// The TOML file's shape: every key optional, unknown keys refused.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub node_id: Option<u64>,
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    #[serde(alias = "max_connections")]
    pub connections_max: Option<usize>,
    pub connections_per_ip_max: Option<usize>,
    #[serde(alias = "max_frame_bytes")]
    pub frame_bytes_max: Option<usize>,
    #[serde(alias = "max_in_flight_per_connection")]
    pub in_flight_per_connection_max: Option<usize>,
    pub request_bytes_queued_max: Option<usize>,
    pub response_bytes_queued_per_connection_max: Option<usize>,
    pub frame_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub retention_check_interval_ms: Option<u64>,
    pub segment_bytes: Option<u64>,
    pub segment_age_ms: Option<i64>,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<u64>,
    pub index_interval_bytes: Option<u64>,
    pub preallocate_bytes: Option<u64>,
    pub offsets_retention_ms: Option<i64>,
    pub offsets_compact_bytes: Option<u64>,
    pub group_session_timeout_min_ms: Option<u32>,
    pub group_session_timeout_max_ms: Option<u32>,
    pub timestamp_after_max_ms: Option<i64>,
    pub raft_listen: Option<SocketAddr>,
    /// `ID@HOST:PORT,...`, as the flag takes it.
    pub initial_members: Option<String>,
    pub raft_heartbeat_ms: Option<u64>,
    pub raft_election_min_ms: Option<u64>,
    pub raft_election_max_ms: Option<u64>,
    pub leader_balance_interval_ms: Option<u64>,
    /// Client addresses of members to join through.
    pub join: Option<Vec<String>>,
    pub rack: Option<String>,
    pub kafka_enabled: Option<bool>,
    pub auto_create_topics: Option<bool>,
    pub default_partitions: Option<u32>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The underlying errors are part of the message, not a `source`: a
    // printer of the cause chain would show them twice.
    #[error("cannot read config file {path:?}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("config file {path:?} is invalid: {error}")]
    Parse { path: PathBuf, error: Box<toml::de::Error> },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Config {
    /// Applies the file (if any), then the flags/variables, to the defaults.
    pub fn resolve(args: &Args) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        if let Some(path) = &args.config {
            let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.clone(), error })?;
            let file: FileConfig =
                toml::from_str(&text).map_err(|error| ConfigError::Parse { path: path.clone(), error: Box::new(error) })?;
            c.apply_file(file).map_err(ConfigError::Invalid)?;
        }
        macro_rules! set {
            ($($field:ident => $target:expr),*) => { $(if let Some(v) = args.$field.clone() { $target = v; })* };
        }
        c.node_id_explicit |= args.node_id.is_some();
        if !args.join.is_empty() {
            c.join = args.join.clone();
        }
        if let Some(r) = &args.rack {
            c.rack = Some(r.clone());
        }
        if let Some(k) = args.kafka_enabled {
            c.kafka_enabled = k;
        }
        if let Some(a) = args.auto_create_topics {
            c.auto_create_topics = a;
        }
        if let Some(n) = args.default_partitions {
            c.default_partitions = n;
        }
        set!(node_id => c.node_id, listen => c.listen, data_dir => c.data_dir, connections_max => c.connections_max, frame_bytes_max => c.frame_bytes_max,
             segment_bytes => c.log.segment_bytes_max, connections_per_ip_max => c.connections_per_ip_max);
        if let Some(ms) = args.frame_timeout_ms {
            c.frame_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = args.retention_ms {
            c.log.retention_ms = ms_or_unbounded("retention_ms", ms).map_err(ConfigError::Invalid)?;
        }
        if let Some(b) = args.retention_bytes {
            c.log.retention_bytes = Some(b);
        }
        if let Some(ms) = args.retention_check_interval_ms {
            c.retention_check_interval = Duration::from_millis(ms);
        }
        if let Some(ms) = args.idle_timeout_ms {
            c.idle_timeout = Duration::from_millis(ms);
        }
        set!(raft_heartbeat_ms => c.raft_heartbeat_ms, raft_election_min_ms => c.raft_election_min_ms, raft_election_max_ms => c.raft_election_max_ms);
        if let Some(a) = args.raft_listen {
            c.raft_listen = Some(a);
        }
        if let Some(ms) = args.leader_balance_interval_ms {
            c.leader_balance_interval = balance_interval(ms);
        }
        if let Some(m) = &args.initial_members {
            c.initial_members = parse_members(m).map_err(ConfigError::Invalid)?;
        }
        if c.raft_listen.is_none()
            && let Some(own) = c.initial_members.get(&c.node_id)
        {
            c.raft_listen = Some(own.parse().map_err(|_| {
                ConfigError::Invalid(format!(
                    "node {}'s address in initial_members, {own:?}, is not an IP:PORT this node can listen on: set raft_listen",
                    c.node_id
                ))
            })?);
        }
        // Resolve a relative data directory once, against the directory the
        // broker was started in, so every path the broker logs is absolute.
        c.data_dir = std::path::absolute(&c.data_dir).map_err(|e| ConfigError::Invalid(format!("data_dir {:?}: {e}", c.data_dir)))?;
        c.validate()?;
        Ok(c)
    }

    fn apply_file(&mut self, f: FileConfig) -> Result<(), String> {
        let c = self;
        if let Some(v) = f.node_id {
            c.node_id = v;
            c.node_id_explicit = true;
        }
        if let Some(v) = f.listen {
            c.listen = v
        }
        if let Some(v) = f.data_dir {
            c.data_dir = v
        }
        if let Some(v) = f.connections_max {
            c.connections_max = v
        }
        if let Some(v) = f.connections_per_ip_max {
            c.connections_per_ip_max = v
        }
        if let Some(v) = f.frame_bytes_max {
            c.frame_bytes_max = v
        }
        if let Some(v) = f.in_flight_per_connection_max {
            c.in_flight_per_connection_max = v
        }
        if let Some(v) = f.request_bytes_queued_max {
            c.request_bytes_queued_max = v
        }
        if let Some(v) = f.response_bytes_queued_per_connection_max {
            c.response_bytes_queued_per_connection_max = v
        }
        if let Some(v) = f.frame_timeout_ms {
            c.frame_timeout = Duration::from_millis(v)
        }
        if let Some(v) = f.idle_timeout_ms {
            c.idle_timeout = Duration::from_millis(v)
        }
        if let Some(v) = f.retention_check_interval_ms {
            c.retention_check_interval = Duration::from_millis(v)
        }
        if let Some(v) = f.segment_bytes {
            c.log.segment_bytes_max = v
        }
        if let Some(v) = f.segment_age_ms {
            c.log.segment_age_max_ms = v
        }
        if let Some(v) = f.retention_ms {
            c.log.retention_ms = ms_or_unbounded("retention_ms", v)?
        }
        if let Some(v) = f.retention_bytes {
            c.log.retention_bytes = Some(v)
        }
        if let Some(v) = f.index_interval_bytes {
            c.log.index_interval_bytes = v
        }
        if let Some(v) = f.preallocate_bytes {
            c.log.preallocate_bytes = v
        }
        if let Some(v) = f.offsets_retention_ms {
            c.offsets_retention_ms = ms_or_unbounded("offsets_retention_ms", v)?
        }
        if let Some(v) = f.timestamp_after_max_ms {
            c.log.timestamp_after_max_ms = ms_or_unbounded("timestamp_after_max_ms", v)?
        }
        if let Some(v) = f.offsets_compact_bytes {
            c.offsets_compact_bytes = v
        }
        if let Some(v) = f.group_session_timeout_min_ms {
            c.group_session_timeout_min_ms = v
        }
        if let Some(v) = f.group_session_timeout_max_ms {
            c.group_session_timeout_max_ms = v
        }
        if let Some(v) = f.raft_listen {
            c.raft_listen = Some(v)
        }
        if let Some(v) = &f.initial_members {
            c.initial_members = parse_members(v)?
        }
        if let Some(v) = f.raft_heartbeat_ms {
            c.raft_heartbeat_ms = v
        }
        if let Some(v) = f.raft_election_min_ms {
            c.raft_election_min_ms = v
        }
        if let Some(v) = f.raft_election_max_ms {
            c.raft_election_max_ms = v
        }
        if let Some(v) = f.leader_balance_interval_ms {
            c.leader_balance_interval = balance_interval(v)
        }
        if let Some(v) = f.join {
            c.join = v
        }
        if let Some(v) = f.rack {
            c.rack = Some(v)
        }
        if let Some(v) = f.kafka_enabled {
            c.kafka_enabled = v
        }
        if let Some(v) = f.auto_create_topics {
            c.auto_create_topics = v
        }
        if let Some(v) = f.default_partitions {
            c.default_partitions = v
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.node_id == 0 || self.node_id > u64::from(u32::MAX) {
            return Err(ConfigError::Invalid(format!("node_id must be between 1 and {}, not {}", u32::MAX, self.node_id)));
        }
        if self.default_partitions == 0 || self.default_partitions > self.partitions_max {
            return Err(ConfigError::Invalid(format!(
                "default_partitions must be between 1 and partitions_max ({}), not {}",
                self.partitions_max, self.default_partitions
            )));
        }
        if self.connections_max == 0 {
            return bad("connections_max must be at least 1");
        }
        if self.connections_per_ip_max == 0 {
            return bad("connections_per_ip_max must be at least 1");
        }
        if self.frame_bytes_max < 1024 || self.frame_bytes_max > 1 << 30 {
            return bad("frame_bytes_max must be between 1 KiB and 1 GiB");
        }
        if self.in_flight_per_connection_max == 0 {
            return bad("in_flight_per_connection_max must be at least 1");
        }
        if self.request_bytes_queued_max < self.frame_bytes_max {
            return bad("request_bytes_queued_max must be at least frame_bytes_max (or no large frame could ever be read)");
        }
        if self.response_bytes_queued_per_connection_max < 64 << 10 {
            return bad("response_bytes_queued_per_connection_max must be at least 65536");
        }
        if self.frame_timeout < Duration::from_millis(100) {
            return bad("frame_timeout_ms must be at least 100");
        }
        if self.log.segment_bytes_max < 4096 || self.log.segment_bytes_max > 2 << 30 {
            return bad("segment_bytes must be between 4 KiB and 2 GiB");
        }
        if self.log.index_interval_bytes == 0 {
            return bad("index_interval_bytes must be at least 1");
        }
        if self.retention_check_interval < Duration::from_millis(100) {
            return bad("retention_check_interval_ms must be at least 100 (a smaller interval only burns CPU)");
        }
        if self.idle_timeout < Duration::from_secs(1) {
            return bad("idle_timeout_ms must be at least 1000");
        }
        if self.log.segment_age_max_ms < 0 {
            return bad("segment_age_ms must be 0 (never roll by age) or positive");
        }
        if self.offsets_compact_bytes < 4096 {
            return bad("offsets_compact_bytes must be at least 4096");
        }
        if !self.initial_members.is_empty() && !self.initial_members.contains_key(&self.node_id) {
            return Err(ConfigError::Invalid(format!(
                "node_id {} is not in initial_members ({}): every node of the cluster is listed there, this one too",
                self.node_id,
                self.initial_members.keys().map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
            )));
        }
        if !self.join.is_empty() {
            if !self.initial_members.is_empty() {
                return bad("join and initial_members exclude each other: a joining node learns the members from the cluster");
            }
            if self.join.len() > MEMBERS_MAX {
                return bad("join lists too many addresses");
            }
            for a in &self.join {
                if !is_host_port(a) {
                    return Err(ConfigError::Invalid(format!("join address {a:?} is not HOST:PORT (a member's client address)")));
                }
            }
            if self.raft_listen.is_none_or(|a| a.ip().is_unspecified()) {
                return bad("a joining node needs raft_listen (--raft-listen IP:PORT) with an address its peers can reach");
            }
        }
        if self.raft_heartbeat_ms < 10
            || self.raft_election_min_ms < 3 * self.raft_heartbeat_ms
            || self.raft_election_max_ms <= self.raft_election_min_ms
        {
            return bad(
                "Raft timing needs raft_heartbeat_ms >= 10, raft_election_min_ms >= 3 x raft_heartbeat_ms, and raft_election_max_ms > raft_election_min_ms",
            );
        }
        if self.group_session_timeout_min_ms == 0 || self.group_session_timeout_min_ms > self.group_session_timeout_max_ms {
            return bad("group_session_timeout_min_ms must be at least 1 and at most group_session_timeout_max_ms");
        }
        if let Some(r) = &self.rack {
            weir_core::metadata::cluster::check_rack(r).map_err(|why| ConfigError::Invalid(format!("rack: {why}")))?;
        }
        Ok(())
    }
}

pub use weir_core::metadata::ms_or_unbounded;

impl Config {
    /// Whether this node is one of a cluster's (`initial_members` given).
    pub fn clustered(&self) -> bool {
        !self.initial_members.is_empty()
    }

    pub fn timing(&self) -> crate::raft::Timing {
        crate::raft::Timing {
            heartbeat_ms: self.raft_heartbeat_ms,
            election_min_ms: self.raft_election_min_ms,
            election_max_ms: self.raft_election_max_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9999\"\nsegment_bytes = 1048576\nretention_ms = -1\noffsets_retention_ms = 5000\noffsets_compact_bytes = 4096\n").unwrap();
        let args = Args { config: Some(path.clone()), data_dir: Some("/tmp/x".into()), ..Args::default() };
        let c = Config::resolve(&args).unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.log.segment_bytes_max, 1 << 20);
        assert_eq!(c.log.retention_ms, None);
        assert_eq!((c.offsets_retention_ms, c.offsets_compact_bytes), (Some(5000), 4096));
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let err = Config::resolve(&args).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
        let c = Config::resolve(&Args::default()).unwrap();
        assert!(c.data_dir.is_absolute() && c.data_dir.ends_with("weir-data"), "{:?}", c.data_dir);
    }

    #[test]
    fn meaningless_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        for (text, needle) in [
            ("retention_check_interval_ms = 0", "retention_check_interval_ms"),
            ("retention_ms = -5", "retention_ms must be -1"),
            ("offsets_retention_ms = -2", "offsets_retention_ms"),
            ("idle_timeout_ms = 0", "idle_timeout_ms"),
            ("segment_age_ms = -1", "segment_age_ms"),
            ("timestamp_after_max_ms = -3", "timestamp_after_max_ms"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Config::resolve(&Args { config: Some(path.clone()), ..Args::default() }).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        std::fs::write(
            &path,
            "max_connections = 7\nmax_frame_bytes = 4096\nrequest_bytes_queued_max = 8192\nretention_ms = -1\ntimestamp_after_max_ms = -1",
        )
        .unwrap();
        let c = Config::resolve(&Args { config: Some(path.clone()), ..Args::default() }).unwrap();
        assert_eq!((c.log.retention_ms, c.log.timestamp_after_max_ms), (None, None));
        assert_eq!((c.connections_max, c.frame_bytes_max), (7, 4096), "the old key names still work");
        let err = Config::resolve(&Args { retention_ms: Some(-7), ..Args::default() }).unwrap_err().to_string();
        assert!(err.contains("retention_ms"), "{err}");
    }

    #[test]
    fn cluster_settings_parse_and_bad_ones_say_why() {
        let members = Some("1@127.0.0.1:9192, 2@127.0.0.1:9193,3@localhost:9194".to_owned());
        let c = Config::resolve(&Args { node_id: Some(2), initial_members: members.clone(), ..Args::default() }).unwrap();
        assert!(c.clustered());
        assert_eq!(c.initial_members.len(), 3);
        assert_eq!(c.raft_listen, Some("127.0.0.1:9193".parse().unwrap()), "defaults to its own member address");
        let err = Config::resolve(&Args { node_id: Some(4), initial_members: members.clone(), ..Args::default() }).unwrap_err();
        assert!(err.to_string().contains("not in initial_members"), "{err}");
        let err = Config::resolve(&Args { node_id: Some(3), initial_members: members.clone(), ..Args::default() }).unwrap_err();
        assert!(err.to_string().contains("set raft_listen"), "{err}");
        let c = Config::resolve(&Args { rack: Some("eu-1a".into()), ..Args::default() }).unwrap();
        assert_eq!(c.rack.as_deref(), Some("eu-1a"));
        let err = Config::resolve(&Args { rack: Some("rack 1".into()), ..Args::default() }).unwrap_err();
        assert!(err.to_string().contains("rack"), "{err}");
        for (list, needle) in [
            ("1@a:1,1@b:2", "twice"),
            ("0@a:1", "between 1"),
            ("1:a:1", "ID@HOST:PORT"),
            ("1@a:0", "ID@HOST:PORT"),
            ("x@a:1", "ID@HOST:PORT"),
        ] {
            let err = parse_members(list).unwrap_err();
            assert!(err.contains(needle), "{list}: {err}");
        }
        let join = vec!["127.0.0.1:9092".to_owned()];
        let err = Config::resolve(&Args { join: join.clone(), initial_members: members.clone(), ..Args::default() }).unwrap_err();
        assert!(err.to_string().contains("exclude each other"), "{err}");
        let err = Config::resolve(&Args { join: join.clone(), ..Args::default() }).unwrap_err();
        assert!(err.to_string().contains("needs raft_listen"), "{err}");
        let err =
            Config::resolve(&Args { join: vec!["nohost".into()], raft_listen: Some("127.0.0.1:1".parse().unwrap()), ..Args::default() })
                .unwrap_err();
        assert!(err.to_string().contains("not HOST:PORT"), "{err}");
        let c = Config::resolve(&Args { join, raft_listen: Some("127.0.0.1:1".parse().unwrap()), ..Args::default() }).unwrap();
        assert!(!c.node_id_explicit && c.join.len() == 1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            "node_id = 1\ninitial_members = \"1@127.0.0.1:9192\"\nraft_heartbeat_ms = 50\nraft_election_min_ms = 200\nraft_election_max_ms = 400\n",
        )
        .unwrap();
        let c = Config::resolve(&Args { config: Some(path), ..Args::default() }).unwrap();
        assert_eq!((c.raft_election_min_ms, c.raft_election_max_ms, c.initial_members.len()), (200, 400, 1));
    }
}
