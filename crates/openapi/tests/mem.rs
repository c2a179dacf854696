use kate_openapi::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 { let n = LIVE.fetch_add(l.size(), Relaxed) + l.size(); PEAK.fetch_max(n, Relaxed); unsafe { System.alloc(l) } }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) { LIVE.fetch_sub(l.size(), Relaxed); unsafe { System.dealloc(p, l) } }
}
#[global_allocator]
static A: Counting = Counting;
fn r(g: &str, v: &str, k: &str, p: &str, ns: bool, subs: &[&str]) -> ApiResource {
    ApiResource {
        group: g.into(),
        version: v.into(),
        kind: k.into(),
        plural: p.into(),
        namespaced: ns,
        subresources: subs.iter().map(|s| s.to_string()).collect(),
        list_kind: format!("{k}List"),
    }
}
#[test]
fn mem() {
    let rss = || {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("VmRSS"))
            .unwrap()
            .to_string()
    };
    let res = vec![
        r("", "v1", "Namespace", "namespaces", false, &["status"]),
        r("", "v1", "Pod", "pods", true, &["status"]),
        r("", "v1", "Node", "nodes", false, &["status"]),
        r("", "v1", "Service", "services", true, &["status"]),
        r("", "v1", "Endpoints", "endpoints", true, &[]),
        r("", "v1", "ConfigMap", "configmaps", true, &[]),
        r("", "v1", "Secret", "secrets", true, &[]),
        r("", "v1", "ServiceAccount", "serviceaccounts", true, &[]),
        r("", "v1", "Event", "events", true, &[]),
        r(
            "",
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            false,
            &["status"],
        ),
        r(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            &["status"],
        ),
        r("", "v1", "LimitRange", "limitranges", true, &[]),
        r(
            "",
            "v1",
            "ResourceQuota",
            "resourcequotas",
            true,
            &["status"],
        ),
        r(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            &["status", "scale"],
        ),
        r(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            true,
            &["status", "scale"],
        ),
        r(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            true,
            &["status", "scale"],
        ),
        r("apps", "v1", "DaemonSet", "daemonsets", true, &["status"]),
        r(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            true,
            &[],
        ),
        r("batch", "v1", "Job", "jobs", true, &["status"]),
        r("batch", "v1", "CronJob", "cronjobs", true, &["status"]),
        r("coordination.k8s.io", "v1", "Lease", "leases", true, &[]),
        r(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
            &[],
        ),
        r("events.k8s.io", "v1", "Event", "events", true, &[]),
        r(
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            "priorityclasses",
            false,
            &[],
        ),
        r(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
            &["status"],
        ),
    ];
    eprintln!("start {}", rss());
    let o = OpenApi::new(res);
    let t = std::time::Instant::now();
    let s = o.kind_schema("apps", "v1", "Deployment").unwrap();
    eprintln!(
        "catalog {:?} defs {} {}",
        t.elapsed(),
        s.defs().len(),
        rss()
    );
    let t = std::time::Instant::now();
    let root = o.root();
    let total: usize = root["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| o.document(k).unwrap().json.len())
        .sum();
    eprintln!("all docs {:?} total {} bytes {}", t.elapsed(), total, rss());
}
