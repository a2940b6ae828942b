//! Errors the SDK returns. A broker's refusal keeps its stable code and
//! message; everything else says whether retrying can help.

use weir_net::{ErrorCode, WireError};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The broker answered with an error.
    #[error("broker error {}: {}", .0.code(), .0.message)]
    Broker(WireError),
    /// No broker in the list could be reached.
    #[error("cannot connect to any broker in {brokers:?}: {reason}")]
    Connect {
        brokers: Vec<String>,
        reason: String,
        /// Every broker refused the TCP connection: nothing listens there.
        refused: bool,
    },
    /// The connection failed or closed while a request was outstanding.
    #[error("connection to {broker} lost: {reason}")]
    Disconnected { broker: String, reason: String },
    /// No answer within the request timeout.
    #[error("request timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// A message was not acknowledged within the producer's delivery
    /// timeout; `last` is why the last attempt failed.
    #[error("not acknowledged within {after:?}: {last}")]
    DeliveryTimeout { after: std::time::Duration, last: String },
    /// The broker sent something this client cannot parse.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The caller passed something unusable; the message says what.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The producer or consumer was closed.
    #[error("closed")]
    Closed,
}

impl ClientError {
    /// Whether the same request may succeed if retried (after refreshing
    /// metadata or reconnecting).
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Broker(e) => e.code().is_retriable(),
            ClientError::Connect { .. }
            | ClientError::Disconnected { .. }
            | ClientError::Timeout(_)
            | ClientError::DeliveryTimeout { .. } => true,
            ClientError::Protocol(_) | ClientError::InvalidArgument(_) | ClientError::Closed => false,
        }
    }

    /// The broker's error code, if the broker refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Broker(e) => Some(e.code()),
            _ => None,
        }
    }
}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> Self {
        ClientError::Broker(e)
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
