//! Frame decoder: any bytes give frames or an error; every decoded frame
//! re-encodes to exactly the bytes it came from.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weir_net::frame;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut consumed = 0usize;
    while let Ok(Some(f)) = frame::decode(&mut buf, 1 << 16) {
        let len = frame::HEADER_LEN + f.body.len();
        assert!(len <= data.len() - consumed, "a frame longer than its input");
        let mut again = BytesMut::new();
        frame::encode(&mut again, f.header, &f.body, b"");
        assert_eq!(&again[..], &data[consumed..consumed + len], "re-encoding changed the frame");
        consumed += len;
    }
});
