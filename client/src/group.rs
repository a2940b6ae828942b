//! The group consumer: joins a consumer group, gets partitions assigned by
//! the broker's coordinator, heartbeats in the background, and reads its
//! partitions from the committed offsets (or the reset policy).
//!
//! Delivery: [`GroupConsumer::poll`] returns messages from the current
//! assignment. Messages returned by one poll count as processed when the
//! next poll (or `commit`, or `leave_group`) happens; with `auto_commit`,
//! those positions are committed then. On a rebalance the consumer commits
//! what was processed (revoke → commit), rejoins, and starts each newly
//! assigned partition at its committed offset, so within a generation no
//! message is delivered to two members and none is skipped.

use crate::client::{Client, expect_response};
use crate::consumer::{Consumer, ConsumerConfig, Message, StartOffset};
use crate::error::{ClientError, Result};
use futures::Stream;
use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use weir_net::message::*;
use weir_net::{ErrorCode, Request};

/// Where to start a partition the group has no committed offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    /// Fail with an error instead of guessing.
    Error,
}

#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    pub group_id: String,
    /// This client's name, part of its member id.
    pub consumer_id: String,
    pub topics: Vec<String>,
    /// Without a heartbeat for this long the member is removed.
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Assignors in order of preference: "range", "roundrobin", "sticky".
    pub assignors: Vec<String>,
    /// Commit processed positions automatically at each poll and rebalance.
    pub auto_commit: bool,
    pub offset_reset: OffsetReset,
    /// How long a poll waits for data.
    pub max_wait: Duration,
    pub max_bytes: u32,
}

impl Default for GroupConsumerConfig {
    fn default() -> Self {
        GroupConsumerConfig {
            group_id: String::new(),
            consumer_id: "weir-consumer".into(),
            topics: Vec::new(),
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            assignors: vec!["range".into()],
            auto_commit: true,
            offset_reset: OffsetReset::Earliest,
            max_wait: Duration::from_millis(500),
            max_bytes: 1 << 20,
        }
    }
}

#[derive(Debug, Default)]
struct Membership {
    member_id: Option<String>,
    generation: u32,
    assignment: Vec<(String, u32)>,
    /// Next offset to fetch per assigned partition.
    positions: BTreeMap<(String, u32), u64>,
    /// Positions after the messages handed out (processed once the next poll comes).
    delivered: BTreeMap<(String, u32), u64>,
    /// Set by the heartbeat task when the group rebalances.
    rejoin: bool,
    next_partition: usize,
}

/// A member of a consumer group. See the module doc.
pub struct GroupConsumer {
    client: Client,
    consumer: Consumer,
    config: GroupConsumerConfig,
    state: Arc<Mutex<Membership>>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    buffer: VecDeque<Message>,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer").field("group", &self.config.group_id).finish()
    }
}

fn lock(state: &Mutex<Membership>) -> MutexGuard<'_, Membership> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl GroupConsumer {
    pub fn new(client: &Client, config: GroupConsumerConfig) -> GroupConsumer {
        let consumer = Consumer::with_config(client, ConsumerConfig { max_bytes: config.max_bytes, max_wait: config.max_wait });
        GroupConsumer { client: client.clone(), consumer, config, state: Arc::default(), heartbeat: None, buffer: VecDeque::new() }
    }

    /// Joins (or rejoins) the group and waits for this member's partitions.
    pub async fn join_group(&mut self) -> Result<Vec<(String, u32)>> {
        let session_ms = self.config.session_timeout.as_millis().min(u128::from(u32::MAX)) as u32;
        let deadline = tokio::time::Instant::now() + self.config.session_timeout * 3;
        loop {
            let member_id = lock(&self.state).member_id.clone();
            let req = Request::JoinGroup(JoinGroupRequest {
                group: self.config.group_id.clone(),
                member_id,
                client_id: self.config.consumer_id.clone(),
                topics: self.config.topics.clone(),
                assignors: self.config.assignors.clone(),
                session_timeout_ms: session_ms,
                rebalance_timeout_ms: session_ms,
            });
            let joined = match self.client.request(&req).await {
                Ok(r) => expect_response!(r, JoinGroup)?,
                Err(e) if e.code() == Some(ErrorCode::UnknownMember) => {
                    lock(&self.state).member_id = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            lock(&self.state).member_id = Some(joined.member_id.clone());
            // Wait for the generation to form, heartbeating meanwhile.
            loop {
                let sync =
                    Request::SyncGroup(SyncGroupRequest { group: self.config.group_id.clone(), member_id: joined.member_id.clone() });
                match self.client.request(&sync).await {
                    Ok(r) => {
                        let s = expect_response!(r, SyncGroup)?;
                        self.install(s).await?;
                        self.start_heartbeat();
                        return Ok(self.assignment());
                    }
                    Err(e) if e.code() == Some(ErrorCode::RebalanceInProgress) => {
                        if tokio::time::Instant::now() > deadline {
                            return Err(ClientError::Timeout(self.config.session_timeout * 3));
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        // A rebalance restarted while we waited: join again.
                        let hb = Request::Heartbeat(HeartbeatRequest {
                            group: self.config.group_id.clone(),
                            member_id: joined.member_id.clone(),
                            generation: 0,
                        });
                        if let Err(e) = self.client.request(&hb).await
                            && e.code() == Some(ErrorCode::RebalanceInProgress)
                        {
                            break;
                        }
                    }
                    Err(e) if e.code() == Some(ErrorCode::UnknownMember) => {
                        lock(&self.state).member_id = None;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Adopts a new generation's assignment: positions from committed offsets.
    async fn install(&mut self, s: SyncGroupResponse) -> Result<()> {
        let assignment: Vec<(String, u32)> = s.partitions.iter().map(|tp| (tp.topic.clone(), tp.partition)).collect();
        let req = Request::OffsetFetch(OffsetFetchRequest { group: self.config.group_id.clone(), partitions: s.partitions.clone() });
        let committed = expect_response!(self.client.request(&req).await?, OffsetFetch)?;
        let mut positions = BTreeMap::new();
        for (topic, partition) in &assignment {
            let found = committed.offsets.iter().find(|o| &o.topic == topic && o.partition == *partition).map(|o| o.offset);
            let start = match (found, self.config.offset_reset) {
                (Some(o), _) => o,
                (None, OffsetReset::Earliest) => self.consumer.offset_for(topic, *partition, StartOffset::Earliest).await?,
                (None, OffsetReset::Latest) => self.consumer.offset_for(topic, *partition, StartOffset::Latest).await?,
                (None, OffsetReset::Error) => {
                    return Err(ClientError::InvalidArgument(format!(
                        "group {:?} has no committed offset for {topic}/{partition} and offset_reset is Error",
                        self.config.group_id
                    )));
                }
            };
            positions.insert((topic.clone(), *partition), start);
        }
        tracing::debug!(group = %self.config.group_id, generation = s.generation, ?assignment, "joined a generation");
        let mut st = lock(&self.state);
        st.generation = s.generation;
        st.assignment = assignment;
        st.positions = positions;
        st.delivered.clear();
        st.rejoin = false;
        self.buffer.clear();
        Ok(())
    }

    fn start_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        let (client, state, group, every) =
            (self.client.clone(), self.state.clone(), self.config.group_id.clone(), self.config.heartbeat_interval);
        self.heartbeat = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let (member_id, generation) = {
                    let st = lock(&state);
                    match &st.member_id {
                        Some(m) => (m.clone(), st.generation),
                        None => return,
                    }
                };
                let req = Request::Heartbeat(HeartbeatRequest { group: group.clone(), member_id, generation });
                match client.request_once(&req).await {
                    Ok(_) => {}
                    // A coordinator that does not know the group (it restarted
                    // and the group had no offsets to recover it from) does
                    // not know the member either: join as a new one. Without
                    // this a member holding no partitions, which never
                    // commits, would never notice.
                    Err(e)
                        if matches!(
                            e.code(),
                            Some(
                                ErrorCode::RebalanceInProgress
                                    | ErrorCode::IllegalGeneration
                                    | ErrorCode::UnknownMember
                                    | ErrorCode::UnknownGroup
                            )
                        ) =>
                    {
                        tracing::debug!(%group, error = %e, "heartbeat: rejoin");
                        let mut st = lock(&state);
                        st.rejoin = true;
                        if matches!(e.code(), Some(ErrorCode::UnknownMember | ErrorCode::UnknownGroup)) {
                            st.member_id = None;
                        }
                    }
                    Err(_) => {} // transient: the next beat retries
                }
            }
        }));
    }

    /// This member's partitions in the current generation.
    pub fn assignment(&self) -> Vec<(String, u32)> {
        lock(&self.state).assignment.clone()
    }

    pub fn generation(&self) -> u32 {
        lock(&self.state).generation
    }

    pub fn member_id(&self) -> Option<String> {
        lock(&self.state).member_id.clone()
    }

    /// Commits `offset` (the next offset to consume) for a partition.
    pub async fn commit_offset(&self, topic: &str, partition: u32, offset: u64) -> Result<()> {
        self.commit_many(vec![OffsetToCommit { topic: topic.to_owned(), partition, offset, metadata: String::new() }]).await
    }

    async fn commit_many(&self, offsets: Vec<OffsetToCommit>) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let member = {
            let st = lock(&self.state);
            st.member_id.clone().map(|m| (m, st.generation))
        };
        let Some(member) = member else { return Err(ClientError::InvalidArgument("not a member of the group: join_group first".into())) };
        let req = Request::OffsetCommit(OffsetCommitRequest { group: self.config.group_id.clone(), member: Some(member), offsets });
        expect_response!(self.client.request(&req).await?, OffsetCommit).map(|_| ())
    }

    /// Commits the positions after every message handed out so far.
    pub async fn commit(&self) -> Result<()> {
        let delivered: Vec<OffsetToCommit> = lock(&self.state)
            .delivered
            .iter()
            .map(|((topic, partition), offset)| OffsetToCommit {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
                metadata: String::new(),
            })
            .collect();
        self.commit_many(delivered).await
    }

    /// Returns the next messages from the assigned partitions, rejoining
    /// first if the group rebalanced. Empty when nothing arrived in `max_wait`.
    pub async fn poll(&mut self) -> Result<Vec<Message>> {
        let is_member = lock(&self.state).member_id.is_some();
        if self.config.auto_commit && is_member {
            // What the previous poll returned is processed now.
            match self.commit().await {
                Err(e)
                    if matches!(
                        e.code(),
                        Some(
                            ErrorCode::IllegalGeneration
                                | ErrorCode::UnknownMember
                                | ErrorCode::UnknownGroup
                                | ErrorCode::RebalanceInProgress
                        )
                    ) =>
                {
                    let mut st = lock(&self.state);
                    st.rejoin = true;
                    if matches!(e.code(), Some(ErrorCode::UnknownMember | ErrorCode::UnknownGroup)) {
                        st.member_id = None;
                    }
                }
                other => other?,
            }
        }
        let (rejoin, joined) = {
            let st = lock(&self.state);
            (st.rejoin, st.member_id.is_some() && st.generation > 0)
        };
        if rejoin || !joined {
            self.join_group().await?;
        }
        let target = {
            let mut st = lock(&self.state);
            if st.assignment.is_empty() {
                None
            } else {
                st.next_partition = (st.next_partition + 1) % st.assignment.len();
                let (t, p) = st.assignment[st.next_partition].clone();
                let pos = st.positions[&(t.clone(), p)];
                Some((t, p, pos))
            }
        };
        let Some((topic, partition, offset)) = target else {
            tokio::time::sleep(self.config.max_wait).await;
            return Ok(Vec::new());
        };
        let r = match self.consumer.fetch(&topic, partition, offset, self.config.max_wait).await {
            // The committed position is gone (retention deleted it) or past
            // the end: start over per `offset_reset`, as Kafka does.
            Err(e) if e.code() == Some(ErrorCode::OffsetOutOfRange) => {
                let spec = match self.config.offset_reset {
                    OffsetReset::Earliest => StartOffset::Earliest,
                    OffsetReset::Latest => StartOffset::Latest,
                    OffsetReset::Error => return Err(e),
                };
                let to = self.consumer.offset_for(&topic, partition, spec).await?;
                tracing::warn!(group = %self.config.group_id, %topic, partition, from = offset, to, error = %e, "position out of range: reset per offset_reset");
                let mut st = lock(&self.state);
                if !st.rejoin && st.assignment.contains(&(topic.clone(), partition)) {
                    st.positions.insert((topic, partition), to);
                }
                return Ok(Vec::new());
            }
            r => r?,
        };
        let mut st = lock(&self.state);
        // A rebalance that happened during the fetch makes these messages
        // another member's: drop them; the next poll rejoins.
        if st.rejoin || !st.assignment.contains(&(topic.clone(), partition)) {
            return Ok(Vec::new());
        }
        st.positions.insert((topic.clone(), partition), r.next_offset);
        if let Some(last) = r.messages.last() {
            st.delivered.insert((topic, partition), last.offset + 1);
        }
        Ok(r.messages)
    }

    /// Messages as a stream (polling in a loop); ends after an error.
    pub fn messages(self) -> Pin<Box<dyn Stream<Item = Result<Message>> + Send>> {
        Box::pin(futures::stream::unfold((self, false), |(mut gc, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(m) = gc.buffer.pop_front() {
                    return Some((Ok(m), (gc, false)));
                }
                match gc.poll().await {
                    Ok(ms) => gc.buffer.extend(ms),
                    Err(e) => return Some((Err(e), (gc, true))),
                }
            }
        }))
    }

    /// Commits what was processed (with auto-commit) and leaves the group,
    /// so its partitions move to the others at once.
    pub async fn leave_group(mut self) -> Result<()> {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        if self.config.auto_commit {
            let _ = self.commit().await;
        }
        let member = lock(&self.state).member_id.take();
        if let Some(member_id) = member {
            let req = Request::LeaveGroup(LeaveGroupRequest { group: self.config.group_id.clone(), member_id });
            expect_response!(self.client.request(&req).await?, LeaveGroup)?;
        }
        Ok(())
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}
