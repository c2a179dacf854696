//! The local content store: blobs by digest, image names, and the directories around them.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use rustix::fs::{FlockOperation, flock};
use tempfile::{NamedTempFile, TempDir, TempPath};

use crate::digest::{Hasher, parse_digest, sha256, sha256_hex};
use crate::error::{Error, IoContext, Result};
use crate::image::{Image, MANIFEST_TYPES};
use crate::reference::ImageRef;

/// The OCI annotation holding an image's name in index.json.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Where a pulled image's registry digest is kept in index.json.
const REPO_DIGEST: &str = "io.kate.image.repo-digest";

/// A content store of images under one directory. Its root is an OCI image layout, so `skopeo`
/// and `umoci` can read it:
///
/// ```text
/// ROOT/oci-layout              {"imageLayoutVersion":"1.0.0"}
/// ROOT/index.json              one descriptor per image name (annotation ref.name = full name)
/// ROOT/blobs/sha256/HEX        manifests, configs and layers, shared between images
/// ROOT/layers/HEX              layers unpacked for overlayfs, by chain ID
/// ROOT/tmp/                    staging, on the same file system so a rename publishes atomically
/// ROOT/lock                    flock serializing index updates between processes
/// ```
///
/// Blobs are hashed as they are written and published only under their verified digest;
/// manifests and configs are checked again when read, layers through their diff ID when unpacked.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens the store at `root`, creating its directories on first use.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for dir in ["blobs/sha256", "layers", "tmp"] {
            let dir = root.join(dir);
            fs::create_dir_all(&dir).ctx("creating", &dir)?;
        }
        let store = Self { root };
        let layout = store.root.join("oci-layout");
        if !layout.exists() {
            store.write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every image in the store, by name.
    pub fn list(&self) -> Result<Vec<Image>> {
        let mut images = self
            .read_index()?
            .manifests()
            .iter()
            .map(|d| self.load(d))
            .collect::<Result<Vec<_>>>()?;
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
    }

    /// The image a reference names: by exact name, or by repository and digest for
    /// `name@sha256:…` references. [`Error::NotFound`] when absent.
    pub fn image(&self, reference: &ImageRef) -> Result<Image> {
        let index = self.read_index()?;
        match index.manifests().iter().find(|d| matches(d, reference)) {
            Some(d) => self.load(d),
            None => Err(Error::NotFound(reference.to_string())),
        }
    }

    /// Whether the store has an image for the reference.
    pub fn contains(&self, reference: &ImageRef) -> Result<bool> {
        Ok(self.read_index()?.manifests().iter().any(|d| matches(d, reference)))
    }

    /// Removes the images a reference names, then deletes the blobs and unpacked layers no other
    /// image uses. Returns what was removed; [`Error::NotFound`] when nothing matched.
    ///
    /// The caller must not remove an image that running containers use: their layers go too.
    pub fn remove(&self, reference: &ImageRef) -> Result<Vec<Image>> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let (dropped, kept): (Vec<_>, Vec<_>) = index.manifests().iter().cloned().partition(|d| matches(d, reference));
        if dropped.is_empty() {
            return Err(Error::NotFound(reference.to_string()));
        }
        let dropped = dropped.iter().map(|d| self.load(d)).collect::<Result<Vec<_>>>()?;
        index.set_manifests(kept);
        self.write_index(&index)?;
        self.collect_garbage(&dropped, &index)?;
        Ok(dropped)
    }

    /// Names `reference` as the image whose manifest is already stored under `manifest`,
    /// replacing whatever the name pointed to before.
    pub(crate) fn tag(&self, reference: &ImageRef, manifest: &Digest, repo_digest: Option<&Digest>) -> Result<Image> {
        let bytes = self.read_blob(manifest)?;
        let parsed: ImageManifest =
            serde_json::from_slice(&bytes).map_err(Error::json(format!("manifest {manifest}")))?;
        let media_type = parsed.media_type().clone().unwrap_or(MediaType::ImageManifest);
        if !MANIFEST_TYPES.contains(&media_type.as_ref()) {
            return Err(Error::UnsupportedMediaType(media_type.to_string()));
        }
        let name = reference.to_string();
        let mut annotations = HashMap::from([(REF_NAME.to_string(), name.clone())]);
        if let Some(d) = repo_digest {
            annotations.insert(REPO_DIGEST.to_string(), d.to_string());
        }
        let mut descriptor = Descriptor::new(media_type, bytes.len() as u64, manifest.clone());
        descriptor.set_annotations(Some(annotations));
        // Loading checks that the config parses and matches the layers; the blobs must be here
        // before the name is, so no reader ever finds a half-stored image.
        let image = self.load(&descriptor)?;
        for layer in &image.layers {
            if !self.has_blob(layer.blob.digest())? {
                return Err(Error::Invalid(format!(
                    "{name}: layer {} is missing",
                    layer.blob.digest()
                )));
            }
        }

        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let (replaced, mut kept): (Vec<_>, Vec<_>) = index
            .manifests()
            .iter()
            .cloned()
            .partition(|d| ref_name(d) == Some(&name));
        kept.push(descriptor);
        index.set_manifests(kept);
        self.write_index(&index)?;
        let replaced = replaced.iter().filter_map(|d| self.load(d).ok()).collect::<Vec<_>>();
        self.collect_garbage(&replaced, &index)?;
        Ok(image)
    }

    /// The path of a blob.
    pub(crate) fn blob_path(&self, digest: &Digest) -> Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(sha256_hex(digest)?))
    }

    /// Whether a blob is stored.
    pub(crate) fn has_blob(&self, digest: &Digest) -> Result<bool> {
        Ok(self.blob_path(digest)?.is_file())
    }

    /// Reads a (small) blob, verifying its content against its digest.
    pub(crate) fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let bytes = fs::read(&path).ctx("reading", &path)?;
        check_digest(&format!("blob {digest}"), digest, &sha256(&bytes))?;
        Ok(bytes)
    }

    /// Stores a blob, checking it against `expected` when given.
    pub(crate) fn write_blob(&self, bytes: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        let mut writer = self.blob_writer()?;
        writer.write_all(bytes).ctx("writing blob in", &self.root)?;
        writer.finish()?.commit(expected)
    }

    /// Starts writing a blob of not yet known digest.
    pub(crate) fn blob_writer(&self) -> Result<BlobWriter> {
        let dir = self.root.join("tmp");
        Ok(BlobWriter {
            file: NamedTempFile::new_in(&dir).ctx("creating a temporary file in", &dir)?,
            hasher: Hasher::default(),
            size: 0,
            blobs: self.root.join("blobs/sha256"),
        })
    }

    /// A fresh staging directory, on the store's file system.
    pub(crate) fn temp_dir(&self) -> Result<TempDir> {
        let dir = self.root.join("tmp");
        TempDir::new_in(&dir).ctx("creating a temporary directory in", &dir)
    }

    /// Where the layer with this chain ID is unpacked.
    pub(crate) fn layer_dir(&self, chain_id: &Digest) -> Result<PathBuf> {
        Ok(self.root.join("layers").join(sha256_hex(chain_id)?))
    }

    /// Reads the image a descriptor of index.json points to.
    fn load(&self, descriptor: &Descriptor) -> Result<Image> {
        let name = ref_name(descriptor)
            .ok_or_else(|| Error::Invalid(format!("{} has no name in index.json", descriptor.digest())))?
            .to_string();
        let manifest: ImageManifest = serde_json::from_slice(&self.read_blob(descriptor.digest())?)
            .map_err(Error::json(format!("manifest of {name}")))?;
        let config: ImageConfiguration = serde_json::from_slice(&self.read_blob(manifest.config().digest())?)
            .map_err(Error::json(format!("config of {name}")))?;
        let repo_digest = descriptor
            .annotations()
            .as_ref()
            .and_then(|a| a.get(REPO_DIGEST))
            .map(|d| parse_digest(d))
            .transpose()?;
        Image::new(
            name,
            descriptor.digest().clone(),
            descriptor.size(),
            repo_digest,
            &manifest,
            &config,
        )
    }

    /// Deletes the blobs and unpacked layers of `dropped` images that no image left in `index`
    /// uses. Only the dropped images' own content is considered, so blobs that a concurrent import
    /// or pull has stored but not yet named are left alone.
    fn collect_garbage(&self, dropped: &[Image], index: &ImageIndex) -> Result<()> {
        let mut blobs = HashSet::new();
        let mut chains = HashSet::new();
        for d in index.manifests() {
            match self.load(d) {
                Ok(image) => {
                    blobs.extend(image_blobs(&image));
                    chains.extend(image.layers.into_iter().map(|l| l.chain_id));
                }
                // Without knowing what a kept image uses, deleting anything could break it.
                Err(error) => {
                    tracing::warn!(%error, "not collecting image garbage");
                    return Ok(());
                }
            }
        }
        for image in dropped {
            for digest in image_blobs(image).filter(|d| !blobs.contains(d)) {
                let path = self.blob_path(&digest)?;
                ignore_missing(fs::remove_file(&path)).ctx("removing", &path)?;
            }
            for layer in image.layers.iter().filter(|l| !chains.contains(&l.chain_id)) {
                let dir = self.layer_dir(&layer.chain_id)?;
                ignore_missing(fs::remove_dir_all(&dir)).ctx("removing", &dir)?;
            }
        }
        Ok(())
    }

    fn read_index(&self) -> Result<ImageIndex> {
        let path = self.root.join("index.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(Error::json(path.display().to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ImageIndex::default()),
            Err(e) => Err(e).ctx("reading", &path),
        }
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let mut index = index.clone();
        index.set_media_type(Some(MediaType::ImageIndex));
        let bytes = serde_json::to_vec_pretty(&index).map_err(Error::json("index.json"))?;
        self.write_atomic(&self.root.join("index.json"), &bytes)
    }

    /// Replaces a file in one rename, so readers never see it half written.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = self.root.join("tmp");
        let mut file = NamedTempFile::new_in(&dir).ctx("creating a temporary file in", &dir)?;
        file.write_all(bytes).ctx("writing", file.path())?;
        file.as_file().sync_all().ctx("syncing", file.path())?;
        file.persist(path).map_err(|e| e.error).ctx("replacing", path)?;
        Ok(())
    }

    /// Takes the store's exclusive lock, released when the returned file is dropped.
    fn lock(&self) -> Result<File> {
        let path = self.root.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx("opening", &path)?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(io::Error::from)
            .ctx("locking", &path)?;
        Ok(file)
    }
}

/// A blob being written: the content goes to a temporary file and is hashed on the way.
pub(crate) struct BlobWriter {
    file: NamedTempFile,
    hasher: Hasher,
    size: u64,
    blobs: PathBuf,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Ends the content: the blob is staged under its digest but not yet in the store.
    pub(crate) fn finish(mut self) -> Result<StagedBlob> {
        self.file.flush().ctx("writing", self.file.path())?;
        self.file.as_file().sync_all().ctx("syncing", self.file.path())?;
        Ok(StagedBlob {
            digest: self.hasher.finish(),
            size: self.size,
            path: self.file.into_temp_path(),
            blobs: self.blobs,
        })
    }
}

/// A fully written blob waiting to be published, or dropped (and deleted) if it is not needed.
pub(crate) struct StagedBlob {
    digest: Digest,
    size: u64,
    path: TempPath,
    blobs: PathBuf,
}

impl StagedBlob {
    /// The digest of the content.
    pub(crate) fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The content's length.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Where the content is until committed.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Publishes the blob under its digest, after checking it is the `expected` one.
    pub(crate) fn commit(self, expected: Option<&Digest>) -> Result<Digest> {
        if let Some(expected) = expected {
            check_digest("blob", expected, &self.digest)?;
        }
        let dest = self.blobs.join(sha256_hex(&self.digest)?);
        // Same digest, same content: an existing copy is as good as ours.
        if !dest.exists() {
            self.path.persist(&dest).map_err(|e| e.error).ctx("storing", &dest)?;
        }
        Ok(self.digest)
    }
}

/// Fails with [`Error::DigestMismatch`] unless the digests are equal.
pub(crate) fn check_digest(what: &str, expected: &Digest, actual: &Digest) -> Result<()> {
    if expected == actual {
        return Ok(());
    }
    Err(Error::DigestMismatch {
        what: what.to_string(),
        expected: expected.to_string(),
        actual: actual.to_string(),
    })
}

/// The image's name in index.json.
fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations().as_ref()?.get(REF_NAME).map(String::as_str)
}

/// Whether an index.json entry is what `reference` names.
fn matches(d: &Descriptor, reference: &ImageRef) -> bool {
    let Some(name) = ref_name(d) else {
        return false;
    };
    if name == reference.to_string() {
        return true;
    }
    // `repo@sha256:…` finds an image of that repository by manifest or registry digest.
    let Some(digest) = reference.digest() else {
        return false;
    };
    let same_repo = ImageRef::parse(name).is_ok_and(|r| r.name() == reference.name());
    let repo_digest = d.annotations().as_ref().and_then(|a| a.get(REPO_DIGEST));
    same_repo && (d.digest().as_ref() == digest || repo_digest.is_some_and(|r| r == digest))
}

/// The digests of every blob an image consists of.
fn image_blobs(image: &Image) -> impl Iterator<Item = Digest> + '_ {
    [image.manifest_digest.clone(), image.id.clone()]
        .into_iter()
        .chain(image.layers.iter().map(|l| l.blob.digest().clone()))
}

/// Treats "already gone" as success, for deletions that may race or repeat.
fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_stored_under_their_verified_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let digest = store.write_blob(b"hello", Some(&sha256(b"hello"))).unwrap();
        assert_eq!(digest, sha256(b"hello"));
        assert_eq!(store.read_blob(&digest).unwrap(), b"hello");
        // Writing the same content again is a no-op, not an error.
        assert_eq!(store.write_blob(b"hello", None).unwrap(), digest);
    }

    #[test]
    fn content_not_matching_its_digest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let claimed = sha256(b"expected");
        let err = store.write_blob(b"tampered", Some(&claimed)).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(!store.has_blob(&claimed).unwrap());
        assert!(!store.has_blob(&sha256(b"tampered")).unwrap());
        // Nothing is left behind in staging either.
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);

        // A blob corrupted on disk is caught when read.
        let digest = store.write_blob(b"good", None).unwrap();
        fs::write(store.blob_path(&digest).unwrap(), b"bad").unwrap();
        assert!(matches!(store.read_blob(&digest), Err(Error::DigestMismatch { .. })));
    }

    #[test]
    fn unknown_images_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let busybox = ImageRef::parse("busybox").unwrap();
        assert!(store.list().unwrap().is_empty());
        assert!(!store.contains(&busybox).unwrap());
        assert!(matches!(store.image(&busybox), Err(Error::NotFound(_))));
        assert!(matches!(store.remove(&busybox), Err(Error::NotFound(_))));
    }
}
