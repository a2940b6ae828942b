use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn limits() -> MetadataLimits {
    MetadataLimits { partitions_max: 100, brokers: 1 }
}

fn fresh(block: u64) -> MetadataState {
    MetadataState::recover(LogConfig::default(), limits(), block, Vec::new()).unwrap().0
}

fn create(m: &mut MetadataState, name: &str) -> Result<TopicRecord, MetadataError> {
    match m.create_topic(name, 3, 1, TopicSettings::default())? {
        Effect::CreateTopic(r) => Ok(r),
        other => panic!("unexpected effect {other:?}"),
    }
}

#[test]
fn a_create_is_visible_only_once_its_record_is_durable() {
    let mut m = fresh(1);
    let record = create(&mut m, "orders").unwrap();
    assert_eq!((record.id, record.partitions), (1 << 24, 3));
    assert!(m.topic("orders").is_none(), "not visible before the record is durable");
    assert_eq!(create(&mut m, "orders"), Err(MetadataError::Busy("orders".into())));
    m.topic_created(record.clone());
    assert_eq!(m.topic("orders").unwrap().record, record);
    assert_eq!(create(&mut m, "orders"), Err(MetadataError::TopicExists("orders".into())));
    assert!(matches!(create(&mut m, "ORDERS"), Err(MetadataError::CaseCollision { .. })));
}

#[test]
fn added_partitions_are_visible_only_once_the_grown_record_is_durable() {
    let mut m = fresh(1);
    let record = create(&mut m, "orders").unwrap();
    m.topic_created(record.clone());
    let Effect::AddPartitions { record: grown, from } = m.add_partitions("orders", 5).unwrap() else { panic!() };
    assert_eq!((from, grown.partitions, grown.id), (3, 5, record.id));
    assert_eq!(m.topic("orders").unwrap().record.partitions, 3, "not visible before the record is durable");
    assert_eq!(m.add_partitions("orders", 6), Err(MetadataError::Busy("orders".into())));
    assert_eq!(m.delete_topic("orders"), Err(MetadataError::Busy("orders".into())));
    m.add_partitions_failed("orders");
    assert_eq!(m.topic("orders").unwrap().record.partitions, 3, "a failed grow changes nothing");
    let Effect::AddPartitions { record: grown, .. } = m.add_partitions("orders", 5).unwrap() else { panic!() };
    m.partitions_added(grown.clone());
    assert_eq!(m.topic("orders").unwrap().record, grown);
    assert!(matches!(m.add_partitions("orders", 5), Err(MetadataError::PartitionsCannotShrink { current: 5, got: 5, .. })));
    assert!(matches!(m.add_partitions("orders", 2), Err(MetadataError::PartitionsCannotShrink { .. })));
    assert_eq!(m.add_partitions("orders", 101), Err(MetadataError::InvalidPartitions { got: 101, max: 100 }));
    assert!(matches!(m.add_partitions("nope", 2), Err(MetadataError::UnknownTopic(_))));
}

#[test]
fn refusals_say_what_is_wrong() {
    let mut m = fresh(1);
    assert!(matches!(m.create_topic("../x", 1, 1, TopicSettings::default()), Err(MetadataError::InvalidName(_))));
    assert!(matches!(m.create_topic("", 1, 1, TopicSettings::default()), Err(MetadataError::InvalidName(_))));
    assert_eq!(m.create_topic("t", 0, 1, TopicSettings::default()), Err(MetadataError::InvalidPartitions { got: 0, max: 100 }));
    assert_eq!(m.create_topic("t", 101, 1, TopicSettings::default()), Err(MetadataError::InvalidPartitions { got: 101, max: 100 }));
    assert_eq!(m.create_topic("t", 1, 3, TopicSettings::default()), Err(MetadataError::InvalidReplication { got: 3, brokers: 1 }));
    let bad = TopicSettings { segment_bytes: Some(10), ..TopicSettings::default() };
    assert!(matches!(m.create_topic("t", 1, 1, bad), Err(MetadataError::InvalidConfig(_))));
    let bad = TopicSettings { retention_ms: Some(-5), ..TopicSettings::default() };
    assert!(matches!(m.create_topic("t", 1, 1, bad), Err(MetadataError::InvalidConfig(_))));
    assert_eq!(m.delete_topic("nope"), Err(MetadataError::UnknownTopic("nope".into())));
}

#[test]
fn a_failed_create_leaves_nothing_and_its_id_is_not_reused() {
    let mut m = fresh(2);
    let first = create(&mut m, "a").unwrap();
    m.create_failed("a");
    assert!(m.topic("a").is_none());
    let again = create(&mut m, "a").unwrap();
    assert_ne!(first.id, again.id);
}

#[test]
fn a_delete_commits_only_when_reported_and_a_failed_one_keeps_the_topic() {
    let mut m = fresh(1);
    let r = create(&mut m, "t").unwrap();
    m.topic_created(r.clone());
    assert_eq!(m.delete_topic("t"), Ok(Effect::DeleteTopic(r)));
    assert_eq!(m.delete_topic("t"), Err(MetadataError::Busy("t".into())));
    m.delete_failed("t");
    assert!(m.topic("t").is_some());
    m.delete_topic("t").unwrap();
    m.topic_deleted("t");
    assert!(m.topic("t").is_none());
}

#[test]
fn producer_ids_come_from_persisted_blocks_only() {
    let mut m = fresh(5);
    assert_eq!(m.allocate_producer_id(), Ok(Ok(5 << 24)));
    assert_eq!(m.allocate_producer_id(), Ok(Ok((5 << 24) + 1)));
    m.producer_ids.next = IDS_PER_BLOCK;
    assert_eq!(m.allocate_producer_id(), Ok(Err(Effect::PersistBlock(6))), "an exhausted block asks for the next");
    m.block_persisted(6);
    assert_eq!(m.allocate_producer_id(), Ok(Ok(6 << 24)));
    assert!(m.producer_id_is_known(-1) && m.producer_id_is_known(5 << 24) && m.producer_id_is_known((6 << 24) + 99));
    assert!(!m.producer_id_is_known(7 << 24), "from a block not reached yet");
    assert!(!m.producer_id_is_known(-2) && !m.producer_id_is_known(i64::MAX));
}

/// Found by a hostile test: a forged producer id near i64::MAX in the data
/// pushed the block so far that ids wrapped negative (no deduplication).
#[test]
fn ids_never_wrap_past_the_last_block() {
    let mut m = fresh(BLOCK_MAX);
    let id = m.allocate_producer_id().unwrap().unwrap();
    assert!(id > 0);
    m.producer_ids.next = IDS_PER_BLOCK;
    assert_eq!(m.allocate_producer_id(), Err(MetadataError::IdsExhausted(BLOCK_MAX)));
}

#[test]
fn records_from_before_topic_ids_get_one_and_are_rewritten() {
    let old = TopicRecord { id: 0, name: "legacy".into(), partitions: 2, replicas: 1, config: TopicSettings::default() };
    let kept = TopicRecord { id: 77, name: "new".into(), partitions: 1, replicas: 1, config: TopicSettings::default() };
    let (m, effects) = MetadataState::recover(LogConfig::default(), limits(), 9, vec![old, kept.clone()]).unwrap();
    let legacy = &m.topic("legacy").unwrap().record;
    assert_eq!(legacy.id, 9 << 24);
    assert_eq!(effects, vec![Effect::RewriteTopic(legacy.clone())]);
    assert_eq!(m.topic("new").unwrap().record, kept);
}

#[test]
fn recovery_refuses_a_block_that_recorded_topic_ids_already_used() {
    let r = TopicRecord { id: 9 << 24, name: "t".into(), partitions: 1, replicas: 1, config: TopicSettings::default() };
    assert!(MetadataState::recover(LogConfig::default(), limits(), 9, vec![r.clone()]).is_err());
    assert!(MetadataState::recover(LogConfig::default(), limits(), 10, vec![r]).is_ok());
}

#[derive(Debug, Clone)]
enum Op {
    Create { name: u8, ok: bool },
    Delete { name: u8, ok: bool },
    ProducerId,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, any::<bool>()).prop_map(|(name, ok)| Op::Create { name, ok }),
        2 => (0u8..6, any::<bool>()).prop_map(|(name, ok)| Op::Delete { name, ok }),
        3 => Just(Op::ProducerId),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    /// Against a model (a set of names and the ids ever handed out): the
    /// visible topics are exactly those whose effects succeeded, and no
    /// topic id or producer id is ever handed out twice, across restarts
    /// (a restart persists a new block above everything, as the node does).
    #[test]
    fn metadata_matches_a_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut block = 1;
        let mut m = fresh(block);
        let mut durable: BTreeSet<String> = BTreeSet::new();
        let mut records: BTreeMap<String, TopicRecord> = BTreeMap::new();
        let mut topic_ids = BTreeSet::new();
        let mut producer_ids = BTreeSet::new();
        for op in ops {
            match op {
                Op::Create { name, ok } => {
                    let name = format!("t{name}");
                    match m.create_topic(&name, 1, 1, TopicSettings::default()) {
                        Ok(Effect::CreateTopic(r)) => {
                            prop_assert!(!durable.contains(&name));
                            prop_assert!(topic_ids.insert(r.id), "topic id {} handed out twice", r.id);
                            if ok { m.topic_created(r.clone()); durable.insert(name.clone()); records.insert(name, r); } else { m.create_failed(&name); }
                        }
                        Ok(other) => prop_assert!(false, "unexpected {:?}", other),
                        Err(MetadataError::TopicExists(_)) => prop_assert!(durable.contains(&name)),
                        Err(e) => prop_assert!(false, "unexpected {}", e),
                    }
                }
                Op::Delete { name, ok } => {
                    let name = format!("t{name}");
                    match m.delete_topic(&name) {
                        Ok(_) if ok => { m.topic_deleted(&name); durable.remove(&name); records.remove(&name); }
                        Ok(_) => m.delete_failed(&name),
                        Err(MetadataError::UnknownTopic(_)) => prop_assert!(!durable.contains(&name)),
                        Err(e) => prop_assert!(false, "unexpected {}", e),
                    }
                }
                Op::ProducerId => {
                    let id = match m.allocate_producer_id().unwrap() {
                        Ok(id) => id,
                        Err(Effect::PersistBlock(b)) => { m.block_persisted(b); block = b; m.allocate_producer_id().unwrap().unwrap() }
                        Err(other) => { prop_assert!(false, "unexpected {:?}", other); unreachable!() }
                    };
                    prop_assert!(producer_ids.insert(id), "producer id {} handed out twice", id);
                }
                Op::Restart => {
                    block = m.newest_block().max(block) + 1;
                    m = MetadataState::recover(LogConfig::default(), limits(), block, records.values().cloned().collect()).unwrap().0;
                }
            }
            let visible: BTreeSet<String> = m.topics().map(|t| t.record.name.clone()).collect();
            prop_assert_eq!(&visible, &durable);
        }
    }
}
