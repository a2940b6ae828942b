//! The entry point: `Client::connect(ClientConfig { brokers, .. })`. A client
//! keeps one multiplexed connection per broker, a metadata cache, and retries
//! retriable failures with backoff. Producers, consumers and admin handles
//! are cheap views over one client.

use crate::connection::Connection;
use crate::error::{ClientError, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_net::message::{ApiVersionsRequest, FindCoordinatorRequest, MetadataRequest, TopicMetadata};
use weir_net::{ErrorCode, Request, Response};

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of one or more brokers; the first reachable one is used.
    pub brokers: Vec<String>,
    /// Timeout of each request (and of connecting).
    pub timeout: Duration,
    /// Attempts for a retriable failure before giving up.
    pub retries: u32,
    /// First backoff between retries; doubles up to one second.
    pub retry_backoff: Duration,
    /// Largest frame accepted from a broker.
    pub max_frame_bytes: usize,
    /// How long a topic's cached metadata is used before it is asked for
    /// again even without an error: how soon producers and consumers see
    /// partitions added to a topic (Kafka's `metadata.max.age.ms`).
    pub metadata_max_age: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            brokers: vec!["127.0.0.1:9092".to_owned()],
            timeout: Duration::from_secs(30),
            retries: 10,
            retry_backoff: Duration::from_millis(50),
            max_frame_bytes: 64 << 20,
            metadata_max_age: Duration::from_secs(30),
        }
    }
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    /// The connection to the first reachable broker (bootstrap, metadata,
    /// admin and group requests).
    conn: tokio::sync::Mutex<Option<Arc<Connection>>>,
    /// One connection per other broker, by address, for requests routed to
    /// a partition's leader.
    routed: tokio::sync::Mutex<BTreeMap<String, Arc<Connection>>>,
    /// Each topic's metadata as last answered, merged so that no
    /// partition's leader goes back to an older term.
    metadata: Mutex<BTreeMap<String, Cached>>,
    /// One metadata request at a time: callers that find the cache stale
    /// wait for the request under way instead of sending their own.
    refreshing: tokio::sync::Mutex<()>,
    /// Every broker the cluster's metadata named: node id → `host:port`.
    brokers: Mutex<BTreeMap<u64, String>>,
    /// Where consumer-group requests go (the coordinator), once asked.
    coordinator: Mutex<Option<String>>,
    /// Bootstrap connections given up for answering from stale metadata:
    /// the next one starts this many candidates further on.
    passed_over: AtomicUsize,
}

/// A topic's cached metadata; `stale` once a request found it out of date.
#[derive(Debug)]
struct Cached {
    meta: TopicMetadata,
    stale: bool,
    /// When it was answered: past `metadata_max_age` it counts as stale.
    at: tokio::time::Instant,
}

/// Takes `new` into the cache and returns what is kept: for a partition
/// whose cached leader is of a newer term than the answer's (the answering
/// broker has not heard of the failover yet), the cached leader. Terms are
/// compared only within one topic id: a recreated topic starts over.
fn merge(cache: &mut BTreeMap<String, Cached>, mut new: TopicMetadata) -> TopicMetadata {
    if let Some(old) = cache.get(&new.name).filter(|old| new.topic_id != 0 && old.meta.topic_id == new.topic_id) {
        for p in &mut new.partitions {
            if let Some(o) = old.meta.partitions.iter().find(|o| o.partition == p.partition && o.leader_term > p.leader_term) {
                p.leader = o.leader;
                p.leader_term = o.leader_term;
            }
        }
    }
    cache.insert(new.name.clone(), Cached { meta: new.clone(), stale: false, at: tokio::time::Instant::now() });
    new
}

/// Most brokers whose addresses a client remembers (a response naming more is cut).
const KNOWN_BROKERS_MAX: usize = 256;

/// Whether a request is for the group coordinator.
fn for_coordinator(req: &Request) -> bool {
    matches!(
        req,
        Request::JoinGroup(_)
            | Request::SyncGroup(_)
            | Request::Heartbeat(_)
            | Request::LeaveGroup(_)
            | Request::OffsetCommit(_)
            | Request::OffsetFetch(_)
            | Request::ListGroups(_)
            | Request::DescribeGroup(_)
            | Request::DeleteGroup(_)
    )
}

/// The partition a request is about, if it must go to that partition's leader.
fn route(req: &Request) -> Option<(&str, u32)> {
    match req {
        Request::Produce(r) => Some((&r.topic, r.partition)),
        Request::Fetch(r) => Some((&r.topic, r.partition)),
        Request::ListOffsets(r) => Some((&r.topic, r.partition)),
        _ => None,
    }
}

/// Parses a broker list, `host:port[,host:port...]`, as the tools take it
/// (`--broker`): each address checked, none empty, at most 64.
pub fn parse_brokers(list: &str) -> std::result::Result<Vec<String>, String> {
    const BROKERS_MAX: usize = 64;
    let brokers: Vec<String> = list.split(',').map(|s| s.trim().to_owned()).collect();
    if brokers.len() > BROKERS_MAX {
        return Err(format!("{} brokers listed; give at most {BROKERS_MAX} (any few of a cluster's brokers will do)", brokers.len()));
    }
    for b in &brokers {
        let bad = || format!("{b:?} is not host:port (for example 127.0.0.1:9092; several: A:9092,B:9092)");
        let (host, port) = b.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(char::is_whitespace) || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad());
        }
    }
    Ok(brokers)
}

/// A handle to a Weir cluster. Clone it freely.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// Connects to the first reachable broker and checks it speaks our protocol.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        if config.brokers.is_empty() {
            return Err(ClientError::InvalidArgument("ClientConfig.brokers is empty: give at least one host:port".to_owned()));
        }
        let client = Client::unconnected(config);
        client.connection().await?;
        Ok(client)
    }

    /// A client that connects only when first asked (tools that address
    /// each broker on its own, as `weirctl cluster status` does).
    pub fn unconnected(config: ClientConfig) -> Client {
        Client {
            inner: Arc::new(Inner {
                config,
                conn: tokio::sync::Mutex::new(None),
                routed: tokio::sync::Mutex::default(),
                metadata: Mutex::default(),
                refreshing: tokio::sync::Mutex::default(),
                brokers: Mutex::default(),
                coordinator: Mutex::default(),
                passed_over: AtomicUsize::new(0),
            }),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A live connection to the first reachable broker, reconnecting (and
    /// handshaking) if needed: the listed brokers first, then every broker
    /// the cluster's metadata named, so losing the listed ones does not
    /// strand a client that has seen the others.
    async fn connection(&self) -> Result<Arc<Connection>> {
        let mut slot = self.inner.conn.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let cfg = &self.inner.config;
        let mut candidates = cfg.brokers.clone();
        for known in self.inner.brokers.lock().unwrap_or_else(|p| p.into_inner()).values() {
            if !candidates.contains(known) {
                candidates.push(known.clone());
            }
        }
        let passed = self.inner.passed_over.load(Ordering::Relaxed) % candidates.len().max(1);
        candidates.rotate_left(passed);
        let mut last = String::new();
        let mut refused = true;
        for addr in &candidates {
            let cfg = &self.inner.config;
            match Connection::connect(addr, cfg.timeout, cfg.max_frame_bytes).await {
                Ok(c) => {
                    // Something listens there: whatever fails now, "is it running?" is the wrong hint.
                    refused = false;
                    match self.handshake(c, addr).await {
                        Ok(c) => {
                            *slot = Some(c.clone());
                            return Ok(c);
                        }
                        Err(ClientError::Broker(e)) if e.code() == ErrorCode::Busy => last = format!("{addr}: {}", e.message),
                        Err(e) => last = format!("{addr}: {e}"),
                    }
                }
                Err(e) => {
                    refused &= matches!(&e, ClientError::Disconnected { reason, .. } if reason.contains("refused"));
                    last = e.to_string();
                }
            }
        }
        Err(ClientError::Connect { brokers: candidates, reason: last, refused })
    }

    /// Gives up `conn` if it is the bootstrap connection, which answered
    /// `error`: a broker that names no leader for a partition it holds no
    /// replica of, has not caught up with the metadata, or was removed
    /// from the cluster serves metadata no newer than that, and a client
    /// asking it again would never find the leaders; one that does not
    /// answer in time may be waiting for metadata it will not get. The next
    /// request goes to the next broker.
    async fn pass_over_if_stale(&self, conn: &Arc<Connection>, error: &ClientError) {
        let stale = matches!(error.code(), Some(ErrorCode::NotLeader | ErrorCode::LeaderNotAvailable | ErrorCode::NodeRemoved));
        let silent = matches!(error, ClientError::Timeout(_)) && self.other_brokers_known();
        if !stale && !silent {
            return;
        }
        let mut slot = self.inner.conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            tracing::debug!(error = %error, "the bootstrap broker answers from stale metadata: trying the next one");
            *slot = None;
            self.inner.passed_over.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether the client knows of more than one broker (from its bootstrap
    /// list or the cluster's answers): only then can another one help.
    fn other_brokers_known(&self) -> bool {
        self.inner.config.brokers.len() > 1 || self.inner.brokers.lock().unwrap_or_else(|p| p.into_inner()).len() > 1
    }

    /// Connects to `addr` and handshakes.
    async fn open(&self, addr: &str) -> Result<Arc<Connection>> {
        let cfg = &self.inner.config;
        let c = Connection::connect(addr, cfg.timeout, cfg.max_frame_bytes).await?;
        self.handshake(c, addr).await
    }

    async fn handshake(&self, c: Connection, addr: &str) -> Result<Arc<Connection>> {
        let cfg = &self.inner.config;
        let hello = Request::ApiVersions(ApiVersionsRequest { client: format!("weir-client {}", env!("CARGO_PKG_VERSION")) });
        match c.request(&hello, cfg.timeout).await? {
            Response::ApiVersions(v) => {
                tracing::debug!(broker = %addr, version = %v.broker_version, "connected");
                c.set_versions(&v);
                Ok(Arc::new(c))
            }
            _ => Err(ClientError::Protocol(format!("{addr}: unexpected handshake response"))),
        }
    }

    /// The connection a request should go on: a partition's leader for
    /// produce, fetch and list-offsets (when the cluster has several
    /// brokers and the leader is known), else the first reachable broker.
    async fn connection_for(&self, req: &Request) -> Result<Arc<Connection>> {
        let target = match route(req) {
            Some((topic, partition)) => self.leader_address(topic, partition).await,
            None if for_coordinator(req) => self.coordinator_address().await,
            None => None,
        };
        if let Some(addr) = target {
            return match self.routed_connection(&addr).await {
                Ok(c) => Ok(c),
                Err(e) => {
                    // The leader is unreachable: the metadata is stale.
                    tracing::debug!(broker = %addr, error = %e, "cannot reach the partition's leader");
                    self.invalidate_metadata();
                    self.forget_coordinator();
                    Err(e)
                }
            };
        }
        self.connection().await
    }

    /// Sends one request once to the broker at `addr` (its own connection,
    /// kept for later requests): for questions every broker answers from
    /// its own state, such as cluster status.
    pub async fn request_at(&self, addr: &str, req: &Request) -> Result<Response> {
        let conn = self.routed_connection(addr).await?;
        conn.request(req, self.inner.config.timeout).await
    }

    /// The kept connection to `addr`, opened if there is none. The cache is
    /// not locked while connecting: one unreachable broker must not hold up
    /// requests to the others for a connect timeout.
    async fn routed_connection(&self, addr: &str) -> Result<Arc<Connection>> {
        if let Some(c) = self.inner.routed.lock().await.get(addr).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let opened = self.open(addr).await;
        let mut routed = self.inner.routed.lock().await;
        match opened {
            Ok(c) => {
                // Another request may have connected meanwhile: keep one.
                let kept = routed.entry(addr.to_owned()).or_insert_with(|| c.clone());
                if kept.is_closed() {
                    *kept = c;
                }
                Ok(kept.clone())
            }
            Err(e) => {
                routed.remove(addr);
                Err(e)
            }
        }
    }

    /// Every broker the cluster's metadata has named so far: node id → `host:port`.
    pub fn known_brokers(&self) -> BTreeMap<u64, String> {
        self.inner.brokers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Asks for the cluster's brokers (and every topic's leaders) now.
    pub async fn refresh_brokers(&self) -> Result<BTreeMap<u64, String>> {
        let resp = self.request_unrouted(&Request::Metadata(MetadataRequest { topics: None })).await?;
        let Response::Metadata(m) = resp else { return Err(ClientError::Protocol("metadata request got another response".to_owned())) };
        self.remember_brokers(&m.brokers);
        let mut cache = self.inner.metadata.lock().unwrap_or_else(|p| p.into_inner());
        for t in m.topics {
            merge(&mut cache, t);
        }
        Ok(self.known_brokers())
    }

    fn remember_brokers(&self, brokers: &[weir_net::message::BrokerInfo]) {
        if brokers.is_empty() {
            return;
        }
        let mut known = self.inner.brokers.lock().unwrap_or_else(|p| p.into_inner());
        known.clear();
        for b in brokers.iter().take(KNOWN_BROKERS_MAX) {
            let host = if b.host.contains(':') { format!("[{}]", b.host) } else { b.host.clone() };
            known.insert(b.node_id, format!("{host}:{}", b.port));
        }
    }

    /// The coordinator's address, asked of the first reachable broker once
    /// and then cached; `None` on a single broker, or while none coordinates.
    async fn coordinator_address(&self) -> Option<String> {
        if let Some(a) = self.inner.coordinator.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Some(a);
        }
        let conn = self.connection().await.ok()?;
        let r = conn.request(&Request::FindCoordinator(FindCoordinatorRequest {}), self.inner.config.timeout).await.ok()?;
        let Response::FindCoordinator(f) = r else { return None };
        let addr = f.address?;
        *self.inner.coordinator.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr.clone());
        Some(addr)
    }

    fn forget_coordinator(&self) {
        *self.inner.coordinator.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The address of the broker that leads `topic/partition`, if the
    /// cluster has more than one broker and the metadata names one.
    async fn leader_address(&self, topic: &str, partition: u32) -> Option<String> {
        if self.inner.brokers.lock().unwrap_or_else(|p| p.into_inner()).len() <= 1 {
            // A single broker: the bootstrap connection is the one.
            if !self.inner.metadata.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
                return None;
            }
        }
        let mut meta = self.topic_metadata(topic).await.ok()?;
        if !meta.partitions.iter().any(|p| p.partition == partition) {
            // Partitions added since the cache was filled: ask again.
            if let Some(c) = self.inner.metadata.lock().unwrap_or_else(|p| p.into_inner()).get_mut(topic) {
                c.stale = true;
            }
            meta = self.topic_metadata(topic).await.ok()?;
        }
        let brokers = self.inner.brokers.lock().unwrap_or_else(|p| p.into_inner());
        if brokers.len() <= 1 {
            return None;
        }
        let leader = meta.partitions.iter().find(|p| p.partition == partition)?.leader?;
        brokers.get(&leader).cloned()
    }

    /// Sends one request once, with the configured timeout (to the
    /// partition's leader for produce, fetch and list-offsets). A failure
    /// that says the leader moved marks the cached metadata stale, so the
    /// next attempt asks again.
    pub async fn request_once(&self, req: &Request) -> Result<Response> {
        self.request_within(req, self.inner.config.timeout).await
    }

    pub(crate) async fn request_within(&self, req: &Request, timeout: Duration) -> Result<Response> {
        let conn = self.connection_for(req).await?;
        let result = conn.request(req, timeout).await;
        if let Err(e) = &result {
            tracing::debug!(broker = %conn.addr(), error = %e, "request failed");
            self.pass_over_if_stale(&conn, e).await;
        }
        if for_coordinator(req)
            && let Err(e) = &result
            && (e.code() == Some(ErrorCode::NotCoordinator) || matches!(e, ClientError::Disconnected { .. } | ClientError::Timeout(_)))
        {
            self.forget_coordinator();
        }
        if route(req).is_some()
            && let Err(e) = &result
            && (matches!(
                e.code(),
                Some(ErrorCode::NotLeader | ErrorCode::LeaderNotAvailable | ErrorCode::ShuttingDown | ErrorCode::NodeRemoved)
            ) || matches!(e, ClientError::Disconnected { .. } | ClientError::Timeout(_)))
        {
            self.invalidate_metadata();
        }
        result
    }

    /// Sends a request, retrying retriable failures with backoff. Only for
    /// requests that are safe to repeat.
    pub async fn request(&self, req: &Request) -> Result<Response> {
        self.with_retries(|left| self.request_within(req, self.attempt_timeout(req, left))).await
    }

    /// How long one attempt of `req` may take, with `left` of its timeout
    /// remaining: a request routed to a leader gets half the timeout (plus
    /// a fetch's wait), so one sent to a leader that went silent still
    /// leaves time to retry at its successor.
    fn attempt_timeout(&self, req: &Request, left: Duration) -> Duration {
        let timeout = self.inner.config.timeout;
        let cap = match req {
            Request::Fetch(f) => timeout / 2 + Duration::from_millis(u64::from(f.max_wait_ms)),
            Request::ListOffsets(_) | Request::Metadata(_) => timeout / 2,
            _ => timeout,
        };
        cap.min(left).max(Duration::from_millis(1))
    }

    /// As [`Client::request`], always to the first reachable broker
    /// (metadata requests, which routing itself depends on).
    async fn request_unrouted(&self, req: &Request) -> Result<Response> {
        self.with_retries(|left| async move {
            let conn = self.connection().await?;
            let result = conn.request(req, self.attempt_timeout(req, left)).await;
            if let Err(e) = &result {
                self.pass_over_if_stale(&conn, e).await;
            }
            result
        })
        .await
    }

    /// Runs `once` (given the time left) until it succeeds, fails for good,
    /// or the request timeout is spent: a caller's timeout bounds the whole
    /// request, every attempt included.
    async fn with_retries<F, Fut>(&self, once: F) -> Result<Response>
    where
        F: FnMut(Duration) -> Fut,
        Fut: std::future::Future<Output = Result<Response>>,
    {
        self.with_retries_if(ClientError::is_retriable, once).await
    }

    /// As [`Client::with_retries`], retrying only the failures `retry`
    /// picks (a metadata change is retried only when refused unwritten).
    pub(crate) async fn with_retries_if<F, Fut>(&self, retry: impl Fn(&ClientError) -> bool, mut once: F) -> Result<Response>
    where
        F: FnMut(Duration) -> Fut,
        Fut: std::future::Future<Output = Result<Response>>,
    {
        let mut backoff = self.inner.config.retry_backoff;
        let mut attempt = 0;
        let deadline = tokio::time::Instant::now() + self.inner.config.timeout;
        loop {
            match once(deadline.saturating_duration_since(tokio::time::Instant::now())).await {
                // A removed broker is retriable only by asking another one.
                Err(e) if e.code() == Some(ErrorCode::NodeRemoved) && !self.other_brokers_known() => return Err(e),
                Err(e) if retry(&e) && attempt < self.inner.config.retries && tokio::time::Instant::now() + backoff < deadline => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "retrying");
                    if e.code() == Some(ErrorCode::NotLeader) {
                        self.invalidate_metadata();
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    /// The cached metadata of `topic`, unless it is stale.
    fn cached(&self, topic: &str) -> Option<TopicMetadata> {
        let max_age = self.inner.config.metadata_max_age;
        self.inner
            .metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .filter(|c| !c.stale && c.at.elapsed() < max_age)
            .map(|c| c.meta.clone())
    }

    /// Metadata of one topic, from the cache or, when it is missing or
    /// stale, from a broker: one request at a time, whoever else needs it
    /// waiting for that answer.
    pub async fn topic_metadata(&self, topic: &str) -> Result<TopicMetadata> {
        if let Some(m) = self.cached(topic) {
            return Ok(m);
        }
        let _one = self.inner.refreshing.lock().await;
        // Refreshed while this caller waited for the request under way.
        if let Some(m) = self.cached(topic) {
            return Ok(m);
        }
        let resp = self.request_unrouted(&Request::Metadata(MetadataRequest { topics: Some(vec![topic.to_owned()]) })).await;
        let resp = match resp {
            Err(e) if e.code() == Some(ErrorCode::UnknownTopic) => {
                self.inner.metadata.lock().unwrap_or_else(|p| p.into_inner()).remove(topic);
                return Err(e);
            }
            r => r?,
        };
        let Response::Metadata(m) = resp else { return Err(ClientError::Protocol("metadata request got another response".to_owned())) };
        self.remember_brokers(&m.brokers);
        let t = m
            .topics
            .into_iter()
            .find(|t| t.name == topic)
            .ok_or_else(|| ClientError::Protocol(format!("metadata for {topic:?} missing")))?;
        Ok(merge(&mut self.inner.metadata.lock().unwrap_or_else(|p| p.into_inner()), t))
    }

    /// Marks the cached metadata stale (after NotLeader, topic changes): the
    /// next request asks again, and still never goes back a term.
    pub fn invalidate_metadata(&self) {
        for c in self.inner.metadata.lock().unwrap_or_else(|p| p.into_inner()).values_mut() {
            c.stale = true;
        }
    }
}

/// Unwraps the response variant a request must get.
macro_rules! expect_response {
    ($resp:expr, $variant:ident) => {
        match $resp {
            weir_net::Response::$variant(r) => Ok(r),
            other => Err($crate::error::ClientError::Protocol(format!(
                "expected a {} response, got {:?}",
                stringify!($variant),
                other.api_key()
            ))),
        }
    };
}
pub(crate) use expect_response;

#[cfg(test)]
mod tests {
    use super::*;
    use weir_net::message::PartitionMetadata;

    fn topic(id: u64, leaders: &[(Option<u64>, u64)]) -> TopicMetadata {
        TopicMetadata {
            name: "t".into(),
            topic_id: id,
            partitions: leaders
                .iter()
                .enumerate()
                .map(|(i, (leader, term))| PartitionMetadata {
                    partition: i as u32,
                    leader: *leader,
                    replicas: vec![1, 2, 3],
                    leader_term: *term,
                })
                .collect(),
        }
    }

    fn leaders(t: &TopicMetadata) -> Vec<(Option<u64>, u64)> {
        t.partitions.iter().map(|p| (p.leader, p.leader_term)).collect()
    }

    #[test]
    fn a_cached_leader_never_goes_back_a_term() {
        let mut cache = BTreeMap::new();
        merge(&mut cache, topic(7, &[(Some(1), 3), (Some(2), 5)]));
        // A broker behind on partition 0's failover, ahead on partition 1's election.
        let kept = merge(&mut cache, topic(7, &[(Some(3), 2), (None, 6)]));
        assert_eq!(leaders(&kept), [(Some(1), 3), (None, 6)]);
        assert_eq!(leaders(&cache["t"].meta), leaders(&kept));
        assert!(!cache["t"].stale);
        let newer = merge(&mut cache, topic(7, &[(Some(2), 4), (Some(3), 6)]));
        assert_eq!(leaders(&newer), [(Some(2), 4), (Some(3), 6)]);
    }

    #[test]
    fn terms_compare_only_within_one_topic_id() {
        let mut cache = BTreeMap::new();
        merge(&mut cache, topic(7, &[(Some(1), 9)]));
        // Deleted and created again: its terms start over.
        assert_eq!(leaders(&merge(&mut cache, topic(8, &[(Some(2), 1)]))), [(Some(2), 1)]);
        // A version 1 answer (no ids, no terms) is taken as it is.
        merge(&mut cache, topic(8, &[(Some(2), 4)]));
        assert_eq!(leaders(&merge(&mut cache, topic(0, &[(Some(3), 0)]))), [(Some(3), 0)]);
    }
}
