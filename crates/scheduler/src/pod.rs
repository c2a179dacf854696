//! [`PodInfo`]: what the scheduler needs of a pod, parsed once when the pod is seen so that
//! scheduling cycles never touch JSON or quantities.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, Pod, PodAffinityTerm, PodSpec, Toleration, TopologySpreadConstraint, WeightedPodAffinityTerm,
};
use kube::ResourceExt;

use crate::labels::{Labels, NodeTerm, Requirement, Selector};
use crate::resources::{self, Resources};

/// A host port a pod's container claims on its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// The host IP (`0.0.0.0` claims every address).
    pub ip: String,
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The port number.
    pub port: i32,
}

impl HostPort {
    /// Whether two claims collide: same port and protocol on overlapping addresses.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A pod (anti-)affinity term, with its namespaces resolved as far as the pod alone allows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AffinityTerm {
    /// Which pods the term is about.
    pub selector: Selector,
    /// Namespaces named explicitly (the pod's own when neither these nor a selector is given).
    pub namespaces: Vec<String>,
    /// Namespaces chosen by label (`{}` selects every namespace).
    pub namespace_selector: Option<Selector>,
    /// The node label whose values are the domains (`kubernetes.io/hostname`, a zone...).
    pub topology_key: String,
}

impl AffinityTerm {
    fn parse(term: &PodAffinityTerm, owner: &Labels, owner_namespace: &str) -> AffinityTerm {
        let mut selector = Selector::from_label_selector(term.label_selector.as_ref());
        if term.label_selector.is_some() {
            for key in term.match_label_keys.iter().flatten() {
                if let Some(v) = owner.get(key) {
                    selector.and(Requirement::In(key.clone(), vec![v.clone()]));
                }
            }
            for key in term.mismatch_label_keys.iter().flatten() {
                if let Some(v) = owner.get(key) {
                    selector.and(Requirement::NotIn(key.clone(), vec![v.clone()]));
                }
            }
        }
        let namespace_selector = term
            .namespace_selector
            .as_ref()
            .map(|s| Selector::from_label_selector(Some(s)));
        let mut namespaces = term.namespaces.clone().unwrap_or_default();
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.push(owner_namespace.to_string());
        }
        AffinityTerm {
            selector,
            namespaces,
            namespace_selector,
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether a pod in `namespace` with `labels` is one the term is about; `namespace_labels`
    /// are that namespace's labels (for namespace selectors).
    pub fn matches(&self, namespace: &str, labels: &Labels, namespace_labels: Option<&Labels>) -> bool {
        let in_namespace = self.namespaces.iter().any(|n| n == namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| namespace_labels.is_some_and(|l| s.matches(l)));
        in_namespace && self.selector.matches(labels)
    }
}

/// A topology spread constraint, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpreadConstraint {
    /// The largest allowed difference between the fullest and emptiest domain.
    pub max_skew: i32,
    /// The node label whose values are the domains.
    pub topology_key: String,
    /// DoNotSchedule (a filter) rather than ScheduleAnyway (a score).
    pub hard: bool,
    /// Which pods are counted (in the pod's namespace).
    pub selector: Selector,
    /// The fewest domains that must exist before the minimum count is taken from them.
    pub min_domains: i32,
    /// Whether only nodes matching the pod's node affinity count (`nodeAffinityPolicy: Honor`).
    pub honor_node_affinity: bool,
    /// Whether only nodes whose taints the pod tolerates count (`nodeTaintsPolicy: Honor`).
    pub honor_taints: bool,
}

impl SpreadConstraint {
    fn parse(c: &TopologySpreadConstraint, labels: &Labels) -> SpreadConstraint {
        let mut selector = Selector::from_label_selector(c.label_selector.as_ref());
        for key in c.match_label_keys.iter().flatten() {
            if let Some(v) = labels.get(key) {
                selector.and(Requirement::In(key.clone(), vec![v.clone()]));
            }
        }
        SpreadConstraint {
            max_skew: c.max_skew,
            topology_key: c.topology_key.clone(),
            hard: c.when_unsatisfiable == "DoNotSchedule",
            selector,
            min_domains: c.min_domains.unwrap_or(1).max(1),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    /// A ScheduleAnyway constraint as the system defaults build them.
    pub fn soft(topology_key: &str, max_skew: i32, selector: Selector) -> SpreadConstraint {
        SpreadConstraint {
            max_skew,
            topology_key: topology_key.to_string(),
            hard: false,
            selector,
            min_domains: 1,
            honor_node_affinity: true,
            honor_taints: false,
        }
    }
}

/// Everything the scheduler needs of one pod.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// `namespace/name`, the key of the queue and the cache.
    pub key: Arc<str>,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// The resourceVersion it was read at.
    pub resource_version: String,
    /// Labels.
    pub labels: Labels,
    /// The node the pod is bound to, if any.
    pub node_name: Option<String>,
    /// `spec.schedulerName`.
    pub scheduler_name: String,
    /// `spec.priority` (resolved from the PriorityClass by the API server).
    pub priority: i32,
    /// `preemptionPolicy: Never`: the pod waits rather than evicting others.
    pub never_preempts: bool,
    /// The pod has a deletion timestamp.
    pub deleting: bool,
    /// The pod has finished (Succeeded or Failed) and holds no resources.
    pub terminal: bool,
    /// What the pod requests, for fitting.
    pub requests: Resources,
    /// What the pod counts as, for scoring (defaults for unset cpu and memory).
    pub non_zero: Resources,
    /// Host ports claimed.
    pub host_ports: Vec<HostPort>,
    /// Tolerations.
    pub tolerations: Vec<Toleration>,
    /// `spec.nodeSelector`.
    pub node_selector: Labels,
    /// Required node affinity terms (any must match), if given.
    pub required_node_terms: Option<Vec<NodeTerm>>,
    /// Preferred node affinity terms with their weights.
    pub preferred_node_terms: Vec<(i32, NodeTerm)>,
    /// Explicit topology spread constraints.
    pub spread: Vec<SpreadConstraint>,
    /// Required pod affinity terms.
    pub affinity: Vec<AffinityTerm>,
    /// Required pod anti-affinity terms.
    pub anti_affinity: Vec<AffinityTerm>,
    /// Preferred pod affinity terms with weights.
    pub preferred_affinity: Vec<(i32, AffinityTerm)>,
    /// Preferred pod anti-affinity terms with weights.
    pub preferred_anti_affinity: Vec<(i32, AffinityTerm)>,
    /// Container images, normalized (`:latest` added when untagged).
    pub images: Vec<String>,
    /// When the pod started (or was created), in seconds, for preemption ordering.
    pub started: i64,
    /// `status.nominatedNodeName`.
    pub nominated_node: Option<String>,
    /// The PodScheduled condition as stored: (status, reason, message).
    pub scheduled_condition: Option<(String, String, String)>,
    /// A hash of the labels and spec, to tell real changes of a pending pod from status noise.
    pub fingerprint: u64,
}

impl PodInfo {
    /// Parses a pod.
    pub fn new(pod: &Pod) -> PodInfo {
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        // Borrowed, not cloned: this runs for every pod event the scheduler sees.
        let no_spec = PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&no_spec);
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref());
        let no_affinity = Affinity::default();
        let affinity = spec.affinity.as_ref().unwrap_or(&no_affinity);
        let node_affinity = affinity.node_affinity.as_ref();
        let required_node_terms = node_affinity
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|r| r.node_selector_terms.iter().map(NodeTerm::parse).collect());
        let preferred_node_terms = node_affinity
            .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())
            .into_iter()
            .flatten()
            .filter(|p| p.weight != 0)
            .map(|p| (p.weight, NodeTerm::parse(&p.preference)))
            .collect();
        let (affinity_terms, anti_affinity, preferred_affinity, preferred_anti_affinity) =
            pod_affinity_terms(affinity, &labels, &namespace);
        let host_ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                p.host_port.filter(|hp| *hp > 0).map(|port| HostPort {
                    ip: p
                        .host_ip
                        .clone()
                        .filter(|ip| !ip.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port,
                })
            })
            .collect();
        let images = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .filter_map(|c| c.image.as_deref())
            .map(normalized_image)
            .collect();
        let started = status
            .and_then(|s| s.start_time.as_ref())
            .or(pod.metadata.creation_timestamp.as_ref())
            .map(|t| t.0.as_second())
            .unwrap_or(0);
        let scheduled_condition = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
            .map(|c| {
                (
                    c.status.clone(),
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            });
        let node_name = spec.node_name.clone().filter(|n| !n.is_empty());
        // Only pending pods are compared across updates, so only they pay for the hash.
        let fingerprint = if node_name.is_none() { fingerprint(pod) } else { 0 };
        PodInfo {
            key: format!("{namespace}/{name}").into(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            resource_version: pod.metadata.resource_version.clone().unwrap_or_default(),
            node_name,
            scheduler_name: spec
                .scheduler_name
                .clone()
                .unwrap_or_else(|| "default-scheduler".into()),
            priority: spec.priority.unwrap_or(0),
            never_preempts: spec.preemption_policy.as_deref() == Some("Never"),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            terminal: matches!(phase, Some("Succeeded" | "Failed")),
            requests: resources::pod_requests(spec),
            non_zero: resources::pod_non_zero_requests(spec),
            host_ports,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_node_terms,
            preferred_node_terms,
            spread: spec
                .topology_spread_constraints
                .iter()
                .flatten()
                .map(|c| SpreadConstraint::parse(c, &labels))
                .collect(),
            affinity: affinity_terms,
            anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
            images,
            started,
            nominated_node: status
                .and_then(|s| s.nominated_node_name.clone())
                .filter(|n| !n.is_empty()),
            scheduled_condition,
            fingerprint,
            namespace,
            name,
            labels,
        }
    }

    /// Whether the pod has any pod affinity or anti-affinity that scoring must consider when
    /// other pods are placed (upstream's "pods with affinity").
    pub fn has_scoring_affinity(&self) -> bool {
        !self.affinity.is_empty() || !self.preferred_affinity.is_empty() || !self.preferred_anti_affinity.is_empty()
    }
}

type Terms = Vec<AffinityTerm>;
type Weighted = Vec<(i32, AffinityTerm)>;

fn pod_affinity_terms(affinity: &Affinity, labels: &Labels, namespace: &str) -> (Terms, Terms, Weighted, Weighted) {
    let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Terms {
        terms
            .into_iter()
            .flatten()
            .map(|t| AffinityTerm::parse(t, labels, namespace))
            .collect()
    };
    let preferred = |terms: Option<&Vec<WeightedPodAffinityTerm>>| -> Weighted {
        terms
            .into_iter()
            .flatten()
            .filter(|w| w.weight != 0)
            .map(|w| (w.weight, AffinityTerm::parse(&w.pod_affinity_term, labels, namespace)))
            .collect()
    };
    let a = affinity.pod_affinity.as_ref();
    let anti = affinity.pod_anti_affinity.as_ref();
    (
        required(a.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())),
        required(anti.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())),
        preferred(a.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())),
        preferred(anti.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())),
    )
}

/// An image name as nodes report it: untagged names mean `:latest`.
pub fn normalized_image(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

fn fingerprint(pod: &Pod) -> u64 {
    let mut h = DefaultHasher::new();
    pod.metadata.labels.hash(&mut h);
    serde_json::to_string(&pod.spec).unwrap_or_default().hash(&mut h);
    h.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A pod from JSON, for tests across the crate.
    pub fn pod(v: serde_json::Value) -> PodInfo {
        let mut v = v;
        if v.pointer("/metadata/namespace").is_none() {
            v["metadata"]["namespace"] = json!("default");
        }
        if v.get("spec").is_none() {
            v["spec"] = json!({"containers": [{"name": "c", "image": "pause"}]});
        }
        PodInfo::new(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn parses_what_scheduling_needs() {
        let p = pod(json!({
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "priority": 100,
                "preemptionPolicy": "Never",
                "containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80, "hostPort": 8080}]}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
                ]}},
            }
        }));
        assert_eq!(&*p.key, "default/web");
        assert_eq!(p.priority, 100);
        assert!(p.never_preempts);
        assert_eq!(p.images, vec!["nginx:latest"]);
        assert_eq!(p.host_ports[0].port, 8080);
        assert_eq!(p.host_ports[0].ip, "0.0.0.0");
        assert_eq!(p.anti_affinity[0].namespaces, vec!["default"]);
        assert!(p.anti_affinity[0].matches("default", &p.labels, None));
        assert!(!p.anti_affinity[0].matches("other", &p.labels, None));
    }

    #[test]
    fn host_port_conflicts() {
        let any = HostPort {
            ip: "0.0.0.0".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        let one = HostPort {
            ip: "10.0.0.1".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        let udp = HostPort {
            ip: "0.0.0.0".into(),
            protocol: "UDP".into(),
            port: 80,
        };
        assert!(any.conflicts(&one));
        assert!(!any.conflicts(&udp));
    }
}
