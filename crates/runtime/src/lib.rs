//! kate's container runtime, image part: a local content store of OCI images, imports of OCI and
//! docker archives, pulls from registries, and layers unpacked for overlayfs.
//!
//! ```no_run
//! # async fn demo() -> kate_runtime::Result<()> {
//! use kate_runtime::{ImageRef, ImageStore, PullOptions, PullPolicy};
//!
//! let store = ImageStore::open("/var/lib/kate/images")?;
//! store.import("busybox.tar".as_ref())?;
//! let image = ImageRef::parse("busybox:1.35.0")?;
//! let found = store.ensure(&image, PullPolicy::IfNotPresent, &PullOptions::default()).await?;
//! println!("{} runs {:?}", found.name, found.config.cmd);
//! let lowerdirs = store.rootfs_layers(&image)?; // topmost first, for overlayfs
//! # let _ = lowerdirs;
//! # Ok(())
//! # }
//! ```
//!
//! [`ImageStore`] describes the store's directories and how content is verified.

#![warn(missing_docs)]

mod digest;
mod error;
mod image;
mod import;
mod pull;
mod reference;
mod store;
mod unpack;

pub use digest::{parse_digest, sha256};
pub use error::{Error, Result};
pub use image::{Image, ImageConfig, Layer, platform};
pub use oci_spec::image::{Descriptor, Digest};
pub use pull::{Credentials, PullOptions, PullPolicy};
pub use reference::ImageRef;
pub use store::ImageStore;
