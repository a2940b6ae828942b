//! Request decoder under every API key and version: total, and a decoded
//! request re-encodes and decodes to itself.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weir_net::Request;
use weir_net::frame::{self, FrameHeader, Kind};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let header = FrameHeader {
        kind: Kind::Request,
        api_key: u16::from(data[0]) % (weir_net::message::ApiKey::ALL.len() as u16 + 1),
        api_version: u16::from(data[1] % 3),
        correlation_id: 9,
    };
    let mut buf = BytesMut::new();
    frame::encode(&mut buf, header, &data[2..], b"");
    let f = frame::decode(&mut buf, 1 << 20).unwrap().unwrap();
    if let Ok(req) = Request::decode(&f) {
        let mut out = BytesMut::new();
        req.encode(9, &mut out);
        let again = frame::decode(&mut out, 1 << 20).unwrap().unwrap();
        assert_eq!(Request::decode(&again).unwrap(), req);
    }
});
