//! Image references, normalized the way Docker and containerd do: `busybox` is
//! `docker.io/library/busybox:latest`, so a pod's `image:` and the store agree on one name.

use std::fmt;
use std::str::FromStr;

use oci_spec::distribution::{ParseError, Reference};

use crate::error::{Error, Result};

/// A parsed, normalized image reference: registry, repository, and a tag and/or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef(Reference);

impl ImageRef {
    /// Parses and normalizes a reference (default registry docker.io, `library/` for
    /// single-component Docker Hub names, tag `latest` when neither tag nor digest is given).
    pub fn parse(s: &str) -> Result<Self> {
        let invalid = |error| Error::InvalidReference {
            reference: s.to_string(),
            error,
        };
        // oci-spec's grammar implements Docker's normalization, legacy index.docker.io included,
        // but lets a capitalized first component through when it becomes a Docker Hub repository.
        let reference = Reference::try_from(s).map_err(invalid)?;
        if reference.repository().chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid(ParseError::NameContainsUppercase));
        }
        Ok(Self(reference))
    }

    /// The registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        self.0.registry()
    }

    /// The repository within the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        self.0.repository()
    }

    /// The tag, if any (`latest` when the reference named neither tag nor digest).
    pub fn tag(&self) -> Option<&str> {
        self.0.tag()
    }

    /// The digest, if the reference pins one (`name@sha256:…`).
    pub fn digest(&self) -> Option<&str> {
        self.0.digest()
    }

    /// `registry/repository`, without tag or digest: the name images are grouped by.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }

    /// The reference as oci-client needs it to talk to the registry.
    pub(crate) fn as_oci(&self) -> &Reference {
        &self.0
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ImageRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_hub_names_are_normalized() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("bitnami/redis:7"), "docker.io/bitnami/redis:7");
        assert_eq!(norm("docker.io/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("index.docker.io/busybox:1"), "docker.io/library/busybox:1");
        assert_eq!(norm("index.docker.io/bitnami/redis"), "docker.io/bitnami/redis:latest");
    }

    #[test]
    fn other_registries_keep_their_host() {
        let r = ImageRef::parse("127.0.0.1:5000/team/app:v2").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("v2"));
        assert_eq!(r.name(), "127.0.0.1:5000/team/app");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("registry.k8s.io/pause:3.10"), "registry.k8s.io/pause:3.10");
    }

    #[test]
    fn digests_are_kept_and_suppress_the_default_tag() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("busybox@{digest}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(digest.as_str()));
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{digest}"));
        let both = ImageRef::parse(&format!("busybox:1@{digest}")).unwrap();
        assert_eq!(both.tag(), Some("1"));
        assert_eq!(both.digest(), Some(digest.as_str()));
    }

    #[test]
    fn invalid_references_are_rejected() {
        for bad in ["", "UPPER/case", "busybox:", "a b", "busybox@sha256:abc", ":tag"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
