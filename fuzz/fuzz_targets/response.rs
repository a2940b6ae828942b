//! Response decoder under every API key: total, and a decoded response (or
//! error) re-encodes and decodes to itself.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weir_net::Response;
use weir_net::frame::{self, FrameHeader, Kind};
use weir_net::message::ApiKey;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // Every key, and one past them (the unknown-key path).
    let key = u16::from(data[0]) % (ApiKey::ALL.len() as u16 + 1);
    let header = FrameHeader { kind: Kind::Response, api_key: key, api_version: 1, correlation_id: 3 };
    let mut buf = BytesMut::new();
    frame::encode(&mut buf, header, &data[1..], b"");
    let f = frame::decode(&mut buf, 1 << 20).unwrap().unwrap();
    if let Ok(result) = Response::decode(&f) {
        // An unknown key may still carry a decodable error body; only known
        // keys can be re-encoded.
        let Some(api) = ApiKey::from_u16(key) else { return };
        let mut out = BytesMut::new();
        Response::encode(api, 3, &result, &mut out);
        let again = frame::decode(&mut out, 1 << 20).unwrap().unwrap();
        assert_eq!(Response::decode(&again).unwrap(), result);
    }
});
