//! Response decoder under every API key: total, and a decoded response (or
//! error) re-encodes and decodes to itself.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weir_net::frame::{self, FrameHeader, Kind};
use weir_net::message::ApiKey;
use weir_net::Response;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let key = u16::from(data[0] % 12);
    let header = FrameHeader { kind: Kind::Response, api_key: key, api_version: 1, correlation_id: 3 };
    let mut buf = BytesMut::new();
    frame::encode(&mut buf, header, &data[1..], b"");
    let f = frame::decode(&mut buf, 1 << 20).unwrap().unwrap();
    if let Ok(result) = Response::decode(&f) {
        let api = ApiKey::from_u16(key).expect("decoded a response for a known key");
        let mut out = BytesMut::new();
        Response::encode(api, 3, &result, &mut out);
        let again = frame::decode(&mut out, 1 << 20).unwrap().unwrap();
        assert_eq!(Response::decode(&again).unwrap(), result);
    }
});
