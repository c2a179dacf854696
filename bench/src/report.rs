//! The results of a bench run: latency summaries, the human-readable table and the JSON file.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

/// Summary of a set of latencies, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// How many samples.
    pub samples: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

impl Latency {
    /// Summarises `samples` (sorting them in place).
    pub fn of(samples: &mut [Duration]) -> Latency {
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let total: Duration = samples.iter().sum();
        Latency {
            samples: samples.len(),
            p50_ms: percentile(samples, 0.50).map_or(0.0, ms),
            p99_ms: percentile(samples, 0.99).map_or(0.0, ms),
            mean_ms: if samples.is_empty() {
                0.0
            } else {
                ms(total) / samples.len() as f64
            },
            max_ms: samples.last().copied().map_or(0.0, ms),
        }
    }

    /// `p50 / p99` for the table.
    fn cell(&self) -> String {
        format!("{} / {}", fmt_ms(self.p50_ms), fmt_ms(self.p99_ms))
    }
}

/// The nearest-rank percentile `q` (0..=1) of sorted samples.
pub fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Start → ready times of fresh servers.
#[derive(Debug, Serialize)]
pub struct Startup {
    /// Each run, in milliseconds, in the order they ran.
    pub runs_ms: Vec<f64>,
    /// The median run.
    pub median_ms: f64,
}

/// The ConfigMap create throughput test.
#[derive(Debug, Serialize)]
pub struct Creates {
    /// Total creates.
    pub count: usize,
    /// Concurrent keep-alive connections.
    pub clients: usize,
    /// Wall-clock time for all of them.
    pub seconds: f64,
    /// `count / seconds`.
    pub per_second: f64,
    /// Latency of one POST, from send to the last byte of the 201.
    pub latency: Latency,
}

/// GET and LIST latencies.
#[derive(Debug, Serialize)]
pub struct Reads {
    /// GET of one ConfigMap.
    pub get: Latency,
    /// Objects in the listed namespace.
    pub list_objects: usize,
    /// LIST as plain JSON.
    pub list_json: Latency,
    /// Size of one plain JSON LIST response.
    pub list_json_bytes: usize,
    /// LIST as a server-side Table.
    pub list_table: Latency,
    /// Size of one Table LIST response.
    pub list_table_bytes: usize,
}

/// The watch fan-out latency test.
#[derive(Debug, Serialize)]
pub struct Watch {
    /// Concurrent watch connections.
    pub watchers: usize,
    /// ConfigMaps created while they watched.
    pub events: usize,
    /// Pause between creates.
    pub pause_ms: u64,
    /// Watcher × event pairs that arrived.
    pub received: usize,
    /// Watcher × event pairs that never arrived before the deadline.
    pub missing: usize,
    /// Receive time minus the time just before the create was sent.
    pub latency: Latency,
    /// Creates whose own answer took 5 ms or more: an event can be no earlier than its write's
    /// fsync, so these show when the disk, not the fan-out, made the slowest events.
    pub slow_creates: usize,
}

/// Memory with many objects stored.
#[derive(Debug, Serialize)]
pub struct Loaded {
    /// ConfigMaps created in a fresh server before reading its RSS.
    pub objects: usize,
    /// `VmRSS` after creating them.
    pub rss_kib: u64,
    /// `VmHWM` (peak RSS) at that point.
    pub peak_rss_kib: u64,
}

/// The Deployment test: how fast the controllers create a Deployment's pods.
#[derive(Debug, Serialize)]
pub struct Rollout {
    /// Pods the Deployment asks for.
    pub replicas: usize,
    /// From just before the create to the last pod's ADDED event.
    pub seconds: f64,
    /// `replicas / seconds`.
    pub per_second: f64,
    /// From just before the create to the first pod's ADDED event.
    pub first_pod_ms: f64,
}

/// Pod startup on a real node (the kubelet running busybox containers).
#[derive(Debug, Serialize)]
pub struct PodStartup {
    /// Pods created.
    pub pods: usize,
    /// Pause between creates, in milliseconds.
    pub gap_ms: u64,
    /// From just before each create to the watch event showing it Running.
    pub latency: Latency,
    /// `VmRSS` of the server (with its kubelet) and no pods.
    pub idle_rss_kib: u64,
    /// `VmRSS` of the server with all pods running.
    pub rss_kib: u64,
    /// Container shim processes found.
    pub shims: usize,
    /// Their summed `VmRSS`.
    pub shims_rss_kib: u64,
    /// Their summed proportional set size.
    pub shims_pss_kib: u64,
    /// Their summed anonymous memory.
    pub shims_anon_kib: u64,
}

/// Services on a real node: proxy rule updates, ClusterIP throughput, cluster DNS.
#[derive(Debug, Serialize)]
pub struct Services {
    /// Services in the cluster when the endpoint change is timed.
    pub services: usize,
    /// How fast the filler Services were created.
    pub services_created_per_second: f64,
    /// From writing an EndpointSlice to its ClusterIP answering, in milliseconds.
    pub endpoint_to_rule_ms: f64,
    /// HTTP requests per second to the pod's own IP.
    pub direct_rps: f64,
    /// The same through its ClusterIP.
    pub cluster_ip_rps: f64,
    /// `cluster_ip_rps / direct_rps`.
    pub ratio: f64,
    /// DNS queries sent.
    pub dns_queries: usize,
    /// Queries per second, one at a time.
    pub dns_per_second: f64,
    /// Query latency.
    pub dns_latency: Latency,
}

/// One scheduler test: pods/s from creation to a persisted binding.
#[derive(Debug, Serialize)]
pub struct Scheduling {
    /// basic, topology spread or anti-affinity.
    pub workload: String,
    /// Whether the simulated nodes also started the pods (a status write per pod).
    pub kubelet: bool,
    /// Simulated nodes.
    pub nodes: usize,
    /// Pods placed before timing.
    pub placed: usize,
    /// Pods timed.
    pub pods: usize,
    /// Concurrent clients creating them.
    pub clients: usize,
    /// From server start to all nodes registered.
    pub node_registration_seconds: f64,
    /// How fast the pods were created.
    pub create_per_second: f64,
    /// From the first create to the last binding seen on the watch.
    pub seconds: f64,
    /// `pods / seconds`.
    pub per_second: f64,
    /// Per pod, from its create request to its binding on the watch.
    pub create_to_bound: Latency,
    /// Peak RSS of the server (API server, scheduler and simulated nodes).
    pub peak_rss_kib: u64,
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The kate binary measured.
    pub kate: String,
    /// Where the data directories were created.
    pub data_root: String,
    /// CPUs available to this process (shared with the server).
    pub cpus: usize,
    /// Start → ready times.
    pub startup: Startup,
    /// `VmRSS` right after ready.
    pub idle_rss_kib: u64,
    /// Create throughput.
    pub creates: Creates,
    /// GET and LIST latencies.
    pub reads: Reads,
    /// Watch latencies.
    pub watch: Watch,
    /// `VmRSS` of the main server at the end of the create, read and watch tests.
    pub final_rss_kib: u64,
    /// `VmHWM` of the main server at the end of the create, read and watch tests.
    pub final_peak_rss_kib: u64,
    /// ConfigMaps in the main server at the end.
    pub final_objects: usize,
    /// Memory after creating many objects in a fresh server.
    pub loaded: Loaded,
    /// The scheduler at scale, each workload in a fresh server.
    pub scheduling: Vec<Scheduling>,
    /// Pod creation by the controllers, in a fresh server.
    pub rollout: Rollout,
    /// Pod startup on a real node, when it was measured.
    pub pod_startup: Option<PodStartup>,
    /// Services, proxy and DNS on a real node, when they were measured.
    pub services: Option<Services>,
}

impl Report {
    /// Prints the results as an aligned two-column table.
    pub fn print_table(&self) {
        let s = &self.startup;
        let c = &self.creates;
        let r = &self.reads;
        let w = &self.watch;
        let l = &self.loaded;
        let d = &self.rollout;
        let rows: Vec<(String, String)> = vec![
            (
                format!("start → ready (median of {})", s.runs_ms.len()),
                format!(
                    "{}   (runs: {})",
                    fmt_ms(s.median_ms),
                    s.runs_ms
                        .iter()
                        .map(|ms| format!("{ms:.1}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            ("idle RSS after ready".into(), fmt_kib(self.idle_rss_kib)),
            (
                format!("ConfigMap creates ({} clients)", c.clients),
                format!("{:.0}/s   ({} in {:.2} s)", c.per_second, c.count, c.seconds),
            ),
            ("  create latency p50 / p99".into(), c.latency.cell()),
            ("GET ConfigMap p50 / p99".into(), r.get.cell()),
            (
                format!("LIST {} ConfigMaps, JSON p50 / p99", r.list_objects),
                format!("{}   ({})", r.list_json.cell(), fmt_bytes(r.list_json_bytes)),
            ),
            (
                format!("LIST {} ConfigMaps, Table p50 / p99", r.list_objects),
                format!("{}   ({})", r.list_table.cell(), fmt_bytes(r.list_table_bytes)),
            ),
            (
                format!("watch latency p50 / p99 ({} watchers)", w.watchers),
                format!(
                    "{}   ({} events, {} pairs, {} creates ≥ 5 ms{})",
                    w.latency.cell(),
                    w.events,
                    w.received,
                    w.slow_creates,
                    if w.missing > 0 {
                        format!(", {} MISSING", w.missing)
                    } else {
                        String::new()
                    }
                ),
            ),
            (
                format!("RSS after all tests ({} ConfigMaps)", self.final_objects),
                format!(
                    "{}   (peak {})",
                    fmt_kib(self.final_rss_kib),
                    fmt_kib(self.final_peak_rss_kib)
                ),
            ),
            (
                format!("RSS with {} ConfigMaps (fresh server)", l.objects),
                format!("{}   (peak {})", fmt_kib(l.rss_kib), fmt_kib(l.peak_rss_kib)),
            ),
            (
                format!("Deployment of {} pods: create → all pods", d.replicas),
                format!(
                    "{:.2} s   ({:.0} pods/s, first pod after {})",
                    d.seconds,
                    d.per_second,
                    fmt_ms(d.first_pod_ms)
                ),
            ),
        ];
        let mut rows = rows;
        if let Some(p) = &self.pod_startup {
            rows.push((
                format!("Pod startup on a node: create → Running ({} pods)", p.pods),
                format!("{}   (one every {} ms)", p.latency.cell(), p.gap_ms),
            ));
            rows.push((
                format!("  kate server RSS with the node: 0 / {} pods", p.pods),
                format!("{} / {}", fmt_kib(p.idle_rss_kib), fmt_kib(p.rss_kib)),
            ));
            rows.push((
                format!("  {} container shims: RSS / PSS / anonymous", p.shims),
                format!(
                    "{} / {} / {}",
                    fmt_kib(p.shims_rss_kib),
                    fmt_kib(p.shims_pss_kib),
                    fmt_kib(p.shims_anon_kib)
                ),
            ));
        }
        if let Some(v) = &self.services {
            rows.push((
                format!("Endpoint change → ClusterIP answers ({} Services)", v.services),
                fmt_ms(v.endpoint_to_rule_ms),
            ));
            rows.push((
                "HTTP req/s: ClusterIP / pod IP".into(),
                format!("{:.0} / {:.0}   (ratio {:.2})", v.cluster_ip_rps, v.direct_rps, v.ratio),
            ));
            rows.push((
                format!("Cluster DNS ({} queries, one at a time)", v.dns_queries),
                format!("{:.0}/s   (p50 / p99 {})", v.dns_per_second, v.dns_latency.cell()),
            ));
        }
        for x in &self.scheduling {
            rows.push((
                format!(
                    "Scheduling ({}{}): {} nodes, {} placed, then {} pods",
                    x.workload,
                    if x.kubelet { ", pods started" } else { "" },
                    x.nodes,
                    x.placed,
                    x.pods
                ),
                format!(
                    "{:.0} pods/s   (create → bound p50 {}, p99 {}; peak RSS {})",
                    x.per_second,
                    fmt_ms(x.create_to_bound.p50_ms),
                    fmt_ms(x.create_to_bound.p99_ms),
                    fmt_kib(x.peak_rss_kib)
                ),
            ));
        }
        let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
        let rule = "-".repeat(width + 40);
        println!(
            "kate-bench: {} ({} CPUs, data in {})",
            self.kate, self.cpus, self.data_root
        );
        println!("{rule}");
        for (key, value) in rows {
            let pad = width - key.chars().count();
            println!("{key}{}  {value}", " ".repeat(pad));
        }
        println!("{rule}");
    }

    /// Writes the results as pretty JSON to `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).context("serialising the report")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

/// Milliseconds with a precision that suits their size.
fn fmt_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// KiB as MiB.
fn fmt_kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A byte count as KiB or MiB.
fn fmt_bytes(bytes: usize) -> String {
    if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        samples.reverse();
        let l = Latency::of(&mut samples);
        assert_eq!(l.samples, 100);
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        assert_eq!(
            percentile(&[Duration::from_millis(7)], 0.99),
            Some(Duration::from_millis(7))
        );
        assert_eq!(percentile(&[], 0.5), None);
    }
}
