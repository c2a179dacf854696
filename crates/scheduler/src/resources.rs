//! Resource amounts as the scheduler adds and compares them: what a pod requests (containers,
//! init containers, sidecars and overhead, as upstream computes it) and what a node offers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity;

/// The cpu request assumed for scoring a container that requests none (upstream's 100m).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory request assumed for scoring a container that requests none (upstream's 200Mi).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 << 20;

/// Amounts of every resource kind the scheduler tracks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// cpu, in millicores.
    pub milli_cpu: i64,
    /// memory, in bytes.
    pub memory: i64,
    /// ephemeral-storage, in bytes.
    pub ephemeral_storage: i64,
    /// The `pods` resource (only meaningful for a node's allocatable).
    pub pods: i64,
    /// Extended resources and hugepages, by name, sorted.
    pub scalar: Vec<(String, i64)>,
}

impl Resources {
    /// Reads a resource list such as `requests` or `status.allocatable`.
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            r.set(name, &q.0);
        }
        r
    }

    fn set(&mut self, name: &str, q: &str) {
        match name {
            "cpu" => self.milli_cpu = quantity::milli_value(q),
            "memory" => self.memory = quantity::value(q),
            "ephemeral-storage" => self.ephemeral_storage = quantity::value(q),
            "pods" => self.pods = quantity::value(q),
            other if is_scalar(other) => self.set_scalar(other, quantity::value(q)),
            _ => {}
        }
    }

    /// The amount of an extended resource or hugepage size.
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map(|i| self.scalar[i].1)
            .unwrap_or(0)
    }

    fn set_scalar(&mut self, name: &str, v: i64) {
        match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.scalar[i].1 = v,
            Err(i) => self.scalar.insert(i, (name.to_string(), v)),
        }
    }

    /// Adds `other` to these amounts.
    pub fn add(&mut self, other: &Resources) {
        self.combine(other, |a, b| a + b);
    }

    /// Subtracts `other` from these amounts.
    pub fn sub(&mut self, other: &Resources) {
        self.combine(other, |a, b| a - b);
    }

    /// Raises each amount to at least the one in `other`.
    pub fn max_with(&mut self, other: &Resources) {
        self.combine(other, i64::max);
    }

    fn combine(&mut self, other: &Resources, f: impl Fn(i64, i64) -> i64) {
        self.milli_cpu = f(self.milli_cpu, other.milli_cpu);
        self.memory = f(self.memory, other.memory);
        self.ephemeral_storage = f(self.ephemeral_storage, other.ephemeral_storage);
        self.pods = f(self.pods, other.pods);
        for (name, v) in &other.scalar {
            let mine = self.scalar(name);
            self.set_scalar(name, f(mine, *v));
        }
    }

    /// Whether nothing at all is requested.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }
}

/// Whether a resource name is checked as an extended resource or hugepage size: anything
/// outside the `kubernetes.io/` namespace with a domain prefix, and `hugepages-*`.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/') && !name.starts_with("kubernetes.io/") && !name.starts_with("requests."))
}

/// What a pod requests: the sum over containers (sidecars included) or the largest init
/// container step if that is more, plus overhead.
pub fn pod_requests(spec: &PodSpec) -> Resources {
    requests_with(spec, |c| container_requests(c, false))
}

/// What a pod counts for when scoring: like [`pod_requests`], but a container that requests
/// no cpu or memory counts as the upstream defaults, so that empty pods still spread.
pub fn pod_non_zero_requests(spec: &PodSpec) -> Resources {
    requests_with(spec, |c| container_requests(c, true))
}

fn requests_with(spec: &PodSpec, of: impl Fn(&Container) -> Resources) -> Resources {
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&of(c));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let mut step = of(c);
        if c.restart_policy.as_deref() == Some("Always") {
            // A sidecar keeps running alongside everything started after it.
            total.add(&step);
            sidecars.add(&step);
            step = sidecars.clone();
        } else {
            step.add(&sidecars);
        }
        init_peak.max_with(&step);
    }
    total.max_with(&init_peak);
    if let Some(overhead) = &spec.overhead {
        total.add(&Resources::from_list(overhead));
    }
    total
}

fn container_requests(c: &Container, non_zero: bool) -> Resources {
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let mut r = requests.map(Resources::from_list).unwrap_or_default();
    if non_zero {
        if !requests.is_some_and(|q| q.contains_key("cpu")) {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !requests.is_some_and(|q| q.contains_key("memory")) {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn init_containers_take_the_max_and_sidecars_add() {
        let s = spec(json!({
            "initContainers": [
                {"name": "a", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "2", "memory": "3Gi"}}},
            ],
            "containers": [
                {"name": "c", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}},
                {"name": "d", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
            ],
            "overhead": {"cpu": "100m"},
        }));
        let r = pod_requests(&s);
        assert_eq!(r.milli_cpu, 3100);
        assert_eq!(r.memory, 3 << 30);

        let s = spec(json!({
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}},
                {"name": "init", "resources": {"requests": {"cpu": "3"}}},
            ],
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}],
        }));
        // The init step runs next to the sidecar: 3 + 1 > 1 + 1.
        assert_eq!(pod_requests(&s).milli_cpu, 4000);
    }

    #[test]
    fn extended_resources_are_tracked() {
        let s = spec(json!({"containers": [
            {"name": "c", "resources": {"requests": {"example.com/gpu": "2", "hugepages-2Mi": "4Mi"}}}
        ]}));
        let r = pod_requests(&s);
        assert_eq!(r.scalar("example.com/gpu"), 2);
        assert_eq!(r.scalar("hugepages-2Mi"), 4 << 20);
    }

    #[test]
    fn empty_containers_score_as_defaults() {
        let s = spec(json!({"containers": [{"name": "c"}, {"name": "d", "resources": {"requests": {"cpu": "0"}}}]}));
        let r = pod_non_zero_requests(&s);
        assert_eq!(r.milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(r.memory, 2 * DEFAULT_MEMORY_REQUEST);
        assert!(pod_requests(&s).is_zero());
    }
}
