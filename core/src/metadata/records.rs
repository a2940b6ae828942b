//! The metadata types that are persisted (as `topic.json`): owned by core,
//! not by the wire protocol, so a protocol change is never a disk-format
//! change. Field names are those the files have always had, so data
//! directories written before these types existed still open.

use serde::{Deserialize, Serialize};

/// A topic's own settings; `None` takes the node's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSettings {
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<i64>,
    pub segment_bytes: Option<u64>,
}

/// One topic's durable record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// Never reused, even after the topic is deleted. 0 in records written
    /// before topics had ids: recovery assigns one and rewrites the record.
    #[serde(default)]
    pub id: u64,
    pub name: String,
    pub partitions: u32,
    pub replicas: u16,
    pub config: TopicSettings,
}
