//! The runtime's error type.

use std::io;
use std::path::Path;

/// Everything that can go wrong in the image store, imports, pulls, unpacking, sandboxes and
/// containers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The string is not a valid image reference.
    #[error("invalid image reference {reference:?}: {error}")]
    InvalidReference {
        /// The string as given.
        reference: String,
        /// Why it was rejected.
        error: oci_spec::distribution::ParseError,
    },
    /// No image of that name is in the store.
    #[error("image {0} is not present")]
    NotFound(String),
    /// The image is absent and imagePullPolicy Never forbids pulling it (ErrImageNeverPull).
    #[error("image {0} is not present with pull policy of Never")]
    NeverPull(String),
    /// Content did not hash to the digest that named it.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was being checked (a blob, a layer's diff ID).
        what: String,
        /// The digest the content was announced with.
        expected: String,
        /// The digest of the content received.
        actual: String,
    },
    /// A digest that is not sha256, the only algorithm the store keeps.
    #[error("unsupported digest {0}: only sha256 is supported")]
    UnsupportedDigest(String),
    /// A manifest, config or layer of a kind the runtime cannot use.
    #[error("unsupported media type {0}")]
    UnsupportedMediaType(String),
    /// A multi-platform image has no manifest for this machine.
    #[error("{name} has no image for platform {platform}")]
    NoMatchingPlatform {
        /// The image.
        name: String,
        /// The platform looked for, e.g. linux/amd64.
        platform: String,
    },
    /// An archive or image that does not follow the format it claims.
    #[error("invalid image: {0}")]
    Invalid(String),
    /// A file system operation failed.
    #[error("{context}: {error}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        error: io::Error,
    },
    /// A JSON document (manifest, config, index) did not parse.
    #[error("parsing {what}: {error}")]
    Json {
        /// Which document.
        what: String,
        /// The parser's error.
        error: serde_json::Error,
    },
    /// The registry refused or failed a request.
    #[error("pulling {reference}: {message}")]
    Registry {
        /// The image being pulled.
        reference: String,
        /// The client's error with its causes, e.g. down to "Connection refused".
        message: String,
    },
    /// No pod sandbox of that ID exists.
    #[error("sandbox {0} not found")]
    SandboxNotFound(String),
    /// No container of that ID exists.
    #[error("container {0} not found")]
    ContainerNotFound(String),
    /// A sandbox or container of that ID exists already.
    #[error("{kind} {id} already exists")]
    AlreadyExists {
        /// `sandbox` or `container`.
        kind: &'static str,
        /// The ID asked for.
        id: String,
    },
    /// The operation needs a running container.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// A sandbox or container configuration the runtime cannot run (bad ID, no command, unknown
    /// capability, user not in the image, …).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A helper program (runc, the shim) failed.
    #[error("{command}: {message}")]
    Command {
        /// The program and what it was asked to do, e.g. `runc start`.
        command: String,
        /// Its error output, or how it ended.
        message: String,
    },
    /// A CNI plugin failed.
    #[error("CNI plugin {plugin} {command}: {message}")]
    Cni {
        /// The plugin's type, e.g. `bridge`.
        plugin: String,
        /// `ADD` or `DEL`.
        command: &'static str,
        /// The plugin's error message (`msg` and `details` of its error result) or output.
        message: String,
    },
    /// Generating the OCI runtime spec failed.
    #[error("building the OCI runtime spec: {0}")]
    Spec(String),
}

// The underlying errors are part of each message (the kubelet reports messages in pod status)
// rather than `source()`s, which would make error reporters print them twice.

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds the operation and path to I/O errors, so a failure names the file it concerns.
pub(crate) trait IoContext<T> {
    /// Wraps the error with "`what` `path`".
    fn ctx(self, what: &str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, what: &str, path: &Path) -> Result<T> {
        self.map_err(|error| Error::Io {
            context: format!("{what} {}", path.display()),
            error,
        })
    }
}

impl Error {
    /// Wraps a JSON error with the name of the document.
    pub(crate) fn json(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> Error {
        let what = what.into();
        move |error| Error::Json { what, error }
    }

    /// A registry error, with the chain of its causes (reqwest's top message alone rarely says
    /// what went wrong).
    pub(crate) fn registry(
        reference: &impl std::fmt::Display,
        error: oci_client::errors::OciDistributionError,
    ) -> Error {
        let mut message = error.to_string();
        let mut cause = std::error::Error::source(&error);
        while let Some(e) = cause {
            let text = e.to_string();
            // reqwest repeats its own message one level down.
            if !message.ends_with(&text) {
                message = format!("{message}: {text}");
            }
            cause = e.source();
        }
        Error::Registry {
            reference: reference.to_string(),
            message,
        }
    }
}
