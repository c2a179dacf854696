//! Upstream's patch and list metadata (`x-kubernetes-patch-strategy`, `-patch-merge-key`,
//! `-list-type`, `-list-map-keys`, `-map-type`) for the GA built-in types.
//!
//! k8s-openapi's schemas carry descriptions but none of these extensions, yet kubectl computes
//! client-side apply patches from them and kate's own strategic merge patch and server-side apply
//! must agree with what kubectl computed. The table holds upstream Kubernetes 1.33's facts, as its
//! published API definitions state them, for every GA definition that has any.

use serde_json::{Map, Value};

/// How a list property is keyed, as upstream's `x-kubernetes-list-type` states it.
#[derive(Clone, Copy)]
enum ListType {
    /// The property is not a list, or upstream gives no list type.
    Unset,
    Atomic,
    Set,
    /// A list of objects identified by these keys.
    Map(&'static [&'static str]),
}

/// Upstream's metadata for one property.
#[derive(Clone, Copy)]
struct Fact {
    list: ListType,
    strategy: Option<&'static str>,
    merge_key: Option<&'static str>,
    map_type: Option<&'static str>,
}

impl Fact {
    const fn strategy(self, strategy: &'static str) -> Self {
        Fact {
            strategy: Some(strategy),
            ..self
        }
    }

    const fn merge_key(self, key: &'static str) -> Self {
        Fact {
            merge_key: Some(key),
            ..self
        }
    }

    const fn map_type(self, map_type: &'static str) -> Self {
        Fact {
            map_type: Some(map_type),
            ..self
        }
    }
}

const NONE: Fact = Fact {
    list: ListType::Unset,
    strategy: None,
    merge_key: None,
    map_type: None,
};
const ATOMIC: Fact = Fact {
    list: ListType::Atomic,
    ..NONE
};
const SET: Fact = Fact {
    list: ListType::Set,
    ..NONE
};

const fn map(keys: &'static [&'static str]) -> Fact {
    Fact {
        list: ListType::Map(keys),
        ..NONE
    }
}

/// The facts of one definition: its own `x-kubernetes-map-type` and those of its properties.
struct DefFacts {
    name: &'static str,
    map_type: Option<&'static str>,
    props: &'static [(&'static str, Fact)],
}

const fn def(name: &'static str, map_type: Option<&'static str>, props: &'static [(&'static str, Fact)]) -> DefFacts {
    DefFacts { name, map_type, props }
}

/// Upstream's `required` lists where k8s-openapi's differ: k8s-openapi requires `name` on local
/// object references and drops a few requirements that upstream keeps.
const REQUIRED: &[(&str, &[&str])] = &[
    ("io.k8s.api.core.v1.ConfigMapEnvSource", &[]),
    ("io.k8s.api.core.v1.ConfigMapKeySelector", &["key"]),
    ("io.k8s.api.core.v1.ConfigMapProjection", &[]),
    ("io.k8s.api.core.v1.ConfigMapVolumeSource", &[]),
    ("io.k8s.api.core.v1.Event", &["metadata", "involvedObject"]),
    ("io.k8s.api.core.v1.LocalObjectReference", &[]),
    ("io.k8s.api.core.v1.SecretEnvSource", &[]),
    ("io.k8s.api.core.v1.SecretKeySelector", &["key"]),
    ("io.k8s.api.core.v1.SecretProjection", &[]),
    ("io.k8s.api.events.v1.Event", &["eventTime"]),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", &["podSelector"]),
];

/// Writes the facts into those definitions of `defs` that the tables know.
pub(crate) fn overlay(defs: &mut Map<String, Value>) {
    for (name, required) in REQUIRED {
        if let Some(Value::Object(schema)) = defs.get_mut(*name) {
            if required.is_empty() {
                schema.shift_remove("required");
            } else {
                schema.insert("required".into(), required.to_vec().into());
            }
        }
    }
    for facts in FACTS {
        let Some(Value::Object(schema)) = defs.get_mut(facts.name) else {
            continue;
        };
        if let Some(map_type) = facts.map_type {
            schema.insert("x-kubernetes-map-type".into(), map_type.into());
        }
        let Some(Value::Object(props)) = schema.get_mut("properties") else {
            continue;
        };
        for (prop, fact) in facts.props {
            if let Some(Value::Object(node)) = props.get_mut(*prop) {
                apply(node, fact);
            }
        }
    }
}

fn apply(node: &mut Map<String, Value>, fact: &Fact) {
    match fact.list {
        ListType::Unset => {}
        ListType::Atomic => {
            node.insert("x-kubernetes-list-type".into(), "atomic".into());
        }
        ListType::Set => {
            node.insert("x-kubernetes-list-type".into(), "set".into());
        }
        ListType::Map(keys) => {
            node.insert("x-kubernetes-list-map-keys".into(), keys.to_vec().into());
            node.insert("x-kubernetes-list-type".into(), "map".into());
        }
    }
    if let Some(map_type) = fact.map_type {
        node.insert("x-kubernetes-map-type".into(), map_type.into());
    }
    if let Some(key) = fact.merge_key {
        node.insert("x-kubernetes-patch-merge-key".into(), key.into());
    }
    if let Some(strategy) = fact.strategy {
        node.insert("x-kubernetes-patch-strategy".into(), strategy.into());
    }
}

#[rustfmt::skip]
static FACTS: &[DefFacts] = &[
    def("io.k8s.api.admissionregistration.v1.MatchResources", Some("atomic"), &[
        ("excludeResourceRules", ATOMIC),
        ("resourceRules", ATOMIC),
    ]),
    def("io.k8s.api.admissionregistration.v1.MutatingWebhook", None, &[
        ("admissionReviewVersions", ATOMIC),
        ("matchConditions", map(&["name"]).strategy("merge").merge_key("name")),
        ("rules", ATOMIC),
    ]),
    def("io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration", None, &[
        ("webhooks", map(&["name"]).strategy("merge").merge_key("name")),
    ]),
    def("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", Some("atomic"), &[
        ("apiGroups", ATOMIC),
        ("apiVersions", ATOMIC),
        ("operations", ATOMIC),
        ("resourceNames", ATOMIC),
        ("resources", ATOMIC),
    ]),
    def("io.k8s.api.admissionregistration.v1.ParamKind", Some("atomic"), &[
    ]),
    def("io.k8s.api.admissionregistration.v1.ParamRef", Some("atomic"), &[
    ]),
    def("io.k8s.api.admissionregistration.v1.RuleWithOperations", None, &[
        ("apiGroups", ATOMIC),
        ("apiVersions", ATOMIC),
        ("operations", ATOMIC),
        ("resources", ATOMIC),
    ]),
    def("io.k8s.api.admissionregistration.v1.TypeChecking", None, &[
        ("expressionWarnings", ATOMIC),
    ]),
    def("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyBindingSpec", None, &[
        ("validationActions", SET),
    ]),
    def("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", None, &[
        ("auditAnnotations", ATOMIC),
        ("matchConditions", map(&["name"]).strategy("merge").merge_key("name")),
        ("validations", ATOMIC),
        ("variables", map(&["name"]).strategy("merge").merge_key("name")),
    ]),
    def("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyStatus", None, &[
        ("conditions", map(&["type"])),
    ]),
    def("io.k8s.api.admissionregistration.v1.ValidatingWebhook", None, &[
        ("admissionReviewVersions", ATOMIC),
        ("matchConditions", map(&["name"]).strategy("merge").merge_key("name")),
        ("rules", ATOMIC),
    ]),
    def("io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration", None, &[
        ("webhooks", map(&["name"]).strategy("merge").merge_key("name")),
    ]),
    def("io.k8s.api.admissionregistration.v1.Variable", Some("atomic"), &[
    ]),
    def("io.k8s.api.apps.v1.DaemonSetStatus", None, &[
        ("conditions", map(&["type"]).strategy("merge").merge_key("type")),
    ]),
    def("io.k8s.api.apps.v1.DeploymentSpec", None, &[
        ("strategy", NONE.strategy("retainKeys")),
    ]),
    def("io.k8s.api.apps.v1.DeploymentStatus", None, &[
        ("conditions", map(&["type"]).strategy("merge").merge_key("type")),
    ]),
    def("io.k8s.api.apps.v1.ReplicaSetStatus", None, &[
        ("conditions", map(&["type"]).strategy("merge").merge_key("type")),
    ]),
    def("io.k8s.api.apps.v1.StatefulSetSpec", None, &[
        ("volumeClaimTemplates", ATOMIC),
    ]),
    def("io.k8s.api.apps.v1.StatefulSetStatus", None, &[
        ("conditions", map(&["type"]).strategy("merge").merge_key("type")),
    ]),
    def("io.k8s.api.authentication.v1.TokenRequestSpec", None, &[
        ("audiences", ATOMIC),
    ]),
    def("io.k8s.api.authentication.v1.TokenReviewSpec", None, &[
        ("audiences", ATOMIC),
    ]),
    def("io.k8s.api.authentication.v1.TokenReviewStatus", None, &[
        ("audiences", ATOMIC),
    ]),
    def("io.k8s.api.authentication.v1.UserInfo", None, &[
        ("groups", ATOMIC),
    ]),
    def("io.k8s.api.authorization.v1.FieldSelectorAttributes", None, &[
        ("requirements", ATOMIC),
    ]),
    def("io.k8s.api.authorization.v1.LabelSelectorAttributes", None, &[
        ("requirements", ATOMIC),
    ]),
    def("io.k8s.api.authorization.v1.NonResourceRule", None, &[
        ("nonResourceURLs", ATOMIC),
        ("verbs", ATOMIC),
    ]),
    def("io.k8s.api.authorization.v1.ResourceRule", None, &[
        ("apiGroups", ATOMIC),
        ("resourceNames", ATOMIC),
        ("resources", ATOMIC),
        ("verbs", ATOMIC),
    ]),
    def("io.k8s.api.authorization.v1.SubjectAccessReviewSpec", None, &[
        ("groups", ATOMIC),
    ]),
    def("io.k8s.api.authorization.v1.SubjectRulesReviewStatus", None, &[
        ("nonResourceRules", ATOMIC),
        ("resourceRules", ATOMIC),
    ]),
    def("io.k8s.api.autoscaling.v1.CrossVersionObjectReference", Some("atomic"), &[
    ]),
    def("io.k8s.api.autoscaling.v2.HPAScalingRules", None, &[
        ("policies", ATOMIC),
    ]),
    def("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", None, &[
        ("metrics", ATOMIC),
    ]),
    def("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", None, &[
        ("conditions", map(&["type"]).strategy("merge").merge_key("type")),
        ("currentMetrics", ATOMIC),
    ]),
    def("io.k8s.api.batch.v1.CronJobStatus", None, &[
        ("active", ATOMIC),
    ]),
    def("io.k8s.api.batch.v1.JobStatus", None, &[
        ("conditions", ATOMIC.strategy("merge").merge_key("type")),
    ]),
    def("io.k8s.api.batch.v1.PodFailurePolicy", None, &[
        ("rules", ATOMIC),
    ]),
    def("io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement", None, &[
        ("values", SET),
    ]),
    def("io.k8s.api.batch.v1.PodFailurePolicyRule", None, &[
        ("onPodConditions", ATOMIC),
    ]),
    def("io.k8s.api.batch.v1.SuccessPolicy", None, &[
        ("rules", ATOMIC),
    ]),
    def("io.k8s.api.batch.v1.UncountedTerminatedPods", None, &[
        ("failed", SET),
        ("succeeded", SET),
    ]),
    def("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", None, &[
        ("groups", ATOMIC),
        ("request", ATOMIC),
        ("usages", ATOMIC),
    ]),
    def("io.k8s.api.certificates.v1.CertificateSigningRequestStatus", None, &[
        ("certificate", ATOMIC),
        ("conditions", map(&["type"])),
    ]),
    def("io.k8s.api.core.v1.Capabilities", None, &[
        ("add", ATOMIC),
        ("drop", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.CephFSPersistentVolumeSource", None, &[
        ("monitors", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.CephFSVolumeSource", None, &[
        ("monitors", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.ComponentStatus", None, &[
        ("conditions", map(&["type"]).strategy("merge").merge_key("type")),
    ]),
    def("io.k8s.api.core.v1.ConfigMapKeySelector", Some("atomic"), &[
    ]),
    def("io.k8s.api.core.v1.ConfigMapProjection", None, &[
        ("items", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.ConfigMapVolumeSource", None, &[
        ("items", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.Container", None, &[
        ("args", ATOMIC),
        ("command", ATOMIC),
        ("env", map(&["name"]).strategy("merge").merge_key("name")),
        ("envFrom", ATOMIC),
        ("ports", map(&["containerPort", "protocol"]).strategy("merge").merge_key("containerPort")),
        ("resizePolicy", ATOMIC),
        ("volumeDevices", map(&["devicePath"]).strategy("merge").merge_key("devicePath")),
        ("volumeMounts", map(&["mountPath"]).strategy("merge").merge_key("mountPath")),
    ]),
    def("io.k8s.api.core.v1.ContainerImage", None, &[
        ("names", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.ContainerStatus", None, &[
        ("allocatedResourcesStatus", map(&["name"]).strategy("merge").merge_key("name")),
        ("volumeMounts", map(&["mountPath"]).strategy("merge").merge_key("mountPath")),
    ]),
    def("io.k8s.api.core.v1.DownwardAPIProjection", None, &[
        ("items", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.DownwardAPIVolumeSource", None, &[
        ("items", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.EndpointAddress", Some("atomic"), &[
    ]),
    def("io.k8s.api.core.v1.EndpointPort", Some("atomic"), &[
    ]),
    def("io.k8s.api.core.v1.EndpointSubset", None, &[
        ("addresses", ATOMIC),
        ("notReadyAddresses", ATOMIC),
        ("ports", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.Endpoints", None, &[
        ("subsets", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.EphemeralContainer", None, &[
        ("args", ATOMIC),
        ("command", ATOMIC),
        ("env", map(&["name"]).strategy("merge").merge_key("name")),
        ("envFrom", ATOMIC),
        ("ports", map(&["containerPort", "protocol"]).strategy("merge").merge_key("containerPort")),
        ("resizePolicy", ATOMIC),
        ("volumeDevices", map(&["devicePath"]).strategy("merge").merge_key("devicePath")),
        ("volumeMounts", map(&["mountPath"]).strategy("merge").merge_key("mountPath")),
    ]),
    def("io.k8s.api.core.v1.ExecAction", None, &[
        ("command", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.FCVolumeSource", None, &[
        ("targetWWNs", ATOMIC),
        ("wwids", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.HTTPGetAction", None, &[
        ("httpHeaders", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.HostAlias", None, &[
        ("hostnames", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.ISCSIPersistentVolumeSource", None, &[
        ("portals", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.ISCSIVolumeSource", None, &[
        ("portals", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.LimitRangeSpec", None, &[
        ("limits", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.LinuxContainerUser", None, &[
        ("supplementalGroups", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.LoadBalancerIngress", None, &[
        ("ports", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.LoadBalancerStatus", None, &[
        ("ingress", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.LocalObjectReference", Some("atomic"), &[
    ]),
    def("io.k8s.api.core.v1.NamespaceSpec", None, &[
        ("finalizers", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.NamespaceStatus", None, &[
        ("conditions", map(&["type"]).strategy("merge").merge_key("type")),
    ]),
    def("io.k8s.api.core.v1.NodeAffinity", None, &[
        ("preferredDuringSchedulingIgnoredDuringExecution", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.NodeSelector", Some("atomic"), &[
        ("nodeSelectorTerms", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.NodeSelectorRequirement", None, &[
        ("values", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.NodeSelectorTerm", Some("atomic"), &[
        ("matchExpressions", ATOMIC),
        ("matchFields", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.NodeSpec", None, &[
        ("podCIDRs", SET.strategy("merge")),
        ("taints", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.NodeStatus", None, &[
        ("addresses", map(&["type"]).strategy("merge").merge_key("type")),
        ("conditions", map(&["type"]).strategy("merge").merge_key("type")),
        ("images", ATOMIC),
        ("runtimeHandlers", ATOMIC),
        ("volumesAttached", ATOMIC),
        ("volumesInUse", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.ObjectFieldSelector", Some("atomic"), &[
    ]),
    def("io.k8s.api.core.v1.ObjectReference", Some("atomic"), &[
    ]),
    def("io.k8s.api.core.v1.PersistentVolumeClaimSpec", None, &[
        ("accessModes", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.PersistentVolumeClaimStatus", None, &[
        ("accessModes", ATOMIC),
        ("allocatedResourceStatuses", NONE.map_type("granular")),
        ("conditions", map(&["type"]).strategy("merge").merge_key("type")),
    ]),
    def("io.k8s.api.core.v1.PersistentVolumeSpec", None, &[
        ("accessModes", ATOMIC),
        ("claimRef", NONE.map_type("granular")),
        ("mountOptions", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.PodAffinity", None, &[
        ("preferredDuringSchedulingIgnoredDuringExecution", ATOMIC),
        ("requiredDuringSchedulingIgnoredDuringExecution", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.PodAffinityTerm", None, &[
        ("matchLabelKeys", ATOMIC),
        ("mismatchLabelKeys", ATOMIC),
        ("namespaces", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.PodAntiAffinity", None, &[
        ("preferredDuringSchedulingIgnoredDuringExecution", ATOMIC),
        ("requiredDuringSchedulingIgnoredDuringExecution", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.PodDNSConfig", None, &[
        ("nameservers", ATOMIC),
        ("options", ATOMIC),
        ("searches", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.PodSecurityContext", None, &[
        ("supplementalGroups", ATOMIC),
        ("sysctls", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.PodSpec", None, &[
        ("containers", map(&["name"]).strategy("merge").merge_key("name")),
        ("ephemeralContainers", map(&["name"]).strategy("merge").merge_key("name")),
        ("hostAliases", map(&["ip"]).strategy("merge").merge_key("ip")),
        ("imagePullSecrets", map(&["name"]).strategy("merge").merge_key("name")),
        ("initContainers", map(&["name"]).strategy("merge").merge_key("name")),
        ("nodeSelector", NONE.map_type("atomic")),
        ("readinessGates", ATOMIC),
        ("resourceClaims", map(&["name"]).strategy("merge,retainKeys").merge_key("name")),
        ("schedulingGates", map(&["name"]).strategy("merge").merge_key("name")),
        ("tolerations", ATOMIC),
        ("topologySpreadConstraints",
            map(&["topologyKey", "whenUnsatisfiable"]).strategy("merge").merge_key("topologyKey")),
        ("volumes", map(&["name"]).strategy("merge,retainKeys").merge_key("name")),
    ]),
    def("io.k8s.api.core.v1.PodStatus", None, &[
        ("conditions", map(&["type"]).strategy("merge").merge_key("type")),
        ("containerStatuses", ATOMIC),
        ("ephemeralContainerStatuses", ATOMIC),
        ("hostIPs", ATOMIC.strategy("merge").merge_key("ip")),
        ("initContainerStatuses", ATOMIC),
        ("podIPs", map(&["ip"]).strategy("merge").merge_key("ip")),
        ("resourceClaimStatuses", map(&["name"]).strategy("merge,retainKeys").merge_key("name")),
    ]),
    def("io.k8s.api.core.v1.ProjectedVolumeSource", None, &[
        ("sources", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.RBDPersistentVolumeSource", None, &[
        ("monitors", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.RBDVolumeSource", None, &[
        ("monitors", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.ReplicationControllerSpec", None, &[
        ("selector", NONE.map_type("atomic")),
    ]),
    def("io.k8s.api.core.v1.ReplicationControllerStatus", None, &[
        ("conditions", map(&["type"]).strategy("merge").merge_key("type")),
    ]),
    def("io.k8s.api.core.v1.ResourceFieldSelector", Some("atomic"), &[
    ]),
    def("io.k8s.api.core.v1.ResourceQuotaSpec", None, &[
        ("scopes", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.ResourceRequirements", None, &[
        ("claims", map(&["name"])),
    ]),
    def("io.k8s.api.core.v1.ResourceStatus", None, &[
        ("resources", map(&["resourceID"])),
    ]),
    def("io.k8s.api.core.v1.ScopeSelector", Some("atomic"), &[
        ("matchExpressions", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.ScopedResourceSelectorRequirement", None, &[
        ("values", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.SecretKeySelector", Some("atomic"), &[
    ]),
    def("io.k8s.api.core.v1.SecretProjection", None, &[
        ("items", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.SecretReference", Some("atomic"), &[
    ]),
    def("io.k8s.api.core.v1.SecretVolumeSource", None, &[
        ("items", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.ServiceAccount", None, &[
        ("imagePullSecrets", ATOMIC),
        ("secrets", map(&["name"]).strategy("merge").merge_key("name")),
    ]),
    def("io.k8s.api.core.v1.ServiceSpec", None, &[
        ("clusterIPs", ATOMIC),
        ("externalIPs", ATOMIC),
        ("ipFamilies", ATOMIC),
        ("loadBalancerSourceRanges", ATOMIC),
        ("ports", map(&["port", "protocol"]).strategy("merge").merge_key("port")),
        ("selector", NONE.map_type("atomic")),
    ]),
    def("io.k8s.api.core.v1.ServiceStatus", None, &[
        ("conditions", map(&["type"]).strategy("merge").merge_key("type")),
    ]),
    def("io.k8s.api.core.v1.TopologySelectorLabelRequirement", None, &[
        ("values", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.TopologySelectorTerm", Some("atomic"), &[
        ("matchLabelExpressions", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.TopologySpreadConstraint", None, &[
        ("matchLabelKeys", ATOMIC),
    ]),
    def("io.k8s.api.core.v1.TypedLocalObjectReference", Some("atomic"), &[
    ]),
    def("io.k8s.api.discovery.v1.Endpoint", None, &[
        ("addresses", SET),
    ]),
    def("io.k8s.api.discovery.v1.EndpointHints", None, &[
        ("forNodes", ATOMIC),
        ("forZones", ATOMIC),
    ]),
    def("io.k8s.api.discovery.v1.EndpointPort", Some("atomic"), &[
    ]),
    def("io.k8s.api.discovery.v1.EndpointSlice", None, &[
        ("endpoints", ATOMIC),
        ("ports", ATOMIC),
    ]),
    def("io.k8s.api.flowcontrol.v1.FlowSchemaSpec", None, &[
        ("rules", ATOMIC),
    ]),
    def("io.k8s.api.flowcontrol.v1.FlowSchemaStatus", None, &[
        ("conditions", map(&["type"]).strategy("merge").merge_key("type")),
    ]),
    def("io.k8s.api.flowcontrol.v1.NonResourcePolicyRule", None, &[
        ("nonResourceURLs", SET),
        ("verbs", SET),
    ]),
    def("io.k8s.api.flowcontrol.v1.PolicyRulesWithSubjects", None, &[
        ("nonResourceRules", ATOMIC),
        ("resourceRules", ATOMIC),
        ("subjects", ATOMIC),
    ]),
    def("io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationStatus", None, &[
        ("conditions", map(&["type"]).strategy("merge").merge_key("type")),
    ]),
    def("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", None, &[
        ("apiGroups", SET),
        ("namespaces", SET),
        ("resources", SET),
        ("verbs", SET),
    ]),
    def("io.k8s.api.networking.v1.HTTPIngressRuleValue", None, &[
        ("paths", ATOMIC),
    ]),
    def("io.k8s.api.networking.v1.IPBlock", None, &[
        ("except", ATOMIC),
    ]),
    def("io.k8s.api.networking.v1.IngressLoadBalancerIngress", None, &[
        ("ports", ATOMIC),
    ]),
    def("io.k8s.api.networking.v1.IngressLoadBalancerStatus", None, &[
        ("ingress", ATOMIC),
    ]),
    def("io.k8s.api.networking.v1.IngressSpec", None, &[
        ("rules", ATOMIC),
        ("tls", ATOMIC),
    ]),
    def("io.k8s.api.networking.v1.IngressTLS", None, &[
        ("hosts", ATOMIC),
    ]),
    def("io.k8s.api.networking.v1.NetworkPolicyEgressRule", None, &[
        ("ports", ATOMIC),
        ("to", ATOMIC),
    ]),
    def("io.k8s.api.networking.v1.NetworkPolicyIngressRule", None, &[
        ("from", ATOMIC),
        ("ports", ATOMIC),
    ]),
    def("io.k8s.api.networking.v1.NetworkPolicySpec", None, &[
        ("egress", ATOMIC),
        ("ingress", ATOMIC),
        ("policyTypes", ATOMIC),
    ]),
    def("io.k8s.api.networking.v1.ServiceBackendPort", Some("atomic"), &[
    ]),
    def("io.k8s.api.networking.v1.ServiceCIDRSpec", None, &[
        ("cidrs", ATOMIC),
    ]),
    def("io.k8s.api.networking.v1.ServiceCIDRStatus", None, &[
        ("conditions", map(&["type"]).strategy("merge").merge_key("type")),
    ]),
    def("io.k8s.api.node.v1.Scheduling", None, &[
        ("nodeSelector", NONE.map_type("atomic")),
        ("tolerations", ATOMIC),
    ]),
    def("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", None, &[
        ("selector", NONE.strategy("replace")),
    ]),
    def("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", None, &[
        ("conditions", map(&["type"]).strategy("merge").merge_key("type")),
    ]),
    def("io.k8s.api.rbac.v1.AggregationRule", None, &[
        ("clusterRoleSelectors", ATOMIC),
    ]),
    def("io.k8s.api.rbac.v1.ClusterRole", None, &[
        ("rules", ATOMIC),
    ]),
    def("io.k8s.api.rbac.v1.ClusterRoleBinding", None, &[
        ("subjects", ATOMIC),
    ]),
    def("io.k8s.api.rbac.v1.PolicyRule", None, &[
        ("apiGroups", ATOMIC),
        ("nonResourceURLs", ATOMIC),
        ("resourceNames", ATOMIC),
        ("resources", ATOMIC),
        ("verbs", ATOMIC),
    ]),
    def("io.k8s.api.rbac.v1.Role", None, &[
        ("rules", ATOMIC),
    ]),
    def("io.k8s.api.rbac.v1.RoleBinding", None, &[
        ("subjects", ATOMIC),
    ]),
    def("io.k8s.api.rbac.v1.RoleRef", Some("atomic"), &[
    ]),
    def("io.k8s.api.rbac.v1.Subject", Some("atomic"), &[
    ]),
    def("io.k8s.api.storage.v1.CSIDriverSpec", None, &[
        ("tokenRequests", ATOMIC),
        ("volumeLifecycleModes", SET),
    ]),
    def("io.k8s.api.storage.v1.CSINodeDriver", None, &[
        ("topologyKeys", ATOMIC),
    ]),
    def("io.k8s.api.storage.v1.CSINodeSpec", None, &[
        ("drivers", map(&["name"]).strategy("merge").merge_key("name")),
    ]),
    def("io.k8s.api.storage.v1.StorageClass", None, &[
        ("allowedTopologies", ATOMIC),
        ("mountOptions", ATOMIC),
    ]),
    def("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionNames", None, &[
        ("categories", ATOMIC),
        ("shortNames", ATOMIC),
    ]),
    def("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionSpec", None, &[
        ("versions", ATOMIC),
    ]),
    def("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus", None, &[
        ("conditions", map(&["type"])),
        ("storedVersions", ATOMIC),
    ]),
    def("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion", None, &[
        ("additionalPrinterColumns", ATOMIC),
        ("selectableFields", ATOMIC),
    ]),
    def("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", None, &[
        ("allOf", ATOMIC),
        ("anyOf", ATOMIC),
        ("enum", ATOMIC),
        ("oneOf", ATOMIC),
        ("required", ATOMIC),
        ("x-kubernetes-list-map-keys", ATOMIC),
        ("x-kubernetes-validations", map(&["rule"]).strategy("merge").merge_key("rule")),
    ]),
    def("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.WebhookConversion", None, &[
        ("conversionReviewVersions", ATOMIC),
    ]),
    def("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions", None, &[
        ("dryRun", ATOMIC),
    ]),
    def("io.k8s.apimachinery.pkg.apis.meta.v1.FieldSelectorRequirement", None, &[
        ("values", ATOMIC),
    ]),
    def("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", Some("atomic"), &[
        ("matchExpressions", ATOMIC),
    ]),
    def("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement", None, &[
        ("values", ATOMIC),
    ]),
    def("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", None, &[
        ("finalizers", SET.strategy("merge")),
        ("managedFields", ATOMIC),
        ("ownerReferences", map(&["uid"]).strategy("merge").merge_key("uid")),
    ]),
    def("io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference", Some("atomic"), &[
    ]),
    def("io.k8s.apimachinery.pkg.apis.meta.v1.Status", None, &[
        ("details", ATOMIC),
    ]),
    def("io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails", None, &[
        ("causes", ATOMIC),
    ]),
    def("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceSpec", None, &[
        ("caBundle", ATOMIC),
    ]),
    def("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus", None, &[
        ("conditions", map(&["type"]).strategy("merge").merge_key("type")),
    ]),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schemas::{Catalog, Descriptions};
    use crate::testing::all_builtin_resources;

    #[test]
    fn every_fact_names_a_generated_property() {
        let catalog = Catalog::build(&all_builtin_resources(), Descriptions::Keep);
        for facts in FACTS {
            let schema = catalog.defs.get(facts.name);
            assert!(schema.is_some(), "{} is not reachable from any GA kind", facts.name);
            for (prop, _) in facts.props {
                assert!(
                    schema.and_then(|s| s["properties"].get(*prop)).is_some(),
                    "{}.{prop} is not a k8s-openapi property",
                    facts.name
                );
            }
        }
        for (name, required) in REQUIRED {
            let props = &catalog.defs[*name]["properties"];
            assert!(required.iter().all(|r| props.get(*r).is_some()), "{name}");
        }
    }
}
