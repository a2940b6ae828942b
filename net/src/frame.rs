//! Frames: the unit on the wire. Check, then parse: [`decode`] learns whether
//! a whole frame is buffered from its 4-byte length alone, refuses lengths
//! above the limit before reserving memory, and only then splits the frame off.
//!
//! | at | bytes | field |
//! | --- | --- | --- |
//! | 0 | 4 | `length` u32 LE: bytes after this field (≥ 12) |
//! | 4 | 2 | `magic` = `b"WE"` |
//! | 6 | 1 | `protocol_version` u8 = 1 |
//! | 7 | 1 | `kind` u8: 0 request, 1 response |
//! | 8 | 2 | `api_key` u16 LE |
//! | 10 | 2 | `api_version` u16 LE |
//! | 12 | 4 | `correlation_id` u32 LE |
//! | 16 | … | body: postcard-encoded message, then raw payload if the message has one |

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

pub const MAGIC: [u8; 2] = *b"WE";
pub const PROTOCOL_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 16;
/// The most a partial frame makes [`decode`] reserve at once.
pub const READ_CHUNK_BYTES: usize = 64 << 10;
/// Default frame limit (bytes after the length field).
pub const FRAME_BYTES_MAX_DEFAULT: usize = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request = 0,
    Response = 1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: Kind,
    pub api_key: u16,
    pub api_version: u16,
    pub correlation_id: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: FrameHeader,
    pub body: Bytes,
}

/// Why bytes on a connection are not a frame, with the header's ids when
/// enough bytes arrived to read them (so an answer can be addressed without
/// re-reading raw bytes). After any of these the stream cannot be
/// resynchronised: answer if possible, then close.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{fault}")]
pub struct FrameError {
    pub fault: FrameFault,
    pub ids: Option<HeaderIds>,
}

/// The API key and correlation id a frame header carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderIds {
    pub api_key: u16,
    pub correlation_id: u32,
}

impl HeaderIds {
    /// The ids at their places in the 16 header bytes, if `b` holds them.
    fn read(b: &[u8]) -> Option<HeaderIds> {
        (b.len() >= HEADER_LEN).then(|| HeaderIds {
            api_key: u16::from_le_bytes([b[8], b[9]]),
            correlation_id: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        })
    }
}

/// What was wrong with a frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameFault {
    #[error("frame of {length} bytes exceeds the limit of {max} bytes")]
    TooLarge { length: usize, max: usize },
    #[error("frame length {0} is shorter than the 12-byte header")]
    TooShort(usize),
    #[error("bad frame magic {0:?}: the peer does not speak the Weir protocol")]
    BadMagic([u8; 2]),
    #[error("unsupported protocol version {0} (this side speaks {PROTOCOL_VERSION})")]
    BadProtocolVersion(u8),
    #[error("bad frame kind {0}")]
    BadKind(u8),
}

impl FrameError {
    fn new(fault: FrameFault, seen: &[u8]) -> FrameError {
        FrameError { fault, ids: HeaderIds::read(seen) }
    }
}

impl FrameHeader {
    /// Parses the 16 header bytes (including the length prefix).
    fn parse(b: &[u8]) -> Result<FrameHeader, FrameError> {
        if b[4..6] != MAGIC {
            return Err(FrameError::new(FrameFault::BadMagic([b[4], b[5]]), b));
        }
        if b[6] != PROTOCOL_VERSION {
            return Err(FrameError::new(FrameFault::BadProtocolVersion(b[6]), b));
        }
        let kind = match b[7] {
            0 => Kind::Request,
            1 => Kind::Response,
            k => return Err(FrameError::new(FrameFault::BadKind(k), b)),
        };
        Ok(FrameHeader {
            kind,
            api_key: u16::from_le_bytes([b[8], b[9]]),
            api_version: u16::from_le_bytes([b[10], b[11]]),
            correlation_id: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        })
    }
}

/// Names the protocol a peer speaks when its first bytes are not a Weir
/// frame but plainly something else, so the broker and the client can say
/// "a Kafka client" instead of "frame of 603979776 bytes".
pub fn foreign_protocol(first: &[u8]) -> Option<&'static str> {
    const HTTP: [&[u8]; 8] = [b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"HTTP"];
    if first.len() >= 4 && HTTP.iter().any(|m| first.starts_with(m)) {
        return Some("HTTP");
    }
    // A TLS record: handshake (22), version 3.x.
    if first.len() >= 3 && first[0] == 0x16 && first[1] == 0x03 && first[2] <= 0x04 {
        return Some("TLS");
    }
    // A Kafka request: i32 BE length, then i16 BE api key (0..=100) and
    // version (0..=20), where our magic and version bytes would be.
    if first.len() >= 8 && first[4..6] != MAGIC {
        let length = u32::from_be_bytes([first[0], first[1], first[2], first[3]]);
        let key = u16::from_be_bytes([first[4], first[5]]);
        let version = u16::from_be_bytes([first[6], first[7]]);
        if (8..=(100 << 20)).contains(&length) && key <= 100 && version <= 20 {
            return Some("Kafka");
        }
    }
    None
}

/// The whole length (with its length field) of the frame at the front of
/// `buf` if it is not all there yet.
pub fn partial_len(buf: &[u8]) -> Option<usize> {
    let length = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    (buf.len() < 4 + length).then_some(4 + length)
}

/// Takes one whole frame off the front of `buf`, or says more bytes are
/// needed (`Ok(None)`; the frame's length is then within `max`).
pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let length = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if length > max {
        return Err(FrameError::new(FrameFault::TooLarge { length, max }, buf));
    }
    if length < HEADER_LEN - 4 {
        return Err(FrameError::new(FrameFault::TooShort(length), buf));
    }
    if buf.len() >= HEADER_LEN {
        // Reject garbage as soon as the header is visible, not after its claimed length arrives.
        FrameHeader::parse(&buf[..HEADER_LEN])?;
    }
    if buf.len() < 4 + length {
        // Reserving is the reader's decision (see `partial_len`): a broker
        // grows its buffer as bytes arrive, never to a length a peer merely
        // announced.
        return Ok(None);
    }
    let frame = buf.split_to(4 + length).freeze();
    let header = FrameHeader::parse(&frame[..HEADER_LEN])?;
    Ok(Some(Frame { header, body: frame.slice(HEADER_LEN..) }))
}

/// Writes a frame whose body is `body` followed by `payload`.
pub fn encode(out: &mut BytesMut, header: FrameHeader, body: &[u8], payload: &[u8]) {
    encode_head(out, header, body, payload.len());
    out.put_slice(payload);
}

/// Writes a frame's header and `body` only; the frame's length counts
/// `payload_len` more bytes, which the caller sends right after (so a large
/// payload goes to the socket without being copied into `out`).
pub fn encode_head(out: &mut BytesMut, header: FrameHeader, body: &[u8], payload_len: usize) {
    let length = HEADER_LEN - 4 + body.len() + payload_len;
    out.reserve(4 + length - payload_len);
    out.put_u32_le(length as u32);
    out.put_slice(&MAGIC);
    out.put_u8(PROTOCOL_VERSION);
    out.put_u8(header.kind as u8);
    out.put_u16_le(header.api_key);
    out.put_u16_le(header.api_version);
    out.put_u32_le(header.correlation_id);
    out.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> FrameHeader {
        FrameHeader { kind: Kind::Request, api_key: 6, api_version: 1, correlation_id: 77 }
    }

    #[test]
    fn partial_frames_wait_and_whole_frames_split() {
        let mut out = BytesMut::new();
        encode(&mut out, header(), b"body", b"payload");
        encode(&mut out, header(), b"", b"");
        let all = out.clone();
        let mut buf = BytesMut::new();
        for (i, b) in all.iter().enumerate() {
            buf.put_u8(*b);
            if i + 1 < 27 {
                assert_eq!(decode(&mut buf, 1024).unwrap(), None);
            }
        }
        let f = decode(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(f.header, header());
        assert_eq!(&f.body[..], b"bodypayload");
        assert!(decode(&mut buf, 1024).unwrap().unwrap().body.is_empty());
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let mut buf = BytesMut::new();
        encode(&mut buf, header(), &[0; 100], b"");
        let err = decode(&mut buf, 50).unwrap_err();
        assert_eq!(err.fault, FrameFault::TooLarge { length: 112, max: 50 });
        assert_eq!(err.ids.map(|i| i.correlation_id), Some(77));
        let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        assert!(matches!(decode(&mut buf, 1 << 20), Err(FrameError { fault: FrameFault::TooLarge { .. }, ids: None })));
        assert!(buf.capacity() < 1 << 20);
    }

    #[test]
    fn garbage_is_rejected_once_the_header_is_visible() {
        let mut buf = BytesMut::from(&b"\x10\x00\x00\x00GET / HTTP/1.1\r\n"[..]);
        let err = decode(&mut buf, 1 << 20).unwrap_err();
        assert!(matches!(err.fault, FrameFault::BadMagic(_)));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut buf = BytesMut::from(&raw[..]);
            while let Ok(Some(f)) = decode(&mut buf, 1 << 16) {
                prop_assert!(f.body.len() <= raw.len());
            }
        }

        #[test]
        fn round_trip(key: u16, version: u16, id: u32, body in proptest::collection::vec(any::<u8>(), 0..100)) {
            let h = FrameHeader { kind: Kind::Response, api_key: key, api_version: version, correlation_id: id };
            let mut buf = BytesMut::new();
            encode(&mut buf, h, &body, b"");
            let f = decode(&mut buf, 1 << 16).unwrap().unwrap();
            prop_assert_eq!(f.header, h);
            prop_assert_eq!(&f.body[..], &body[..]);
        }
    }
}

#[cfg(test)]
mod sniff_tests {
    use super::*;

    #[test]
    fn foreign_protocols_are_named() {
        assert_eq!(foreign_protocol(b"GET / HTTP/1.1\r\n"), Some("HTTP"));
        assert_eq!(foreign_protocol(&[0x16, 0x03, 0x01, 0x02, 0x00]), Some("TLS"));
        // Kafka ApiVersions v3: length, api_key 18, api_version 3, correlation id.
        assert_eq!(foreign_protocol(&[0, 0, 0, 33, 0, 18, 0, 3, 0, 0, 0, 1]), Some("Kafka"));
        let mut ours = BytesMut::new();
        encode(&mut ours, FrameHeader { kind: Kind::Request, api_key: 18, api_version: 1, correlation_id: 1 }, &[1, 2, 3], &[]);
        assert_eq!(foreign_protocol(&ours), None);
    }

    #[test]
    fn an_announced_length_is_not_reserved_up_front() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&((16u32 << 20) - 16).to_le_bytes());
        buf.extend_from_slice(&[b'W', b'E', 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode(&mut buf, 16 << 20), Ok(None));
        assert!(buf.capacity() <= 2 * READ_CHUNK_BYTES, "reserved {}", buf.capacity());
    }
}
