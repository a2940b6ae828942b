//! Kafka's wire protocol on Weir's client port (sans-IO): which API
//! versions Weir answers, checked before any body is decoded (the version
//! firewall, [`versions`]), and the requests and responses it answers,
//! decoded and encoded with the `kafka-protocol` crate's message types
//! under Weir's own bounds ([`request`], [`response`]).
//!
//! A Kafka frame is an i32 big-endian length, then the request: api key,
//! api version, correlation id (the header), then the body. A native frame
//! carries `WE` where a Kafka request has its api key, so the first bytes
//! of a connection say which protocol it speaks
//! ([`crate::frame::foreign_protocol`]).
//!
//! The crate's decoders size vectors from wire counts before reading them:
//! a request of a few bytes could ask for terabytes. Every request body is
//! first walked against its schema ([`walk`]), every array count at every
//! depth checked against the bytes left, before the crate decodes it.
//! The group APIs live in [`group`].

pub mod group;
pub mod request;
pub mod response;
pub mod versions;
pub mod walk;

/// Largest Kafka frame read at any setting of `frame_bytes_max`: a frame's
/// size bounds what decoding it may allocate (records stay slices of it).
pub const FRAME_BYTES_MAX: usize = 64 << 20;

/// Kafka's error codes Weir answers with.
pub mod code {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const INVALID_TIMESTAMP: i16 = 32;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_CONFIG: i16 = 40;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const INVALID_REQUEST: i16 = 42;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
    pub const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
    pub const INVALID_RECORD: i16 = 87;
}

/// Whether a connection's first bytes (at least 8) are a Kafka request:
/// not a native frame (no `WE` magic), a plausible length, and an API key
/// Kafka could define (any version: a version the broker does not speak
/// is for the firewall to answer).
pub fn looks_like_kafka(first: &[u8]) -> bool {
    if first.len() < 8 || first[4..6] == crate::frame::MAGIC {
        return false;
    }
    let length = i32::from_be_bytes([first[0], first[1], first[2], first[3]]);
    let key = i16::from_be_bytes([first[4], first[5]]);
    let version = i16::from_be_bytes([first[6], first[7]]);
    length >= 8 && (0..=100).contains(&key) && version >= 0
}

/// The length of the Kafka frame at the front of `buf` (without its
/// length field), once its 4 length bytes are there; an error for a
/// negative length or one above `max` (checked before anything is
/// allocated for it).
pub fn frame_len(buf: &[u8], max: usize) -> Option<Result<usize, String>> {
    let head: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let length = i32::from_be_bytes(head);
    Some(match usize::try_from(length) {
        Err(_) => Err(format!("a Kafka frame of negative length {length}")),
        Ok(n) if n > max => Err(format!("a Kafka frame of {n} bytes, above the broker's max_frame_bytes ({max})")),
        Ok(n) if n < 8 => Err(format!("a Kafka frame of {n} bytes cannot hold a request header")),
        Ok(n) => Ok(n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_requests_are_told_from_native_frames_and_noise() {
        assert!(looks_like_kafka(&[0, 0, 0, 33, 0, 18, 0, 3, 0, 0, 0, 1]), "ApiVersions v3");
        assert!(looks_like_kafka(&[0, 0, 0, 33, 0, 18, 0, 99, 0, 0, 0, 1]), "ApiVersions v99 is the firewall's");
        let native = [12, 0, 0, 0, b'W', b'E', 1, 0, 18, 0, 1, 0, 7, 0, 0, 0];
        assert!(!looks_like_kafka(&native), "a native frame");
        assert!(!looks_like_kafka(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_kafka(&[0, 0, 0, 33, 0, 18]), "too short to tell");
        assert!(!looks_like_kafka(&[0xff, 0, 0, 33, 0, 18, 0, 3]), "negative length");
    }

    #[test]
    fn frame_lengths_are_checked_before_anything_is_read() {
        assert_eq!(frame_len(&[0, 0, 0], 100), None, "not all there");
        assert_eq!(frame_len(&[0, 0, 0, 33, 0, 18], 100), Some(Ok(33)));
        assert!(frame_len(&[0xff, 0xff, 0xff, 0xff], 100).unwrap().unwrap_err().contains("negative"));
        assert!(frame_len(&[0x7f, 0xff, 0xff, 0xff], 100).unwrap().unwrap_err().contains("max_frame_bytes"));
        assert!(frame_len(&[0, 0, 0, 3], 100).unwrap().is_err(), "shorter than a header");
    }
}
