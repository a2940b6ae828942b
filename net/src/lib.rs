//! weir-net: the wire protocol shared by the broker and the client.
//!
//! A message travels in one frame ([`frame`]): a 16-byte header (length,
//! magic, protocol version, kind, API key, API version, correlation id)
//! followed by a postcard body and, for produce requests and fetch responses,
//! raw record batches. [`message`] holds the request and response types,
//! [`error`] the one stable enum of error codes. Decoders are total: any byte
//! string yields a value or an error, never a panic, and the frame length is
//! checked against a limit before anything is allocated. See
//! `net/PROTOCOL.md` for the byte layouts.

pub mod error;
pub mod frame;
pub mod kafka;
pub mod message;
pub mod peer;

pub use error::{ErrorCode, WireError};
pub use frame::{Frame, FrameError, FrameFault, FrameHeader, HeaderIds, Kind};
pub use message::{ApiKey, Request, Response};
