//! Topic administration: create, delete, list, describe.

use crate::client::{Client, expect_response};
use crate::error::{ClientError, Result};
use weir_net::message::*;
use weir_net::{ErrorCode, Request, Response};

/// Administrative operations. Get one with [`Admin::new`].
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    pub fn new(client: &Client) -> Admin {
        Admin { client: client.clone() }
    }

    /// Sends a metadata change once, and again (with backoff, within the
    /// client's timeout) while the cluster answers that its metadata group
    /// has no leader (an election: it usually refused before writing).
    /// As in Kafka's admin client, a change that a leader wrote just before
    /// it lost its leadership may then be reported by the retry as done
    /// already (`TopicAlreadyExists`, `PartitionsCannotShrink`).
    async fn command(&self, req: &Request) -> Result<Response> {
        let unwritten = |e: &ClientError| e.code() == Some(ErrorCode::LeaderNotAvailable);
        self.client.with_retries_if(unwritten, |left| self.client.request_within(req, left)).await
    }

    /// Creates a topic. Not retried automatically on a lost answer: a retry
    /// could report `TopicAlreadyExists` for the caller's own create. (A
    /// cluster electing its metadata leader refuses it: that is retried,
    /// see [`Admin::command`].)
    pub async fn create_topic(&self, req: CreateTopicRequest) -> Result<CreateTopicResponse> {
        let r = self.command(&Request::CreateTopic(req)).await;
        self.client.invalidate_metadata();
        expect_response!(r?, CreateTopic)
    }

    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let r = self.command(&Request::DeleteTopic(DeleteTopicRequest { name: name.to_owned() })).await;
        self.client.invalidate_metadata();
        expect_response!(r?, DeleteTopic).map(|_| ())
    }

    /// Grows `topic` by `count` partitions; returns its new partition count.
    /// New partitions are placed as a new topic's would be. Keys map to
    /// partitions by `hash % partitions`, so once producers see the new
    /// count (at their next metadata refresh, within
    /// `ClientConfig::metadata_max_age`) a key may go to another partition
    /// than before, as in Kafka: order per key holds only within one count.
    pub async fn add_partitions(&self, topic: &str, count: u32) -> Result<u32> {
        let current = self.describe_topic(topic).await?.partitions.len() as u32;
        self.create_partitions(topic, current.saturating_add(count)).await
    }

    /// Grows `topic` to `total` partitions (never shrinks: a `total` at or
    /// below the current count is refused with `InvalidPartitions`, so a
    /// retry of a grow that took effect adds nothing).
    pub async fn create_partitions(&self, topic: &str, total: u32) -> Result<u32> {
        // Not retried automatically, like a create: a retry of a grow that
        // took effect would be refused for asking what is already there.
        let r = self.command(&Request::CreatePartitions(CreatePartitionsRequest { name: topic.to_owned(), total })).await;
        self.client.invalidate_metadata();
        expect_response!(r?, CreatePartitions).map(|r| r.partitions)
    }

    pub async fn list_topics(&self) -> Result<Vec<TopicSummary>> {
        let r = self.client.request(&Request::ListTopics(ListTopicsRequest {})).await?;
        expect_response!(r, ListTopics).map(|r| r.topics)
    }

    /// The cluster as some broker sees it (answered without a quorum).
    pub async fn cluster_status(&self) -> Result<ClusterStatusResponse> {
        let r = self.client.request(&Request::ClusterStatus(ClusterStatusRequest {})).await?;
        expect_response!(r, ClusterStatus)
    }

    /// The cluster as the broker at `addr` sees it (answered without a quorum).
    pub async fn cluster_status_at(&self, addr: &str) -> Result<ClusterStatusResponse> {
        let r = self.client.request_at(addr, &Request::ClusterStatus(ClusterStatusRequest {})).await?;
        expect_response!(r, ClusterStatus)
    }

    /// Moves partition `partition` of `topic` onto `replicas` (the first
    /// preferred as leader). Returns once the move is recorded (false: the
    /// replicas are those already); it completes in the background, and
    /// `describe_topic` shows the new replicas when it has.
    pub async fn reassign_partition(&self, topic: &str, partition: u32, replicas: Vec<u64>) -> Result<bool> {
        let req = ReassignPartitionRequest { name: topic.to_owned(), partition, replicas };
        let r = self.command(&Request::ReassignPartition(req)).await;
        expect_response!(r?, ReassignPartition).map(|r| r.started)
    }

    /// Removes node `node_id`: every replica on it moves to another node,
    /// then it leaves the cluster. Returns how many partitions started
    /// moving; the rest happens in the background (`cluster_status_at`
    /// stops listing the node once it is gone).
    pub async fn remove_node(&self, node_id: u64) -> Result<u32> {
        let r = self.command(&Request::RemoveNode(RemoveNodeRequest { node_id })).await;
        expect_response!(r?, RemoveNode).map(|r| r.moves)
    }

    /// Asks the broker at `addr` to hand the partitions it leads back to
    /// their preferred replicas (where caught up); answers once it tried.
    pub async fn balance_leaders_at(&self, addr: &str) -> Result<BalanceLeadersResponse> {
        let r = self.client.request_at(addr, &Request::BalanceLeaders(BalanceLeadersRequest {})).await?;
        expect_response!(r, BalanceLeaders)
    }

    /// The replicas of `topic` that the broker at `addr` holds.
    pub async fn describe_replicas_at(&self, addr: &str, topic: &str) -> Result<DescribeReplicasResponse> {
        let r = self.client.request_at(addr, &Request::DescribeReplicas(DescribeReplicasRequest { topic: topic.to_owned() })).await?;
        expect_response!(r, DescribeReplicas)
    }

    pub async fn describe_topic(&self, name: &str) -> Result<DescribeTopicResponse> {
        let r = self.client.request(&Request::DescribeTopic(DescribeTopicRequest { name: name.to_owned() })).await?;
        expect_response!(r, DescribeTopic)
    }

    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>> {
        let r = self.client.request(&Request::ListGroups(ListGroupsRequest {})).await?;
        expect_response!(r, ListGroups).map(|r| r.groups)
    }

    /// State, members, assignment and committed offsets (with each
    /// partition's high watermark, for lag).
    pub async fn describe_group(&self, group: &str) -> Result<DescribeGroupResponse> {
        let r = self.client.request(&Request::DescribeGroup(DescribeGroupRequest { group: group.to_owned() })).await?;
        expect_response!(r, DescribeGroup)
    }

    /// Deletes a group with no active members, and its committed offsets.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let r = self.client.request(&Request::DeleteGroup(DeleteGroupRequest { group: group.to_owned() })).await?;
        expect_response!(r, DeleteGroup).map(|_| ())
    }

    /// Sets a group's committed offsets (the group must have no active
    /// members): `offsets` are (topic, partition, next offset to consume).
    pub async fn set_group_offsets(&self, group: &str, offsets: Vec<(String, u32, u64)>) -> Result<()> {
        let offsets = offsets
            .into_iter()
            .map(|(topic, partition, offset)| OffsetToCommit { topic, partition, offset, metadata: "reset".into() })
            .collect();
        let r = self.client.request(&Request::OffsetCommit(OffsetCommitRequest { group: group.to_owned(), member: None, offsets })).await?;
        expect_response!(r, OffsetCommit).map(|_| ())
    }
}
