//! `kate-bench`: the benchmark harness of kate.
//!
//! It starts its own `kate server` processes in throwaway data directories, talks to them over
//! HTTPS on 127.0.0.1 with the admin client certificate from the generated kubeconfig, and
//! measures:
//!
//! 1. start → ready time (median of several fresh starts);
//! 2. idle RSS right after ready;
//! 3. ConfigMap creates per second with concurrent keep-alive clients, with p50/p99 latency;
//! 4. GET latency of one ConfigMap and LIST latency of a namespace of ConfigMaps, as JSON and as
//!    a server-side Table;
//! 5. watch latency from create to event, fanned out to many concurrent watchers;
//! 6. RSS of a fresh server once many ConfigMaps exist;
//! 7. in another fresh server, the time from creating a Deployment to all its pods existing
//!    (the Deployment and ReplicaSet controllers at work), and pods created per second;
//! 8. pod startup on a real node (needs root): busybox pods created at a steady pace, timed from
//!    create to Running as seen by a watch, with the server's and the container shims' memory;
//! 9. Services on a real node (needs root): from an EndpointSlice write to its ClusterIP
//!    answering with many Services, HTTP requests/s through a ClusterIP against the pod's own
//!    IP, and cluster DNS queries/s and latency;
//! 10. the scheduler, each workload in a fresh server with simulated nodes (as upstream's
//!     scheduler_perf SchedulingBasic, TopologySpreading and SchedulingPodAntiAffinity): pods
//!     placed per second from creation to a persisted binding.
//!
//! Results are printed as a table and optionally written as JSON (`--out`). Every server is
//! killed when the run ends, fails or is interrupted.

mod client;
mod measure;
mod pods;
mod report;
mod scheduling;
mod server;
mod services;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use hyper::{Method, StatusCode};

use crate::client::{Connector, Credentials};
use crate::report::{Creates, Latency, Loaded, Reads, Report, Rollout};
use crate::server::Server;

/// Command-line options; the defaults are the reference benchmark.
#[derive(Parser, Debug)]
#[command(name = "kate-bench", about = "Benchmark a kate server")]
struct Args {
    /// The kate binary to benchmark.
    #[arg(long, default_value = "./target/release/kate")]
    kate: PathBuf,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Directory in which the servers' temporary data directories are created.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    data_root: PathBuf,
    /// Fresh starts for the start → ready median.
    #[arg(long, default_value_t = 5)]
    starts: usize,
    /// ConfigMaps created in the throughput test.
    #[arg(long, default_value_t = 20_000)]
    creates: usize,
    /// Concurrent keep-alive connections in the throughput test.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Timed GETs of one ConfigMap.
    #[arg(long, default_value_t = 2_000)]
    gets: usize,
    /// ConfigMaps in the listed namespace.
    #[arg(long, default_value_t = 1_000)]
    list_objects: usize,
    /// Timed LISTs per format (JSON, Table).
    #[arg(long, default_value_t = 100)]
    lists: usize,
    /// Concurrent watchers.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// ConfigMaps created, one at a time, while the watchers watch.
    #[arg(long, default_value_t = 200)]
    watch_events: usize,
    /// Pause between those creates, in milliseconds.
    #[arg(long, default_value_t = 10)]
    watch_pause_ms: u64,
    /// ConfigMaps created in a fresh server before reading its RSS.
    #[arg(long, default_value_t = 10_000)]
    rss_objects: usize,
    /// Replicas of the Deployment whose pods the controllers create in a fresh server.
    #[arg(long, default_value_t = 1_000)]
    deployment_replicas: usize,
    /// Pods started on a real node in the pod startup test (0 skips it; it needs root).
    #[arg(long, default_value_t = 30)]
    startup_pods: usize,
    /// Pause between the pod startup test's creates, in milliseconds.
    #[arg(long, default_value_t = 200)]
    startup_gap_ms: u64,
    /// The image archive the pod startup test imports (scripts/build-busybox-image.sh).
    #[arg(long, default_value = "target/images/busybox.tar")]
    image: PathBuf,
    /// Services in the cluster in the services test (0 skips it; it needs root).
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Concurrent HTTP connections comparing a ClusterIP with the pod's IP.
    #[arg(long, default_value_t = 8)]
    service_clients: usize,
    /// Seconds each of those two targets is loaded, in alternating one-second turns.
    #[arg(long, default_value_t = 5)]
    service_seconds: u64,
    /// Cluster DNS queries timed.
    #[arg(long, default_value_t = 2000)]
    dns_queries: usize,
    /// Simulated nodes in the scheduler tests.
    #[arg(long, default_value_t = 5_000)]
    sched_nodes: usize,
    /// Pods placed before the scheduler is timed.
    #[arg(long, default_value_t = 1_000)]
    sched_placed: usize,
    /// Pods timed in the basic and topology spread scheduler tests.
    #[arg(long, default_value_t = 10_000)]
    sched_pods: usize,
    /// Pods timed in the anti-affinity test (placed + these must fit one per node, with room
    /// to spare should some nodes miss heartbeats under load).
    #[arg(long, default_value_t = 3_000)]
    sched_anti_affinity_pods: usize,
    /// Concurrent clients creating pods in the scheduler tests.
    #[arg(long, default_value_t = 16)]
    sched_clients: usize,
    /// Which scheduler tests to run: basic, started (basic with pods started by the simulated
    /// kubelet), spread, anti-affinity.
    #[arg(long, value_delimiter = ',', default_value = "basic,started,spread,anti-affinity")]
    sched_tests: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let report = runtime.block_on(async {
        tokio::select! {
            report = run(&args) => report,
            // Dropping `run` drops (and so kills) any server it started.
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    })?;
    report.print_table();
    if let Some(out) = &args.out {
        report.write_json(out)?;
        eprintln!("kate-bench: wrote {}", out.display());
    }
    Ok(())
}

/// Prints a progress line on stderr.
fn progress(msg: &str) {
    eprintln!("kate-bench: {msg}");
}

/// Runs every measurement in order.
async fn run(args: &Args) -> Result<Report> {
    ensure!(
        args.kate.is_file(),
        "{} is missing: build it with `cargo build --release -p kate`",
        args.kate.display()
    );
    ensure!(
        args.clients > 0 && args.watchers > 0,
        "--clients and --watchers must be positive"
    );
    ensure!(args.list_objects > 0, "--list-objects must be positive");
    ensure!(args.deployment_replicas > 0, "--deployment-replicas must be positive");

    progress(&format!("{} fresh starts", args.starts));
    let startup = measure::startup(&args.kate, &args.data_root, args.starts)?;

    progress("starting the server for the load tests");
    let mut server = Server::start(&args.kate, &args.data_root)?;
    let idle_rss_kib = server.rss_kib()?;
    let creds = Credentials::from_kubeconfig(&server.kubeconfig())?;
    let connector = Connector::new(&creds, server.port)?;
    let with_log =
        |server: &Server, phase: &str| format!("{phase} failed; the end of kate's log:\n{}", server.log_tail());

    progress(&format!(
        "creating {} ConfigMaps with {} clients",
        args.creates, args.clients
    ));
    let (elapsed, mut latencies) = measure::create_many(&connector, "default", "bench-", args.creates, args.clients)
        .await
        .with_context(|| with_log(&server, "the create test"))?;
    let creates = Creates {
        count: args.creates,
        clients: args.clients,
        seconds: elapsed.as_secs_f64(),
        per_second: args.creates as f64 / elapsed.as_secs_f64().max(1e-9),
        latency: Latency::of(&mut latencies),
    };
    server.check_alive()?;

    progress(&format!("timing GET and LIST of {} ConfigMaps", args.list_objects));
    let reads = reads(args, &connector)
        .await
        .with_context(|| with_log(&server, "the read test"))?;
    server.check_alive()?;

    progress(&format!(
        "timing {} watchers over {} creates",
        args.watchers, args.watch_events
    ));
    let watch = measure::watch_latency(
        &connector,
        "bench-watch",
        args.watchers,
        args.watch_events,
        Duration::from_millis(args.watch_pause_ms),
    )
    .await
    .with_context(|| with_log(&server, "the watch test"))?;
    server.check_alive()?;
    let final_rss_kib = server.rss_kib()?;
    let final_peak_rss_kib = server.peak_rss_kib()?;
    drop(server);

    progress(&format!(
        "creating {} ConfigMaps in a fresh server for its RSS",
        args.rss_objects
    ));
    let loaded = loaded(args).await?;

    progress(&format!(
        "timing a Deployment of {} pods in a fresh server",
        args.deployment_replicas
    ));
    let rollout = rollout(args).await?;

    let pod_startup = if args.startup_pods > 0 {
        progress(&format!("starting {} pods on a real node", args.startup_pods));
        let gap = Duration::from_millis(args.startup_gap_ms);
        Some(pods::startup(&args.kate, &args.data_root, &args.image, args.startup_pods, gap).await?)
    } else {
        None
    };

    let services = if args.services > 0 {
        progress(&format!("services on a real node ({} Services)", args.services));
        let sizes = services::Sizes {
            services: args.services,
            clients: args.service_clients,
            seconds: args.service_seconds,
            dns_queries: args.dns_queries,
        };
        Some(services::measure(&args.kate, &args.data_root, &args.image, sizes).await?)
    } else {
        None
    };

    let mut scheduling = Vec::new();
    for (test, workload, kubelet) in [
        ("basic", scheduling::Workload::Basic, false),
        ("started", scheduling::Workload::Basic, true),
        ("spread", scheduling::Workload::TopologySpread, false),
        ("anti-affinity", scheduling::Workload::AntiAffinity, false),
    ] {
        if !args.sched_tests.iter().any(|t| t == test) {
            continue;
        }
        let pods = match workload {
            scheduling::Workload::AntiAffinity => args.sched_anti_affinity_pods,
            _ => args.sched_pods,
        };
        let sizes = scheduling::Sizes {
            kubelet,
            nodes: args.sched_nodes,
            placed: args.sched_placed,
            pods,
            clients: args.sched_clients,
        };
        progress(&format!(
            "scheduling ({}{}): {} nodes, {} placed, then {pods} pods",
            workload.name(),
            if kubelet { ", pods started" } else { "" },
            sizes.nodes,
            sizes.placed
        ));
        scheduling.push(scheduling::measure(&args.kate, &args.data_root, workload, sizes).await?);
    }

    Ok(Report {
        kate: args.kate.display().to_string(),
        data_root: args.data_root.display().to_string(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        startup,
        idle_rss_kib,
        creates,
        reads,
        watch,
        final_rss_kib,
        final_peak_rss_kib,
        final_objects: args.creates + 1 + args.list_objects + args.watch_events,
        loaded,
        rollout,
        pod_startup,
        services,
        scheduling,
    })
}

/// GET latency of one ConfigMap, then LIST latency of a namespace of `--list-objects`.
async fn reads(args: &Args, connector: &Connector) -> Result<Reads> {
    let mut conn = connector.connect().await?;
    let get_path = format!("{}/bench-get", measure::configmaps_path("default"));
    conn.expect(
        StatusCode::CREATED,
        Method::POST,
        &measure::configmaps_path("default"),
        None,
        Some(measure::configmap("bench-get")),
    )
    .await?;
    let get = measure::get_latency(&mut conn, &get_path, args.gets).await?;

    let ns = "bench-list";
    measure::create_namespace(&mut conn, ns).await?;
    measure::create_many(connector, ns, "list-", args.list_objects, args.clients).await?;
    let path = measure::configmaps_path(ns);
    let (list_json, list_json_bytes) =
        measure::list_latency(&mut conn, &path, None, args.lists, args.list_objects).await?;
    let (list_table, list_table_bytes) = measure::list_latency(
        &mut conn,
        &path,
        Some(measure::TABLE_ACCEPT),
        args.lists,
        args.list_objects,
    )
    .await?;
    Ok(Reads {
        get,
        list_objects: args.list_objects,
        list_json,
        list_json_bytes,
        list_table,
        list_table_bytes,
    })
}

/// RSS of a fresh server after `--rss-objects` ConfigMaps were created in `bench-rss`.
async fn loaded(args: &Args) -> Result<Loaded> {
    let mut server = Server::start(&args.kate, &args.data_root)?;
    let creds = Credentials::from_kubeconfig(&server.kubeconfig())?;
    let connector = Connector::new(&creds, server.port)?;
    let fill = async {
        let mut conn = connector.connect().await?;
        measure::create_namespace(&mut conn, "bench-rss").await?;
        measure::create_many(&connector, "bench-rss", "rss-", args.rss_objects, args.clients).await
    };
    fill.await
        .with_context(|| format!("the RSS test failed; the end of kate's log:\n{}", server.log_tail()))?;
    server.check_alive()?;
    Ok(Loaded {
        objects: args.rss_objects,
        rss_kib: server.rss_kib()?,
        peak_rss_kib: server.peak_rss_kib()?,
    })
}

/// In a fresh server, the time for the controllers to create a Deployment's pods.
async fn rollout(args: &Args) -> Result<Rollout> {
    let mut server = Server::start(&args.kate, &args.data_root)?;
    let creds = Credentials::from_kubeconfig(&server.kubeconfig())?;
    let connector = Connector::new(&creds, server.port)?;
    let rollout = measure::deployment_rollout(&connector, "bench-deploy", args.deployment_replicas)
        .await
        .with_context(|| {
            format!(
                "the Deployment test failed; the end of kate's log:\n{}",
                server.log_tail()
            )
        })?;
    server.check_alive()?;
    Ok(rollout)
}
