//! The error type shared by all patch engines.

use thiserror::Error;

/// Why a patch could not be applied; `status_code` tells the apiserver which HTTP status to use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PatchError {
    /// The JSON patch document is not an array of well-formed RFC 6902 operations.
    #[error("invalid JSON patch: {0}")]
    InvalidJsonPatch(String),
    /// A well-formed JSON patch operation could not be applied (missing path, failed `test`, ...).
    #[error("JSON patch could not be applied: {0}")]
    JsonPatchFailed(String),
    /// A strategic merge patch is not a JSON object where one is required.
    #[error("strategic merge patch at {path} must be a JSON object")]
    NotAnObject {
        /// Where in the patch the object was expected.
        path: String,
    },
    /// A `$`-prefixed key that is neither a known directive nor a field the schema declares.
    #[error("unknown strategic merge patch directive {key:?} at {path}")]
    UnknownDirective {
        /// The object holding the key.
        path: String,
        /// The offending key.
        key: String,
    },
    /// A directive whose value or placement is malformed.
    #[error("invalid {directive} at {path}: {reason}")]
    InvalidDirective {
        /// Where the directive sits.
        path: String,
        /// The directive, e.g. `$patch` or `$setElementOrder`.
        directive: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An item of a list merged by key lacks the declared merge key.
    #[error("list item at {path} does not contain declared merge key {key:?}")]
    MissingMergeKey {
        /// The list item.
        path: String,
        /// The merge key from the schema.
        key: String,
    },
    /// The original and the patch cannot be merged (lists of lists, mixed item kinds, ...).
    #[error("cannot merge at {path}: {reason}")]
    Unmergeable {
        /// Where the merge failed.
        path: String,
        /// Why it failed.
        reason: String,
    },
}

impl PatchError {
    /// HTTP status for the Kubernetes `Status` object: 400 for malformed patches, 422 for patches that do not fit the object.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::InvalidJsonPatch(_)
            | PatchError::NotAnObject { .. }
            | PatchError::UnknownDirective { .. }
            | PatchError::InvalidDirective { .. } => 400,
            PatchError::JsonPatchFailed(_) | PatchError::MissingMergeKey { .. } | PatchError::Unmergeable { .. } => 422,
        }
    }
}
