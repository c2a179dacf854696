//! Layers unpacked into directories, once, ready to be overlayfs lower directories.
//!
//! Each layer is unpacked on its own (not on top of its parents) into `ROOT/layers/<chain ID>`,
//! with OCI whiteouts turned into overlayfs's own: `.wh.NAME` becomes a 0/0 character device NAME,
//! and `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory. Overlayfs then merges the
//! directories exactly as the layers stack. Creating device nodes and trusted xattrs and keeping
//! file owners needs root, as the kubelet has.

use std::fs::{self, File, Permissions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{PermissionsExt, lchown};
use std::path::{Component, Path, PathBuf};

use flate2::read::MultiGzDecoder;
use rustix::fs::{CWD, FileType, Mode, XattrFlags, lsetxattr, makedev, mknodat};

use crate::digest::Hasher;
use crate::error::{Error, IoContext, Result};
use crate::image::Layer;
use crate::reference::ImageRef;
use crate::store::{ImageStore, check_digest};

/// The marker that makes its directory hide everything below it.
const OPAQUE: &str = ".wh..wh..opq";
/// The prefix that turns an entry into the deletion of the named file.
const WHITEOUT_PREFIX: &str = ".wh.";

impl ImageStore {
    /// Unpacks the image's layers (each only once, shared between images) and returns their
    /// directories in overlayfs `lowerdir` order: topmost layer first.
    pub fn rootfs_layers(&self, reference: &ImageRef) -> Result<Vec<PathBuf>> {
        let image = self.image(reference)?;
        let mut dirs = image
            .layers
            .iter()
            .map(|layer| self.unpack_layer(layer))
            .collect::<Result<Vec<_>>>()?;
        dirs.reverse();
        Ok(dirs)
    }

    /// Unpacks one layer unless already done; a directory appears under its final name only once
    /// complete, so a crash or a concurrent unpacker never leaves a partial layer behind it.
    fn unpack_layer(&self, layer: &Layer) -> Result<PathBuf> {
        let dir = self.layer_dir(&layer.chain_id)?;
        if dir.is_dir() {
            return Ok(dir);
        }
        let staging = self.temp_dir()?;
        // The layer's top directory becomes the container's `/`, which must not stay 0700.
        fs::set_permissions(staging.path(), Permissions::from_mode(0o755))
            .ctx("setting permissions of", staging.path())?;
        let blob = self.blob_path(layer.blob.digest())?;
        let (reader, _) = open_decompressed(&blob)?;
        let mut reader = HashingReader {
            inner: reader,
            hasher: Hasher::default(),
        };
        unpack_tar(&mut reader, staging.path()).ctx("unpacking a layer into", staging.path())?;
        // The tar's end may be followed by padding that is part of the diff ID.
        io::copy(&mut reader, &mut io::sink()).ctx("reading", &blob)?;
        let what = format!("uncompressed layer {}", layer.blob.digest());
        check_digest(&what, &layer.diff_id, &reader.hasher.finish())?;
        match fs::rename(staging.path(), &dir) {
            // The directory lives on under its final name: TempDir must not delete it.
            Ok(()) => drop(staging.keep()),
            // Another unpacker finished first; its copy is identical and ours is dropped.
            Err(_) if dir.is_dir() => {}
            Err(e) => return Err(e).ctx("renaming into", &dir),
        }
        Ok(dir)
    }
}

/// Opens a file that may be gzip-compressed (by its magic number, which is more reliable than
/// media types); returns the decompressed content and whether it was compressed.
pub(crate) fn open_decompressed(path: &Path) -> Result<(Box<dyn Read>, bool)> {
    let mut reader = BufReader::new(File::open(path).ctx("opening", path)?);
    let head = reader.fill_buf().ctx("reading", path)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((Box::new(MultiGzDecoder::new(reader)), true))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(Error::UnsupportedMediaType(format!(
            "zstd compression of {}",
            path.display()
        )))
    } else {
        Ok((Box::new(reader), false))
    }
}

/// Hashes what is read through it, to check a layer's diff ID while unpacking it.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks a layer tar into `dest`, converting whiteouts to overlayfs's format.
fn unpack_tar(reader: impl Read, dest: &Path) -> io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let Some((parent, name)) = split(&path) else {
            // The root itself, or a path climbing out of the layer: nothing to create.
            continue;
        };
        let kind = entry.header().entry_type();
        if name == OPAQUE {
            let dir = make_dirs(dest, &parent)?;
            lsetxattr(&dir, "trusted.overlay.opaque", b"y", XattrFlags::empty())?;
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let target = make_dirs(dest, &parent)?.join(hidden);
            remove_existing(&target)?;
            mknodat(CWD, &target, FileType::CharacterDevice, Mode::empty(), makedev(0, 0))?;
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            // The tar crate would write these as empty regular files.
            let target = make_dirs(dest, &parent)?.join(&name);
            remove_existing(&target)?;
            let header = entry.header();
            let file_type = if kind.is_fifo() {
                FileType::Fifo
            } else if kind.is_block_special() {
                FileType::BlockDevice
            } else {
                FileType::CharacterDevice
            };
            let dev = makedev(header.device_major()?.unwrap_or(0), header.device_minor()?.unwrap_or(0));
            mknodat(CWD, &target, file_type, Mode::empty(), dev)?;
            lchown(&target, Some(header.uid()? as u32), Some(header.gid()? as u32))?;
            fs::set_permissions(&target, Permissions::from_mode(header.mode()? & 0o7777))?;
        } else {
            entry.unpack_in(dest)?;
        }
    }
    Ok(())
}

/// Splits an entry's path into its parent's components and its file name, dropping `.` and
/// leading `/`; `None` for the root or for paths with `..`.
fn split(path: &Path) -> Option<(Vec<String>, String)> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    let name = parts.pop()?;
    Some((parts, name))
}

/// Creates the directories of `parts` under `dest` one at a time, refusing to pass through a
/// symlink: an earlier entry could point one outside the layer, and a whiteout must not create
/// a device node there.
fn make_dirs(dest: &Path, parts: &[String]) -> io::Result<PathBuf> {
    let mut dir = dest.to_path_buf();
    for part in parts {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::other(format!("{} is not a directory", dir.display())));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&dir)?;
                fs::set_permissions(&dir, Permissions::from_mode(0o755))?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(dir)
}

/// Removes whatever is at `path` (without following a symlink there).
fn remove_existing(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use super::*;

    fn require_root() {
        let uid = fs::metadata("/proc/self").map(|m| m.uid());
        assert_eq!(
            uid.ok(),
            Some(0),
            "this test creates device nodes and trusted xattrs: run it as root"
        );
    }

    /// A tar with the given (path, type, content, link target) entries.
    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            header.set_size(data.len() as u64);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            if let Some(link) = link {
                header.set_link_name(link).unwrap();
            }
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn entries_are_split_safely() {
        let parts = |p: &str| split(Path::new(p));
        assert_eq!(
            parts("./a/b/.wh.c"),
            Some((vec!["a".into(), "b".into()], ".wh.c".into()))
        );
        assert_eq!(parts("/etc/passwd"), Some((vec!["etc".into()], "passwd".into())));
        assert_eq!(parts("./"), None);
        assert_eq!(parts("a/../../etc/shadow"), None);
    }

    #[test]
    fn whiteouts_become_overlayfs_whiteouts() {
        require_root();
        use tar::EntryType::{Directory, Regular};
        let layer = tar_of(&[
            ("etc/", Directory, b"", None),
            ("etc/.wh..wh..opq", Regular, b"", None),
            ("etc/hostname", Regular, b"kate\n", None),
            (".wh.gone", Regular, b"", None),
            ("deep/dir/.wh.file", Regular, b"", None),
        ]);
        let dest = tempfile::tempdir().unwrap();
        unpack_tar(&layer[..], dest.path()).unwrap();

        let mut value = [0u8; 8];
        let n = rustix::fs::lgetxattr(dest.path().join("etc"), "trusted.overlay.opaque", &mut value).unwrap();
        assert_eq!(&value[..n], b"y");
        assert_eq!(fs::read(dest.path().join("etc/hostname")).unwrap(), b"kate\n");
        for whiteout in ["gone", "deep/dir/file"] {
            let meta = fs::symlink_metadata(dest.path().join(whiteout)).unwrap();
            assert!(meta.file_type().is_char_device(), "{whiteout} is not a whiteout");
            assert_eq!(meta.rdev(), 0);
        }
        assert!(!dest.path().join(".wh.gone").exists());
    }

    #[test]
    fn whiteouts_do_not_follow_symlinks_out_of_the_layer() {
        require_root();
        let outside = tempfile::tempdir().unwrap();
        let layer = tar_of(&[
            (
                "escape",
                tar::EntryType::Symlink,
                b"",
                Some(outside.path().to_str().unwrap()),
            ),
            ("escape/.wh.victim", tar::EntryType::Regular, b"", None),
        ]);
        let dest = tempfile::tempdir().unwrap();
        assert!(unpack_tar(&layer[..], dest.path()).is_err());
        assert!(!outside.path().join("victim").exists());
    }
}
