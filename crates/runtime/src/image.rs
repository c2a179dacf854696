//! What the store knows about an image: its identity, layers, and the runtime defaults from its
//! config, in the form the kubelet needs them.

use oci_spec::image::{Arch, Descriptor, Digest, ImageConfiguration, ImageManifest, Os};
use serde::Deserialize;

use crate::digest::{chain_ids, parse_digest};
use crate::error::{Error, Result};

/// Media types of single-platform image manifests the runtime understands.
pub(crate) const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Media types of multi-platform indexes the runtime understands.
pub(crate) const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// An image in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The normalized reference it is stored under, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// The image ID: the digest of its config.
    pub id: Digest,
    /// The digest of its (single-platform) manifest.
    pub manifest_digest: Digest,
    /// For pulled images, the digest the registry resolved the name to (the multi-platform index
    /// when there is one): what Kubernetes reports as `imageID`.
    pub repo_digest: Option<Digest>,
    /// Manifest, config and compressed layers, in bytes.
    pub size: u64,
    /// Runtime defaults from the image config.
    pub config: ImageConfig,
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
}

/// One layer of an image.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The blob as stored (usually gzip-compressed).
    pub blob: Descriptor,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
    /// The digest naming this layer together with all below it; unpacked layers are keyed by it.
    pub chain_id: Digest,
}

/// The container defaults an image sets (the `config` object of the OCI image config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `Entrypoint`: the executable and its first arguments.
    pub entrypoint: Vec<String>,
    /// `Cmd`: default arguments (or the command when there is no entrypoint).
    pub cmd: Vec<String>,
    /// `Env`: `NAME=value` entries.
    pub env: Vec<String>,
    /// `WorkingDir`, if set.
    pub working_dir: Option<String>,
    /// `User` (`user`, `uid`, `user:group`, …), if set.
    pub user: Option<String>,
    /// `ExposedPorts` keys such as `80/tcp`, sorted.
    pub exposed_ports: Vec<String>,
}

impl From<&ImageConfiguration> for ImageConfig {
    fn from(image: &ImageConfiguration) -> Self {
        let Some(c) = image.config() else {
            return Self::default();
        };
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        let mut exposed_ports = c.exposed_ports().clone().unwrap_or_default();
        exposed_ports.sort();
        Self {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            working_dir: non_empty(c.working_dir()),
            user: non_empty(c.user()),
            exposed_ports,
        }
    }
}

impl Image {
    /// Assembles an image from its parsed manifest and config, checking they agree.
    pub(crate) fn new(
        name: String,
        manifest_digest: Digest,
        manifest_size: u64,
        repo_digest: Option<Digest>,
        manifest: &ImageManifest,
        config: &ImageConfiguration,
    ) -> Result<Self> {
        let diff_ids = config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| parse_digest(d))
            .collect::<Result<Vec<_>>>()?;
        if diff_ids.len() != manifest.layers().len() {
            return Err(Error::Invalid(format!(
                "{name}: manifest has {} layers but config lists {} diff IDs",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let layers = manifest
            .layers()
            .iter()
            .zip(chain_ids(&diff_ids))
            .zip(diff_ids)
            .map(|((blob, chain_id), diff_id)| Layer {
                blob: blob.clone(),
                diff_id,
                chain_id,
            })
            .collect::<Vec<_>>();
        let size = manifest_size + manifest.config().size() + layers.iter().map(|l| l.blob.size()).sum::<u64>();
        Ok(Self {
            name,
            id: manifest.config().digest().clone(),
            manifest_digest,
            repo_digest,
            size,
            config: ImageConfig::from(config),
            layers,
        })
    }
}

/// The fields that tell a manifest from an index, whatever else the document holds.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kind {
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
}

/// Whether a manifest document is a multi-platform index (by its mediaType, or by having a
/// `manifests` list when the optional mediaType is absent).
pub(crate) fn is_index(bytes: &[u8]) -> Result<bool> {
    let kind: Kind = serde_json::from_slice(bytes).map_err(Error::json("manifest"))?;
    Ok(match kind.media_type.as_deref() {
        Some(t) if INDEX_TYPES.contains(&t) => true,
        Some(t) if MANIFEST_TYPES.contains(&t) => false,
        Some(t) => return Err(Error::UnsupportedMediaType(t.to_string())),
        None => kind.manifests.is_some(),
    })
}

/// The platform images are chosen for: linux on this machine's architecture.
pub fn platform() -> String {
    format!("{}/{}", Os::Linux, Arch::default())
}

/// Picks this machine's entry from a multi-platform index (`name` is for the error message).
pub(crate) fn select_platform<'a>(manifests: &'a [Descriptor], name: &str) -> Result<&'a Descriptor> {
    let arch = Arch::default();
    let matching = manifests.iter().find(|d| {
        d.platform()
            .as_ref()
            .is_some_and(|p| *p.os() == Os::Linux && *p.architecture() == arch)
    });
    // An index without platforms (as some tools write for a single image) has only one choice.
    let only = match manifests {
        [single] if single.platform().is_none() => Some(single),
        _ => None,
    };
    matching.or(only).ok_or_else(|| Error::NoMatchingPlatform {
        name: name.to_string(),
        platform: platform(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{MediaType, Platform, PlatformBuilder};

    fn entry(arch: &str, hex: char) -> Descriptor {
        let mut d = Descriptor::new(
            MediaType::ImageManifest,
            10,
            parse_digest(&format!("sha256:{}", hex.to_string().repeat(64))).unwrap(),
        );
        let platform: Platform = PlatformBuilder::default()
            .os(Os::Linux)
            .architecture(Arch::from(arch))
            .build()
            .unwrap();
        d.set_platform(Some(platform));
        d
    }

    #[test]
    fn index_entry_for_this_machine_is_chosen() {
        let here = Arch::default().to_string();
        let other = if here == "arm64" { "amd64" } else { "arm64" };
        let entries = [entry(other, 'a'), entry(&here, 'b')];
        let chosen = select_platform(&entries, "x").unwrap();
        assert_eq!(chosen.digest(), entries[1].digest());
        assert!(matches!(
            select_platform(&entries[..1], "x"),
            Err(Error::NoMatchingPlatform { .. })
        ));
    }

    #[test]
    fn manifests_and_indexes_are_told_apart() {
        let oci_index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let untyped_index = br#"{"schemaVersion":2,"manifests":[]}"#;
        let docker = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#;
        assert!(is_index(oci_index).unwrap());
        assert!(is_index(untyped_index).unwrap());
        assert!(!is_index(docker).unwrap());
        assert!(is_index(br#"{"mediaType":"application/vnd.oci.artifact.manifest.v1+json"}"#).is_err());
    }

    #[test]
    fn image_config_fields_are_extracted() {
        let config: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
                "config":{"Entrypoint":["/bin/app"],"Cmd":["serve"],"Env":["A=1"],
                "WorkingDir":"/srv","User":"1000:1000","ExposedPorts":{"8080/tcp":{},"53/udp":{}}}}"#,
        )
        .unwrap();
        let c = ImageConfig::from(&config);
        assert_eq!(c.entrypoint, ["/bin/app"]);
        assert_eq!(c.cmd, ["serve"]);
        assert_eq!(c.env, ["A=1"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.exposed_ports, ["53/udp", "8080/tcp"]);
    }
}
