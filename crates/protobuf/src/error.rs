//! The ways a protobuf body can be refused.

/// Why a protobuf request body could not be turned into a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The envelope is fine but names a kind this crate has no schema for; the apiserver
    /// answers 415 so the client can retry with JSON.
    #[error("no protobuf schema for {api_version}, Kind={kind}")]
    UnknownKind {
        /// The envelope's apiVersion.
        api_version: String,
        /// The envelope's kind.
        kind: String,
    },
    /// The bytes are not a valid Kubernetes protobuf body; the apiserver answers 400.
    #[error("malformed protobuf body: {0}")]
    Malformed(String),
}

impl DecodeError {
    /// Shorthand used throughout the decoder, which only ever fails this way on bad input.
    pub(crate) fn malformed(what: impl Into<String>) -> Self {
        Self::Malformed(what.into())
    }
}
