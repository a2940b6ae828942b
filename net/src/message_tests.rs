use super::*;
use proptest::prelude::*;

pub fn bytes() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        any::<ApiVersionsRequest>().prop_map(Request::ApiVersions),
        any::<MetadataRequest>().prop_map(Request::Metadata),
        any::<CreateTopicRequest>().prop_map(Request::CreateTopic),
        any::<DeleteTopicRequest>().prop_map(Request::DeleteTopic),
        any::<ListTopicsRequest>().prop_map(Request::ListTopics),
        any::<DescribeTopicRequest>().prop_map(Request::DescribeTopic),
        any::<ProduceRequest>().prop_map(Request::Produce),
        any::<FetchRequest>().prop_map(Request::Fetch),
        any::<ListOffsetsRequest>().prop_map(Request::ListOffsets),
        any::<InitProducerIdRequest>().prop_map(Request::InitProducerId),
        any::<JoinGroupRequest>().prop_map(Request::JoinGroup),
        any::<SyncGroupRequest>().prop_map(Request::SyncGroup),
        any::<HeartbeatRequest>().prop_map(Request::Heartbeat),
        any::<LeaveGroupRequest>().prop_map(Request::LeaveGroup),
        any::<OffsetCommitRequest>().prop_map(Request::OffsetCommit),
        any::<OffsetFetchRequest>().prop_map(Request::OffsetFetch),
        any::<ListGroupsRequest>().prop_map(Request::ListGroups),
        any::<DescribeGroupRequest>().prop_map(Request::DescribeGroup),
        any::<DeleteGroupRequest>().prop_map(Request::DeleteGroup),
        any::<ClusterStatusRequest>().prop_map(Request::ClusterStatus),
        any::<DescribeReplicasRequest>().prop_map(Request::DescribeReplicas),
        any::<FindCoordinatorRequest>().prop_map(Request::FindCoordinator),
        any::<CreatePartitionsRequest>().prop_map(Request::CreatePartitions),
        any::<BalanceLeadersRequest>().prop_map(Request::BalanceLeaders),
        any::<JoinClusterRequest>().prop_map(Request::JoinCluster),
        any::<ReassignPartitionRequest>().prop_map(Request::ReassignPartition),
        any::<RemoveNodeRequest>().prop_map(Request::RemoveNode),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        any::<ApiVersionsResponse>().prop_map(Response::ApiVersions),
        any::<MetadataResponse>().prop_map(Response::Metadata),
        any::<CreateTopicResponse>().prop_map(Response::CreateTopic),
        any::<DeleteTopicResponse>().prop_map(Response::DeleteTopic),
        any::<ListTopicsResponse>().prop_map(Response::ListTopics),
        any::<DescribeTopicResponse>().prop_map(Response::DescribeTopic),
        any::<ProduceResponse>().prop_map(Response::Produce),
        any::<FetchResponse>().prop_map(Response::Fetch),
        any::<ListOffsetsResponse>().prop_map(Response::ListOffsets),
        any::<InitProducerIdResponse>().prop_map(Response::InitProducerId),
        any::<JoinGroupResponse>().prop_map(Response::JoinGroup),
        any::<SyncGroupResponse>().prop_map(Response::SyncGroup),
        any::<HeartbeatResponse>().prop_map(Response::Heartbeat),
        any::<LeaveGroupResponse>().prop_map(Response::LeaveGroup),
        any::<OffsetCommitResponse>().prop_map(Response::OffsetCommit),
        any::<OffsetFetchResponse>().prop_map(Response::OffsetFetch),
        any::<ListGroupsResponse>().prop_map(Response::ListGroups),
        any::<DescribeGroupResponse>().prop_map(Response::DescribeGroup),
        any::<DeleteGroupResponse>().prop_map(Response::DeleteGroup),
        any::<ClusterStatusResponse>().prop_map(Response::ClusterStatus),
        any::<DescribeReplicasResponse>().prop_map(Response::DescribeReplicas),
        any::<FindCoordinatorResponse>().prop_map(Response::FindCoordinator),
        any::<CreatePartitionsResponse>().prop_map(Response::CreatePartitions),
        any::<BalanceLeadersResponse>().prop_map(Response::BalanceLeaders),
        any::<JoinClusterResponse>().prop_map(Response::JoinCluster),
        any::<ReassignPartitionResponse>().prop_map(Response::ReassignPartition),
        any::<RemoveNodeResponse>().prop_map(Response::RemoveNode),
    ]
}

fn one_frame(buf: &mut BytesMut) -> Frame {
    let f = frame::decode(buf, 1 << 24).unwrap().unwrap();
    assert!(buf.is_empty());
    f
}

proptest! {
    #[test]
    fn every_request_round_trips(req in request(), id: u32) {
        let mut buf = BytesMut::new();
        req.encode(id, &mut buf);
        let f = one_frame(&mut buf);
        prop_assert_eq!(f.header.correlation_id, id);
        prop_assert_eq!(Request::decode(&f).unwrap(), req);
    }

    #[test]
    fn every_response_round_trips(resp in response(), id: u32) {
        let mut buf = BytesMut::new();
        Response::encode(resp.api_key(), id, &Ok(resp.clone()), &mut buf);
        let f = one_frame(&mut buf);
        prop_assert_eq!(Response::decode(&f).unwrap(), Ok(resp));
    }

    /// The head and the returned payload, sent one after the other, are the
    /// same bytes `encode` writes.
    #[test]
    fn a_response_head_and_its_payload_are_the_encoded_frame(resp in response(), id: u32) {
        let mut whole = BytesMut::new();
        Response::encode(resp.api_key(), id, &Ok(resp.clone()), &mut whole);
        let mut split = BytesMut::new();
        let key = resp.api_key();
        let payload = Response::encode_head(key, version_max(key), id, &Ok(resp.clone()), &mut split);
        split.extend_from_slice(&payload);
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn errors_round_trip_for_every_api(err: WireError, key in 0u16..(ApiKey::ALL.len() as u16), id: u32) {
        let key = ApiKey::from_u16(key).unwrap();
        let mut buf = BytesMut::new();
        Response::encode(key, id, &Err(err.clone()), &mut buf);
        let f = one_frame(&mut buf);
        prop_assert_eq!(f.header.api_key, key as u16);
        prop_assert_eq!(Response::decode(&f).unwrap(), Err(err));
    }

    /// Arbitrary bodies under every API key and version: decoding is total.
    #[test]
    fn arbitrary_bodies_never_panic(key: u16, version in 0u16..3, body in proptest::collection::vec(any::<u8>(), 0..200), kind: bool) {
        let h = FrameHeader { kind: if kind { Kind::Request } else { Kind::Response }, api_key: key % 21, api_version: version, correlation_id: 1 };
        let mut buf = BytesMut::new();
        frame::encode(&mut buf, h, &body, b"");
        let f = one_frame(&mut buf);
        let _ = Request::decode(&f);
        let _ = Response::decode(&f);
    }
}

proptest! {
    /// A version 1 Metadata answer is the old encoding (no leader terms):
    /// an older client decodes it, and a newer one reads the terms as 0.
    #[test]
    fn metadata_at_version_1_drops_the_leader_terms(m: MetadataResponse, id: u32) {
        #[derive(Serialize)]
        struct OldPartition<'a> { partition: u32, leader: Option<u64>, replicas: &'a [u64] }
        #[derive(Serialize)]
        struct OldTopic<'a> { name: &'a str, partitions: Vec<OldPartition<'a>> }
        #[derive(Serialize)]
        struct Old<'a> { brokers: &'a [BrokerInfo], topics: Vec<OldTopic<'a>> }
        let old = Old {
            brokers: &m.brokers,
            topics: m.topics.iter().map(|t| OldTopic {
                name: &t.name,
                partitions: t.partitions.iter().map(|p| OldPartition { partition: p.partition, leader: p.leader, replicas: &p.replicas }).collect(),
            }).collect(),
        };
        let old_body = postcard::to_stdvec(&Ok::<_, WireError>(old)).unwrap();
        let mut buf = BytesMut::new();
        Response::encode_at(ApiKey::Metadata, 1, id, &Ok(Response::Metadata(m.clone())), &mut buf);
        let f = one_frame(&mut buf);
        prop_assert_eq!(f.header.api_version, 1);
        prop_assert_eq!(&f.body[..], &old_body[..]);
        let mut expect = m.clone();
        expect.topics.iter_mut().for_each(|t| t.topic_id = 0);
        expect.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()).for_each(|p| p.leader_term = 0);
        prop_assert_eq!(Response::decode(&f).unwrap(), Ok(Response::Metadata(expect)));
        let mut head = BytesMut::new();
        let payload = Response::encode_head(ApiKey::Metadata, 1, id, &Ok(Response::Metadata(m)), &mut head);
        prop_assert!(payload.is_empty());
        prop_assert_eq!(head, {
            let mut b = BytesMut::new();
            frame::encode(&mut b, f.header, &f.body, b"");
            b
        });
    }
}

proptest! {
    /// A version 1 ClusterStatus answer is the old encoding (no racks): an
    /// older weirctl decodes it, and a newer one reads no racks.
    #[test]
    fn cluster_status_at_version_1_drops_the_racks(c: ClusterStatusResponse, id: u32) {
        #[derive(Serialize)]
        struct OldNode<'a> { id: u64, address: &'a str, raft_address: &'a str, heard_ms_ago: Option<u64> }
        #[derive(Serialize)]
        struct Old<'a> {
            node_id: u64, clustered: bool, metadata_leader: Option<u64>, term: u64, role: &'a str,
            nodes: Vec<OldNode<'a>>, partitions_led: u32, under_replicated: u32,
        }
        let old = Old {
            node_id: c.node_id, clustered: c.clustered, metadata_leader: c.metadata_leader, term: c.term, role: &c.role,
            nodes: c.nodes.iter().map(|n| OldNode { id: n.id, address: &n.address, raft_address: &n.raft_address, heard_ms_ago: n.heard_ms_ago }).collect(),
            partitions_led: c.partitions_led, under_replicated: c.under_replicated,
        };
        let old_body = postcard::to_stdvec(&Ok::<_, WireError>(old)).unwrap();
        let mut buf = BytesMut::new();
        Response::encode_at(ApiKey::ClusterStatus, 1, id, &Ok(Response::ClusterStatus(c.clone())), &mut buf);
        let f = one_frame(&mut buf);
        prop_assert_eq!(&f.body[..], &old_body[..]);
        let mut expect = c.clone();
        expect.nodes.iter_mut().for_each(|n| n.rack = None);
        prop_assert_eq!(Response::decode(&f).unwrap(), Ok(Response::ClusterStatus(expect)));
        Response::encode_at(ApiKey::ClusterStatus, 2, id, &Ok(Response::ClusterStatus(c.clone())), &mut buf);
        prop_assert_eq!(Response::decode(&one_frame(&mut buf)).unwrap(), Ok(Response::ClusterStatus(c)));
    }
}

proptest! {
    /// A version 1 DescribeReplicas answer is the old encoding (no sizes):
    /// an older weirctl decodes it, and a newer one reads sizes of 0.
    #[test]
    fn describe_replicas_at_version_1_drops_the_sizes(d: DescribeReplicasResponse, id: u32) {
        #[derive(Serialize)]
        struct OldReplica { partition: u32, term: u64, leader: Option<u64>, log_end_offset: u64, high_watermark: u64 }
        #[derive(Serialize)]
        struct Old { node_id: u64, replicas: Vec<OldReplica> }
        let old = Old {
            node_id: d.node_id,
            replicas: d.replicas.iter().map(|r| OldReplica {
                partition: r.partition, term: r.term, leader: r.leader, log_end_offset: r.log_end_offset, high_watermark: r.high_watermark,
            }).collect(),
        };
        let old_body = postcard::to_stdvec(&Ok::<_, WireError>(old)).unwrap();
        let mut buf = BytesMut::new();
        Response::encode_at(ApiKey::DescribeReplicas, 1, id, &Ok(Response::DescribeReplicas(d.clone())), &mut buf);
        let f = one_frame(&mut buf);
        prop_assert_eq!(&f.body[..], &old_body[..]);
        let mut expect = d.clone();
        expect.replicas.iter_mut().for_each(|r| r.size_bytes = 0);
        prop_assert_eq!(Response::decode(&f).unwrap(), Ok(Response::DescribeReplicas(expect)));
        Response::encode_at(ApiKey::DescribeReplicas, 2, id, &Ok(Response::DescribeReplicas(d.clone())), &mut buf);
        prop_assert_eq!(Response::decode(&one_frame(&mut buf)).unwrap(), Ok(Response::DescribeReplicas(d)));
    }
}

#[test]
fn versions_are_checked_per_api() {
    let mut buf = BytesMut::new();
    let req = Request::Metadata(MetadataRequest { topics: None });
    req.encode_at(2, 7, &mut buf);
    assert!(Request::decode(&one_frame(&mut buf)).is_ok());
    req.encode_at(3, 7, &mut buf);
    assert_eq!(Request::decode(&one_frame(&mut buf)).unwrap_err().code(), ErrorCode::UnsupportedVersion);
    Request::ListTopics(ListTopicsRequest {}).encode_at(2, 7, &mut buf);
    assert_eq!(Request::decode(&one_frame(&mut buf)).unwrap_err().code(), ErrorCode::UnsupportedVersion);
    let v = ApiVersionsResponse::current("x");
    assert!(v.apis.iter().any(|r| r.api_key == ApiKey::Metadata as u16 && r.max == 2));
    let at_2 = [ApiKey::Metadata as u16, ApiKey::ClusterStatus as u16, ApiKey::DescribeReplicas as u16];
    assert!(v.apis.iter().all(|r| r.min == 1 && r.max == if at_2.contains(&r.api_key) { 2 } else { 1 }));
}

#[test]
fn unknown_api_and_version_get_specific_errors() {
    let mut buf = BytesMut::new();
    frame::encode(&mut buf, FrameHeader { kind: Kind::Request, api_key: 999, api_version: 1, correlation_id: 5 }, b"", b"");
    assert_eq!(Request::decode(&one_frame(&mut buf)).unwrap_err().code(), ErrorCode::UnknownApi);
    frame::encode(&mut buf, FrameHeader { kind: Kind::Request, api_key: 0, api_version: 9, correlation_id: 5 }, b"", b"");
    assert_eq!(Request::decode(&one_frame(&mut buf)).unwrap_err().code(), ErrorCode::UnsupportedVersion);
    frame::encode(&mut buf, FrameHeader { kind: Kind::Request, api_key: 2, api_version: 1, correlation_id: 5 }, b"\xff\xff", b"");
    assert_eq!(Request::decode(&one_frame(&mut buf)).unwrap_err().code(), ErrorCode::InvalidRequest);
}

#[test]
fn produce_payload_is_a_slice_of_the_frame() {
    let req = Request::Produce(ProduceRequest {
        topic: "t".into(),
        partition: 0,
        acks: Acks::All,
        timeout_ms: 5,
        batch: Bytes::from_static(b"batch-bytes"),
    });
    let mut buf = BytesMut::new();
    req.encode(1, &mut buf);
    let f = one_frame(&mut buf);
    let Request::Produce(p) = Request::decode(&f).unwrap() else { panic!() };
    assert_eq!(&p.batch[..], b"batch-bytes");
    assert_eq!(p.batch.as_ptr(), f.body[f.body.len() - 11..].as_ptr(), "no copy");
}

/// Requests written by `fuzz/make_seeds.py` from the documented layout.
#[test]
fn requests_built_from_the_documented_layout_decode() {
    let mut buf = BytesMut::from(&include_bytes!("../../fuzz/corpus/frame/produce")[..]);
    let f = frame::decode(&mut buf, 1 << 20).unwrap().unwrap();
    let Request::Produce(p) = Request::decode(&f).unwrap() else { panic!("not a produce") };
    assert_eq!((p.topic.as_str(), p.partition, p.acks, p.timeout_ms), ("orders", 0, Acks::All, 5000));
    let mut buf = BytesMut::from(&include_bytes!("../../fuzz/corpus/frame/create_topic")[..]);
    let f = frame::decode(&mut buf, 1 << 20).unwrap().unwrap();
    let Request::CreateTopic(c) = Request::decode(&f).unwrap() else { panic!("not a create") };
    assert_eq!((c.name.as_str(), c.partitions, c.config.retention_ms), ("orders", 3, Some(3_600_000)));
}
