//! sha256 digests: computing them, and the layer chain IDs built from them.

use oci_spec::image::{Digest, DigestAlgorithm};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// Incremental sha256 over content as it streams past.
#[derive(Default)]
pub(crate) struct Hasher(Sha256);

impl Hasher {
    /// Feeds more content.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything fed so far.
    pub(crate) fn finish(self) -> Digest {
        let hex: String = self.0.finalize().iter().map(|b| format!("{b:02x}")).collect();
        parse_digest(&format!("sha256:{hex}")).expect("64 hex characters form a valid digest")
    }
}

/// The sha256 digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    let mut hasher = Hasher::default();
    hasher.update(bytes);
    hasher.finish()
}

/// Parses a digest string, accepting only sha256 (the one algorithm the store keys blobs by).
pub fn parse_digest(s: &str) -> Result<Digest> {
    let digest: Digest = s.parse().map_err(|_| Error::Invalid(format!("bad digest {s:?}")))?;
    sha256_hex(&digest)?;
    Ok(digest)
}

/// The 64 hex characters of a sha256 digest; oci-spec has validated them, so they are safe to use
/// as a file name.
pub(crate) fn sha256_hex(digest: &Digest) -> Result<&str> {
    match digest.algorithm() {
        DigestAlgorithm::Sha256 => Ok(digest.digest()),
        _ => Err(Error::UnsupportedDigest(digest.to_string())),
    }
}

/// The chain IDs of a stack of layers given their diff IDs, bottom first: a layer's chain ID names
/// it together with everything below it, so it identifies an unpacked layer unambiguously.
pub(crate) fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chain: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => sha256(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_content() {
        assert_eq!(
            sha256(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn only_sha256_digests_are_accepted() {
        assert!(parse_digest(&format!("sha256:{}", "0".repeat(64))).is_ok());
        assert!(parse_digest(&format!("sha512:{}", "0".repeat(128))).is_err());
        assert!(parse_digest("sha256:../../etc/passwd").is_err());
        assert!(parse_digest(&format!("sha256:{}", "A".repeat(64))).is_err());
    }

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = sha256(b"a");
        let b = sha256(b"b");
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], sha256(format!("{a} {b}").as_bytes()));
    }
}
