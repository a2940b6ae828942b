//! weir-net: the wire protocol shared by the broker and the client.
//!
//! It will own the length-prefixed frame codec (magic, version, API key,
//! correlation id, postcard body), the request and response types and the one
//! stable enum of error codes. Decoders are total: any byte string yields a
//! value or an error, never a panic or an allocation beyond the frame limit.
