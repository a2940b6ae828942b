//! Topic administration: create, delete, list, describe.

use crate::client::{Client, expect_response};
use crate::error::Result;
use weir_net::Request;
use weir_net::message::*;

/// Administrative operations. Get one with [`Admin::new`].
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    pub fn new(client: &Client) -> Admin {
        Admin { client: client.clone() }
    }

    /// Creates a topic. Not retried automatically on a lost answer: a retry
    /// could report `TopicAlreadyExists` for the caller's own create.
    pub async fn create_topic(&self, req: CreateTopicRequest) -> Result<CreateTopicResponse> {
        let r = self.client.request_once(&Request::CreateTopic(req)).await;
        self.client.invalidate_metadata();
        expect_response!(r?, CreateTopic)
    }

    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let r = self.client.request_once(&Request::DeleteTopic(DeleteTopicRequest { name: name.to_owned() })).await;
        self.client.invalidate_metadata();
        expect_response!(r?, DeleteTopic).map(|_| ())
    }

    pub async fn list_topics(&self) -> Result<Vec<TopicSummary>> {
        let r = self.client.request(&Request::ListTopics(ListTopicsRequest {})).await?;
        expect_response!(r, ListTopics).map(|r| r.topics)
    }

    /// The cluster as the broker at `addr` sees it (answered without a quorum).
    pub async fn cluster_status_at(&self, addr: &str) -> Result<ClusterStatusResponse> {
        let r = self.client.request_at(addr, &Request::ClusterStatus(ClusterStatusRequest {})).await?;
        expect_response!(r, ClusterStatus)
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
