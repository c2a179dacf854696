//! Pulls from registries with oci-client, and the imagePullPolicy decisions around them.
//!
//! Manifests are fetched raw and parsed here, so the bytes stored are the bytes the registry
//! signed off with its digest; a multi-platform index resolves to this machine's platform
//! (linux/amd64 on the test machines). Blobs already in the store are not fetched again.

use std::fmt;
use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

use futures::StreamExt;
use oci_client::Client;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest};

use crate::digest::{parse_digest, sha256};
use crate::error::{Error, IoContext, Result};
use crate::image::{INDEX_TYPES, Image, MANIFEST_TYPES, is_index, select_platform};
use crate::reference::ImageRef;
use crate::store::{BlobWriter, ImageStore, check_digest};

/// Kubernetes' imagePullPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Ask the registry every time (cheap when the layers are already here).
    Always,
    /// Pull only when the image is absent.
    IfNotPresent,
    /// Never pull; fail when absent (ErrImageNeverPull).
    Never,
}

impl PullPolicy {
    /// Kubernetes' default for an image: Always for `:latest` (explicit, or implied by giving
    /// neither tag nor digest), IfNotPresent otherwise.
    pub fn default_for(image: &ImageRef) -> Self {
        if image.tag() == Some("latest") {
            Self::Always
        } else {
            Self::IfNotPresent
        }
    }
}

impl FromStr for PullPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "Always" => Ok(Self::Always),
            "IfNotPresent" => Ok(Self::IfNotPresent),
            "Never" => Ok(Self::Never),
            other => Err(Error::Invalid(format!("unknown imagePullPolicy {other:?}"))),
        }
    }
}

/// How to reach registries.
#[derive(Clone, Default)]
pub struct PullOptions {
    /// Registries (`host[:port]`, as in image names) spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Credentials for HTTP basic auth (or a registry's token service); anonymous when `None`.
    pub credentials: Option<Credentials>,
}

/// A username and password for a registry.
#[derive(Clone)]
pub struct Credentials {
    /// The username.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    // Never print the password, e.g. in a traced PullOptions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

impl fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullOptions")
            .field("insecure_registries", &self.insecure_registries)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl ImageStore {
    /// Makes the image available as `policy` says: pulls for Always, and for IfNotPresent when
    /// absent; for Never, [`Error::NeverPull`] when absent.
    pub async fn ensure(&self, image: &ImageRef, policy: PullPolicy, options: &PullOptions) -> Result<Image> {
        let present = blocking({
            let (store, image) = (self.clone(), image.clone());
            move || store.contains(&image)
        })
        .await?;
        match (policy, present) {
            (PullPolicy::Always, _) | (PullPolicy::IfNotPresent, false) => self.pull(image, options).await,
            (PullPolicy::Never, false) => Err(Error::NeverPull(image.to_string())),
            (_, true) => {
                let (store, image) = (self.clone(), image.clone());
                blocking(move || store.image(&image)).await
            }
        }
    }

    /// Pulls an image from its registry into the store and names it `image`.
    pub async fn pull(&self, image: &ImageRef, options: &PullOptions) -> Result<Image> {
        // oci-client leaves the TLS crypto provider to the application; kate uses ring everywhere.
        // An error only means a provider is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(options.insecure_registries.clone()),
            // Platform selection happens here, on the raw index.
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        });
        let auth = match &options.credentials {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let registry_error = |error: OciDistributionError| Error::registry(image, error);
        let reference = image.as_oci();
        let accepted: Vec<&str> = MANIFEST_TYPES.iter().chain(&INDEX_TYPES).copied().collect();

        let (mut bytes, _) = client
            .pull_manifest_raw(reference, &auth, &accepted)
            .await
            .map_err(registry_error)?;
        let repo_digest = sha256(&bytes);
        if let Some(pinned) = image.digest() {
            check_digest(&format!("manifest of {image}"), &parse_digest(pinned)?, &repo_digest)?;
        }
        let mut manifest_digest = repo_digest.clone();
        if is_index(&bytes)? {
            let index: ImageIndex = serde_json::from_slice(&bytes).map_err(Error::json(format!("index of {image}")))?;
            let chosen = select_platform(index.manifests(), &image.to_string())?.digest().clone();
            let by_digest = reference.clone_with_digest(chosen.to_string());
            (bytes, _) = client
                .pull_manifest_raw(&by_digest, &auth, &MANIFEST_TYPES)
                .await
                .map_err(registry_error)?;
            check_digest(&format!("manifest of {image}"), &chosen, &sha256(&bytes))?;
            manifest_digest = chosen;
        }
        let manifest: ImageManifest =
            serde_json::from_slice(&bytes).map_err(Error::json(format!("manifest of {image}")))?;

        for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
            let (store, digest) = (self.clone(), blob.digest().clone());
            if blocking(move || store.has_blob(&digest)).await? {
                continue;
            }
            tracing::debug!(%image, digest = %blob.digest(), size = blob.size(), "fetching blob");
            self.fetch_blob(&client, image, blob).await?;
        }

        let store = self.clone();
        let (image, expected) = (image.clone(), manifest_digest.clone());
        blocking(move || {
            store.write_blob(&bytes, Some(&expected))?;
            store.tag(&image, &expected, Some(&repo_digest))
        })
        .await
    }

    /// Streams one blob into the store, verifying its digest before it becomes visible.
    async fn fetch_blob(&self, client: &Client, image: &ImageRef, blob: &Descriptor) -> Result<()> {
        let registry_error = |error: OciDistributionError| Error::registry(image, error);
        let mut stream = client
            .pull_blob_stream(image.as_oci(), blob.digest().as_ref())
            .await
            .map_err(registry_error)?;
        let store = self.clone();
        let mut writer: BlobWriter = blocking(move || store.blob_writer()).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| Error::Io {
                context: format!("downloading {} of {image}", blob.digest()),
                error,
            })?;
            // File writes block: run them where blocking is allowed, as tokio::fs does.
            let root = self.root().to_path_buf();
            writer = blocking(move || {
                writer.write_all(&chunk).ctx("writing a blob in", &root)?;
                Ok(writer)
            })
            .await?;
        }
        let expected: Digest = blob.digest().clone();
        blocking(move || writer.finish()?.commit(Some(&expected)).map(drop)).await
    }
}

/// Runs store I/O on tokio's blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Io {
        context: "running an image store task".to_string(),
        error: std::io::Error::other(e),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_follows_kubernetes() {
        let policy = |s: &str| PullPolicy::default_for(&ImageRef::parse(s).unwrap());
        assert_eq!(policy("busybox"), PullPolicy::Always);
        assert_eq!(policy("busybox:latest"), PullPolicy::Always);
        assert_eq!(policy("busybox:1.35.0"), PullPolicy::IfNotPresent);
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(policy(&format!("busybox@{digest}")), PullPolicy::IfNotPresent);
        assert_eq!("Never".parse::<PullPolicy>().unwrap(), PullPolicy::Never);
        assert!("never".parse::<PullPolicy>().is_err());
    }

    #[tokio::test]
    async fn never_fails_for_absent_images() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let image = ImageRef::parse("busybox:1.35.0").unwrap();
        let err = store
            .ensure(&image, PullPolicy::Never, &PullOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NeverPull(_)), "{err}");
    }
}
