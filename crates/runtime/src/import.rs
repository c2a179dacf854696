//! Imports of image archives (tar, optionally gzip-compressed):
//! - OCI image layouts (`skopeo copy … oci-archive:`, buildkit, `docker save` since Docker 25),
//!   names taken from `io.containerd.image.name` or a full `org.opencontainers.image.ref.name`;
//! - docker archives (`docker save`): `manifest.json` naming a config JSON and layer tars.
//!
//! The tar is read once: small metadata files are kept in memory, every other file is staged in
//! the store and hashed on the way, then only the files the images reference are committed.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Component, Path};

use oci_spec::image::{
    Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest, ImageManifestBuilder, MediaType,
};
use serde::Deserialize;

use crate::digest::{parse_digest, sha256};
use crate::error::{Error, IoContext, Result};
use crate::image::{INDEX_TYPES, Image, select_platform};
use crate::reference::ImageRef;
use crate::store::{ImageStore, StagedBlob, check_digest};
use crate::unpack::open_decompressed;

/// Archive members read into memory rather than staged as blobs.
const METADATA: [&str; 3] = ["index.json", "manifest.json", "oci-layout"];
/// Metadata larger than this is not an index but an attack or a mistake.
const METADATA_LIMIT: u64 = 16 << 20;
/// containerd's annotation for an image's full name in an OCI layout.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for an image's name (a full reference, or just a tag).
const REF_NAME: &str = "org.opencontainers.image.ref.name";

impl ImageStore {
    /// Imports every named image of an OCI-layout or docker archive; returns the images stored.
    pub fn import(&self, path: &Path) -> Result<Vec<Image>> {
        let mut archive = Archive::load(self, path)?;
        let mut images = Vec::new();
        if let Some(index) = archive.metadata.get("index.json").cloned() {
            images = self.import_oci(&mut archive, &index)?;
        }
        if images.is_empty()
            && let Some(manifest) = archive.metadata.get("manifest.json").cloned()
        {
            images = self.import_docker(&mut archive, &manifest)?;
        }
        if images.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: no named image found (expected an OCI layout with index.json or a docker \
                 archive with manifest.json)",
                path.display()
            )));
        }
        Ok(images)
    }

    fn import_oci(&self, archive: &mut Archive, index: &[u8]) -> Result<Vec<Image>> {
        let index: ImageIndex = serde_json::from_slice(index).map_err(Error::json("index.json"))?;
        let mut images = Vec::new();
        for descriptor in index.manifests() {
            let Some(name) = oci_image_name(descriptor) else {
                tracing::warn!(digest = %descriptor.digest(), "skipping an image without a full name");
                continue;
            };
            let reference = ImageRef::parse(name)?;
            let manifest = self.import_oci_manifest(archive, descriptor, name)?;
            images.push(self.tag(&reference, &manifest, None)?);
        }
        Ok(images)
    }

    /// Stores the image a descriptor leads to (through a multi-platform index if need be) and
    /// returns its manifest digest.
    fn import_oci_manifest(&self, archive: &mut Archive, descriptor: &Descriptor, name: &str) -> Result<Digest> {
        let digest = descriptor.digest();
        let blob_path = |d: &Digest| format!("blobs/{}/{}", d.algorithm(), d.digest());
        if INDEX_TYPES.contains(&descriptor.media_type().as_ref()) {
            let bytes = archive.read_member(&blob_path(digest))?;
            check_digest(&format!("index of {name}"), digest, &sha256(&bytes))?;
            let index: ImageIndex = serde_json::from_slice(&bytes).map_err(Error::json(format!("index of {name}")))?;
            let chosen = select_platform(index.manifests(), name)?.clone();
            return self.import_oci_manifest(archive, &chosen, name);
        }
        archive.commit(&blob_path(digest), Some(digest))?;
        let manifest: ImageManifest =
            serde_json::from_slice(&self.read_blob(digest)?).map_err(Error::json(format!("manifest of {name}")))?;
        for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
            archive.commit(&blob_path(blob.digest()), Some(blob.digest()))?;
        }
        Ok(digest.clone())
    }

    fn import_docker(&self, archive: &mut Archive, manifest: &[u8]) -> Result<Vec<Image>> {
        let entries: Vec<DockerManifest> = serde_json::from_slice(manifest).map_err(Error::json("manifest.json"))?;
        let mut images = Vec::new();
        for entry in entries {
            if entry.repo_tags.is_empty() {
                tracing::warn!(config = %entry.config, "skipping an untagged image");
                continue;
            }
            let (config_digest, config_size) = archive.commit(&entry.config, None)?;
            let config: ImageConfiguration = serde_json::from_slice(&self.read_blob(&config_digest)?)
                .map_err(Error::json(format!("config {}", entry.config)))?;
            let diff_ids = config.rootfs().diff_ids();
            if diff_ids.len() != entry.layers.len() {
                return Err(Error::Invalid(format!(
                    "{}: {} layers but {} diff IDs",
                    entry.config,
                    entry.layers.len(),
                    diff_ids.len()
                )));
            }
            let mut layers = Vec::new();
            for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
                let (digest, size) = archive.commit(path, None)?;
                let (_, compressed) = open_decompressed(&self.blob_path(&digest)?)?;
                if !compressed {
                    // An uncompressed layer is its own diff: check the config agrees.
                    check_digest(&format!("layer {path}"), &parse_digest(diff_id)?, &digest)?;
                }
                let media_type = if compressed {
                    MediaType::ImageLayerGzip
                } else {
                    MediaType::ImageLayer
                };
                layers.push(Descriptor::new(media_type, size, digest));
            }
            // docker archives carry no manifest: write the OCI manifest they imply.
            let manifest = ImageManifestBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageManifest)
                .config(Descriptor::new(MediaType::ImageConfig, config_size, config_digest))
                .layers(layers)
                .build()
                .map_err(|e| Error::Invalid(format!("building a manifest: {e}")))?;
            let bytes = serde_json::to_vec(&manifest).map_err(Error::json("manifest"))?;
            let manifest_digest = self.write_blob(&bytes, None)?;
            for tag in &entry.repo_tags {
                images.push(self.tag(&ImageRef::parse(tag)?, &manifest_digest, None)?);
            }
        }
        Ok(images)
    }
}

/// One image of a docker archive's manifest.json.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// `docker save` writes `"RepoTags": null` for untagged images.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// The full name of an image in an OCI layout; a bare tag as ref.name names no repository.
fn oci_image_name(d: &Descriptor) -> Option<&str> {
    let annotations = d.annotations().as_ref()?;
    annotations.get(CONTAINERD_NAME).map(String::as_str).or_else(|| {
        annotations
            .get(REF_NAME)
            .map(String::as_str)
            .filter(|n| n.contains('/') || n.contains(':'))
    })
}

/// The members of an archive after one pass over it.
struct Archive {
    /// Small JSON files, by path.
    metadata: HashMap<String, Vec<u8>>,
    /// Every other regular file, staged in the store but not yet committed.
    staged: HashMap<String, StagedBlob>,
    /// Files already committed, with their digest and size.
    committed: HashMap<String, (Digest, u64)>,
    /// Symbolic and hard links, to their target's path (docker archives link repeated layers).
    links: HashMap<String, String>,
}

impl Archive {
    fn load(store: &ImageStore, path: &Path) -> Result<Self> {
        let (reader, _) = open_decompressed(path)?;
        let mut archive = Self {
            metadata: HashMap::new(),
            staged: HashMap::new(),
            committed: HashMap::new(),
            links: HashMap::new(),
        };
        let mut tar = tar::Archive::new(reader);
        for entry in tar.entries().ctx("reading", path)? {
            let mut entry = entry.ctx("reading", path)?;
            let entry_path = entry.path().ctx("reading", path)?.into_owned();
            let Some(name) = normalize(&entry_path, None) else {
                continue;
            };
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry.link_name().ctx("reading", path)?.unwrap_or_default().into_owned();
                // Symlinks are relative to their directory, hard links to the archive's root.
                let base = kind.is_symlink().then(|| Path::new(&name).parent()).flatten();
                if let Some(target) = normalize(&target, base) {
                    archive.links.insert(name, target);
                }
            } else if kind.is_file() {
                if METADATA.contains(&name.as_str()) {
                    let mut bytes = Vec::new();
                    entry
                        .by_ref()
                        .take(METADATA_LIMIT)
                        .read_to_end(&mut bytes)
                        .ctx("reading", path)?;
                    archive.metadata.insert(name, bytes);
                } else {
                    let mut writer = store.blob_writer()?;
                    io::copy(&mut entry, &mut writer).ctx("reading", path)?;
                    archive.staged.insert(name, writer.finish()?);
                }
            }
        }
        Ok(archive)
    }

    /// Follows links to the member a path names.
    fn resolve<'a>(&'a self, mut name: &'a str) -> &'a str {
        // A bound, because a crafted archive could link in a loop.
        for _ in 0..16 {
            match self.links.get(name) {
                Some(target) => name = target,
                None => break,
            }
        }
        name
    }

    /// Reads a staged member that is needed only in memory (an index inside the layout).
    fn read_member(&self, name: &str) -> Result<Vec<u8>> {
        let staged = self.staged.get(self.resolve(name)).ok_or_else(|| missing(name))?;
        std::fs::read(staged.path()).ctx("reading", staged.path())
    }

    /// Commits a member to the store (once, however many images share it), checking its digest
    /// against `expected` when given; returns its digest and size.
    fn commit(&mut self, name: &str, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let name = self.resolve(name).to_string();
        let check = |actual: &Digest| match expected {
            Some(expected) => check_digest(&name, expected, actual),
            None => Ok(()),
        };
        if let Some((digest, size)) = self.committed.get(&name) {
            check(digest)?;
            return Ok((digest.clone(), *size));
        }
        let staged = self.staged.remove(&name).ok_or_else(|| missing(&name))?;
        check(staged.digest())?;
        let size = staged.size();
        let digest = staged.commit(None)?;
        self.committed.insert(name, (digest.clone(), size));
        Ok((digest, size))
    }
}

fn missing(name: &str) -> Error {
    Error::Invalid(format!("archive member {name} is missing"))
}

/// An archive path made relative to the archive's root (from `base` for relative link targets),
/// or `None` if it climbs out of it.
fn normalize(path: &Path, base: Option<&Path>) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let base_parts = base.into_iter().flat_map(|b| b.components());
    for component in base_parts.chain(path.components()) {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}
