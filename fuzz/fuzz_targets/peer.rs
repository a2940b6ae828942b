//! Peer (Raft RPC) decoder, calls and answers: total, and a decoded frame
//! re-encodes and decodes to itself. The first byte picks the kind.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weir_net::frame::{self, FrameHeader, Kind};
use weir_net::peer::{Answer, Call, PEER_API_KEY, PEER_VERSION, PeerFrame};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    let kind = if kind % 2 == 0 { Kind::Request } else { Kind::Response };
    let header = FrameHeader { kind, api_key: PEER_API_KEY, api_version: PEER_VERSION, correlation_id: 0 };
    let mut buf = BytesMut::new();
    frame::encode(&mut buf, header, body, b"");
    let f = frame::decode(&mut buf, 1 << 20).unwrap().unwrap();
    match kind {
        Kind::Request => {
            if let Ok(calls) = PeerFrame::<Call>::decode(&f) {
                let mut out = BytesMut::new();
                calls.encode(&mut out);
                let again = frame::decode(&mut out, 1 << 21).unwrap().unwrap();
                assert_eq!(PeerFrame::<Call>::decode(&again).unwrap(), calls);
            }
        }
        Kind::Response => {
            if let Ok(answers) = PeerFrame::<Answer>::decode(&f) {
                let mut out = BytesMut::new();
                answers.encode(&mut out);
                let again = frame::decode(&mut out, 1 << 21).unwrap().unwrap();
                assert_eq!(PeerFrame::<Answer>::decode(&again).unwrap(), answers);
            }
        }
    }
});
