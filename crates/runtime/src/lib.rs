//! kate's container runtime, CRI-like and Kubernetes-agnostic (the kubelet translates pods into
//! its configurations):
//!
//! - images: a local content store of OCI images, imports of OCI and docker archives, pulls from
//!   registries, and layers unpacked for overlayfs ([`ImageStore`]);
//! - pod sandboxes: pinned network, IPC and UTS namespaces, the pod network through CNI plugins,
//!   and the pod's /etc/hosts, /etc/resolv.conf and /etc/hostname ([`Runtime::run_sandbox`]);
//! - containers: an overlay root file system, an OCI runtime spec, run by `runc` under a detached
//!   shim that logs in the CRI format and records the exit ([`Runtime::create_container`]).
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
//! [`ImageStore`] describes the store's directories and how content is verified, [`Runtime`]
//! those of sandboxes and containers.
//!
//! ```no_run
//! # async fn demo(store: kate_runtime::ImageStore) -> kate_runtime::Result<()> {
//! use std::time::Duration;
//! use kate_runtime::{ContainerConfig, ImageRef, Runtime, RuntimeOptions, SandboxConfig};
//!
//! let runtime = Runtime::new(RuntimeOptions::new("/var/lib/kate/runtime"), store)?;
//! let sandbox = runtime
//!     .run_sandbox(&SandboxConfig { id: "pod1".into(), hostname: "web".into(), ..Default::default() })
//!     .await?;
//! let mut cfg = ContainerConfig::new("c1", ImageRef::parse("busybox")?, "/var/log/pods/c1.log");
//! cfg.args = vec!["httpd".into(), "-f".into(), "-p".into(), "8080".into()];
//! runtime.create_container(&sandbox, &cfg).await?;
//! runtime.start_container("c1").await?;
//! println!("{:?} at {:?}", runtime.container_status("c1")?.state, sandbox.ip);
//! runtime.stop_container("c1", Duration::from_secs(30)).await?;
//! runtime.remove_sandbox("pod1").await?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod attach;
mod cgroup;
mod cni;
mod container;
mod crilog;
mod digest;
mod error;
mod image;
mod import;
mod namespace;
mod pull;
mod reference;
mod rootfs;
mod runc;
mod runtime;
mod sandbox;
mod shim;
mod spec;
mod state;
mod store;
mod unpack;
mod user;

pub use attach::{AttachInput, AttachOutput, Output, attach_stream};
pub use cgroup::CgroupMode;
pub use cni::CniConfig;
pub use container::{Container, ContainerConfig, ContainerState, ContainerStatus, Mount, Resources, UserSpec};
pub use digest::{parse_digest, sha256};
pub use error::{Error, Result};
pub use image::{Image, ImageConfig, Layer, platform};
pub use jiff::Timestamp;
pub use oci_spec::image::{Descriptor, Digest};
pub use pull::{Credentials, PullOptions, PullPolicy};
pub use reference::ImageRef;
pub use runtime::{Runtime, RuntimeOptions};
pub use sandbox::{DnsConfig, PortMapping, Protocol, Sandbox, SandboxConfig};
pub use shim::shim_main;
pub use store::ImageStore;
