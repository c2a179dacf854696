//! `kate`: a Kubernetes-compatible container orchestrator in one binary.

mod agent;
mod cloud;
mod image;
mod join;
mod node;
mod proxy;
mod scheduling;
mod server;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's allocator: the API server allocates and frees many small JSON
/// values per request, and glibc's arenas spent a sixth of the server's time doing that under
/// load. Its `no_thp` build does not ask the kernel for transparent huge pages on its arenas,
/// which would back each touched region with 2 MiB pages and add 9 MiB to the idle RSS; the
/// process and the containers it starts keep the system's THP setting.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command line.
#[derive(Parser)]
#[command(name = "kate", version, about = "A lightweight Kubernetes in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (API server on an embedded store).
    Server(server::ServerArgs),
    /// Join a cluster as a node: run a kubelet and service proxy for this machine.
    Agent(node::JoinArgs),
    /// Manage join tokens (`kate token create`).
    Token(node::TokenArgs),
    /// Run the scheduler against a cluster (`kate server` runs one already).
    Scheduler(scheduling::SchedulerArgs),
    /// Register simulated nodes and play their kubelets, to test at scale on one machine.
    Sim(scheduling::SimArgs),
    /// Manage the node's local images: import, ls, rm, pull.
    Image(image::ImageArgs),
    /// Stop and remove every container and pod sandbox of this machine's node, and its pod
    /// bridge (the pods stay in the API; a running kubelet would start them again).
    Reset(agent::ResetArgs),
    /// Print the admin kubeconfig written by `kate server`.
    Kubeconfig {
        /// The server's data directory.
        #[arg(long, env = "KATE_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Supervise one container (started by the runtime, not by hand): `shim start|run DIR`.
    #[command(hide = true)]
    Shim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// Where state lives when `--data-dir` is not given: `/var/lib/kate` for root, else a
/// per-user directory.
pub fn default_data_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/kate");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(xdg).join("kate");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/kate"),
        None => PathBuf::from(".kate"),
    }
}

/// Waits for SIGINT or SIGTERM, the signals of a clean stop.
pub async fn stop_requested() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The data directory given, or the default one, created if missing.
pub fn data_dir_or_default(data_dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let data_dir = data_dir.unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", data_dir.display()))?;
    Ok(data_dir)
}

/// The multi-threaded async runtime the long-running commands run on.
pub fn async_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the runtime: {e}"))
}

/// Logs to stderr at the level `KATE_LOG` asks for (default: warnings).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("KATE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
}

/// Whether we run as root, read from /proc so no unsafe libc call is needed.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => server::run(args),
        Command::Scheduler(args) => scheduling::run_scheduler(args),
        Command::Sim(args) => scheduling::run_sim(args),
        Command::Image(args) => image::run(args),
        Command::Agent(args) => node::agent(args),
        Command::Token(args) => node::token(args),
        Command::Shim { args } => std::process::exit(kate_runtime::shim_main(&args)),
        Command::Reset(args) => agent::reset(args),
        Command::Kubeconfig { data_dir } => {
            let path = data_dir.unwrap_or_else(default_data_dir).join("kubeconfig.yaml");
            let text = std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!(
                    "reading {}: {e} (has `kate server` run with this data dir?)",
                    path.display()
                )
            })?;
            print!("{text}");
            Ok(())
        }
    }
}
