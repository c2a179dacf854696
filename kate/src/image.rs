//! `kate image …`: the node's local images (import, list, remove, pull).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use kate_runtime::{Credentials, ImageRef, ImageStore, PullOptions};

/// Arguments of `kate image`.
#[derive(Args)]
pub struct ImageArgs {
    /// The data directory; images live in DATA_DIR/images.
    #[arg(long, env = "KATE_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Import the images of an OCI-layout or `docker save` archive (tar, or tar.gz).
    Import {
        /// The archive.
        file: PathBuf,
    },
    /// List the images.
    #[command(visible_alias = "list")]
    Ls,
    /// Remove images, and the layers no other image uses.
    #[command(visible_alias = "remove")]
    Rm {
        /// Image names, e.g. `busybox:1.35.0` (normalized like `docker.io/library/busybox:1.35.0`).
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Pull an image from a registry.
    Pull {
        /// The image, e.g. `127.0.0.1:5000/team/app:v1`.
        reference: String,
        /// A registry (host[:port]) to reach over plain HTTP; repeatable.
        #[arg(long = "insecure-registry", value_name = "HOST")]
        insecure_registries: Vec<String>,
        /// Credentials for the registry.
        #[arg(long, env = "KATE_REGISTRY_CREDS", value_name = "USER:PASSWORD")]
        creds: Option<String>,
    },
}

/// Runs `kate image`.
pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let root = args.data_dir.unwrap_or_else(crate::default_data_dir).join("images");
    let store = ImageStore::open(&root).with_context(|| format!("opening {}", root.display()))?;
    match args.command {
        ImageCommand::Import { file } => {
            for image in store.import(&file)? {
                println!("imported {} ({})", image.name, image.manifest_digest);
            }
        }
        ImageCommand::Ls => {
            let rows: Vec<[String; 3]> = store
                .list()?
                .into_iter()
                .map(|i| [i.name, short_id(i.id.as_ref()), human_size(i.size)])
                .collect();
            let width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0).max(5);
            println!("{:width$}  {:12}  SIZE", "IMAGE", "IMAGE ID");
            for [name, id, size] in rows {
                println!("{name:width$}  {id:12}  {size}");
            }
        }
        ImageCommand::Rm { names } => {
            for name in names {
                for image in store.remove(&ImageRef::parse(&name)?)? {
                    println!("removed {}", image.name);
                }
            }
        }
        ImageCommand::Pull {
            reference,
            insecure_registries,
            creds,
        } => {
            let credentials = creds.map(|c| match c.split_once(':') {
                Some((user, password)) => Credentials {
                    username: user.into(),
                    password: password.into(),
                },
                None => Credentials {
                    username: c,
                    password: String::new(),
                },
            });
            let options = PullOptions {
                insecure_registries,
                credentials,
            };
            let reference = ImageRef::parse(&reference)?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let image = runtime.block_on(store.pull(&reference, &options))?;
            println!("pulled {} ({})", image.name, image.manifest_digest);
        }
    }
    Ok(())
}

/// The first 12 hex digits of a digest, as `crictl images` shows image IDs.
fn short_id(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    hex.chars().take(12).collect()
}

/// Sizes in decimal units, as container tools print them.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.3}{}", UNITS[unit])
    }
}
