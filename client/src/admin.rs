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

    pub async fn describe_topic(&self, name: &str) -> Result<DescribeTopicResponse> {
        let r = self.client.request(&Request::DescribeTopic(DescribeTopicRequest { name: name.to_owned() })).await?;
        expect_response!(r, DescribeTopic)
    }
}
