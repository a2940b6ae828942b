//! The Kafka APIs and versions Weir answers, advertised in ApiVersions and
//! checked before a request's body is decoded.
//!
//! [`PLANNED`] is every range the Kafka compatibility work will serve (the
//! ranges clients are known to need, pinned by a test); [`ANSWERED`] is
//! what this build answers and advertises. An API is advertised only once
//! it is answered: a client told "Produce 3–9" would send produces that
//! only get a closed connection.

/// An API key with the versions served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub key: i16,
    pub min: i16,
    pub max: i16,
}

const fn r(key: i16, min: i16, max: i16) -> Range {
    Range { key, min, max }
}

pub const PRODUCE: i16 = 0;
pub const FETCH: i16 = 1;
pub const LIST_OFFSETS: i16 = 2;
pub const METADATA: i16 = 3;
pub const OFFSET_COMMIT: i16 = 8;
pub const OFFSET_FETCH: i16 = 9;
pub const FIND_COORDINATOR: i16 = 10;
pub const JOIN_GROUP: i16 = 11;
pub const HEARTBEAT: i16 = 12;
pub const LEAVE_GROUP: i16 = 13;
pub const SYNC_GROUP: i16 = 14;
pub const DESCRIBE_GROUPS: i16 = 15;
pub const LIST_GROUPS: i16 = 16;
pub const API_VERSIONS: i16 = 18;
pub const CREATE_TOPICS: i16 = 19;
pub const DELETE_TOPICS: i16 = 20;
pub const INIT_PRODUCER_ID: i16 = 22;

/// Every range the compatibility work serves once done. Produce 0 is in it
/// although only 3 and up decode: librdkafka before 2.11.1 drops
/// compression unless Produce 0 is advertised.
pub const PLANNED: &[Range] = &[
    r(PRODUCE, 0, 9),
    r(FETCH, 4, 12),
    r(LIST_OFFSETS, 1, 7),
    r(METADATA, 0, 9),
    r(OFFSET_COMMIT, 2, 8),
    r(OFFSET_FETCH, 1, 7),
    r(FIND_COORDINATOR, 0, 3),
    r(JOIN_GROUP, 0, 7),
    r(HEARTBEAT, 0, 4),
    r(LEAVE_GROUP, 0, 4),
    r(SYNC_GROUP, 0, 5),
    r(DESCRIBE_GROUPS, 0, 5),
    r(LIST_GROUPS, 0, 4),
    r(API_VERSIONS, 0, 3),
    r(CREATE_TOPICS, 2, 5),
    r(DELETE_TOPICS, 1, 4),
    r(INIT_PRODUCER_ID, 0, 4),
];

/// What this build answers, and so advertises: every planned range.
pub const ANSWERED: &[Range] = PLANNED;

/// The oldest Produce decoded: 0-2 carry message formats 0 and 1, which
/// are not stored (advertised only for librdkafka's sake, see [`PLANNED`]);
/// such a request closes the connection, logged.
pub const PRODUCE_DECODED_MIN: i16 = 3;

/// The versions of `key` this build answers.
pub fn answered(key: i16) -> Option<Range> {
    ANSWERED.iter().copied().find(|r| r.key == key)
}

/// The ranges this build answers, for messages: `Metadata 0-9, ...`.
pub fn answered_summary() -> String {
    ANSWERED.iter().map(|r| format!("{} {}-{}", name(r.key), r.min, r.max)).collect::<Vec<_>>().join(", ")
}

/// What to do with a request of `key` at `version`, before its body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Answer,
    /// ApiVersions newer than ours: answered at version 0 with
    /// UNSUPPORTED_VERSION and our ranges, so the client asks again at one
    /// we speak.
    ApiVersionsTooNew,
    /// Nothing this build answers: the connection is closed (logged).
    Unsupported,
}

pub fn check(key: i16, version: i16) -> Verdict {
    match answered(key) {
        Some(r) if (r.min..=r.max).contains(&version) => Verdict::Answer,
        Some(r) if key == API_VERSIONS && version > r.max => Verdict::ApiVersionsTooNew,
        _ => Verdict::Unsupported,
    }
}

/// A Kafka API key's name, for logs and errors.
pub fn name(key: i16) -> String {
    kafka_protocol::messages::ApiKey::try_from(key).map_or_else(|()| format!("unknown API {key}"), |k| format!("{k:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiKey;

    fn planned(key: i16) -> Range {
        PLANNED.iter().copied().find(|r| r.key == key).expect("planned")
    }

    #[test]
    fn librdkafka_before_2_11_finds_the_exact_versions_it_enables_features_by() {
        // librdkafka < 2.11.1 turns a feature on only if these exact versions are in range.
        let exact = [
            (PRODUCE, [0, 3, 7].as_slice()),
            (FETCH, &[4, 10]),
            (LIST_OFFSETS, &[1]),
            (OFFSET_COMMIT, &[2]),
            (OFFSET_FETCH, &[1]),
            (FIND_COORDINATOR, &[0]),
            (JOIN_GROUP, &[0]),
            (SYNC_GROUP, &[0]),
            (HEARTBEAT, &[0]),
            (LEAVE_GROUP, &[0]),
            (INIT_PRODUCER_ID, &[0]),
        ];
        for (key, versions) in exact {
            let r = planned(key);
            for v in versions {
                assert!((r.min..=r.max).contains(v), "{} {v} not in {r:?}", name(key));
            }
        }
    }

    #[test]
    fn every_range_is_one_the_message_types_can_carry() {
        for r in PLANNED {
            let key = ApiKey::try_from(r.key).expect("a Kafka API");
            let valid = key.valid_versions();
            assert!(r.min <= r.max && r.max <= valid.max, "{key:?}: {r:?} beyond the crate's {valid:?}");
        }
        for r in ANSWERED {
            assert!(PLANNED.contains(r), "an answered range is a planned one: {r:?}");
        }
    }

    #[test]
    fn the_firewall_answers_what_is_served_and_nothing_else() {
        assert_eq!(check(API_VERSIONS, 3), Verdict::Answer);
        assert_eq!(check(API_VERSIONS, 4), Verdict::ApiVersionsTooNew);
        assert_eq!(check(API_VERSIONS, 99), Verdict::ApiVersionsTooNew);
        assert_eq!(check(API_VERSIONS, -1), Verdict::Unsupported);
        assert_eq!(check(METADATA, 0), Verdict::Answer);
        assert_eq!(check(METADATA, 9), Verdict::Answer);
        assert_eq!(check(METADATA, 10), Verdict::Unsupported);
        assert_eq!(check(PRODUCE, 7), Verdict::Answer);
        assert_eq!(check(PRODUCE, 10), Verdict::Unsupported);
        assert_eq!(check(OFFSET_COMMIT, 2), Verdict::Answer);
        assert_eq!(check(OFFSET_COMMIT, 1), Verdict::Unsupported, "below the range");
        assert_eq!(check(OFFSET_COMMIT, 9), Verdict::Unsupported);
        assert_eq!(check(999, 0), Verdict::Unsupported);
        assert_eq!(name(999), "unknown API 999");
        assert_eq!(name(METADATA), "Metadata");
    }
}
