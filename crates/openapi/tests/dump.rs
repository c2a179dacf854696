use kate_openapi::*;
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
fn dump_all() {
    let res = vec![
        r(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            true,
            &["status"],
        ),
        r(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicys",
            true,
            &["status"],
        ),
        r(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
            true,
            &["status"],
        ),
        r(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            true,
            &["status"],
        ),
        r(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            true,
            &["status"],
        ),
        r("apps", "v1", "DaemonSet", "daemonsets", true, &["status"]),
        r("apps", "v1", "Deployment", "deployments", true, &["status"]),
        r("apps", "v1", "ReplicaSet", "replicasets", true, &["status"]),
        r(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            true,
            &["status"],
        ),
        r(
            "authentication.k8s.io",
            "v1",
            "SelfSubjectReview",
            "selfsubjectreviews",
            true,
            &["status"],
        ),
        r(
            "authentication.k8s.io",
            "v1",
            "TokenRequest",
            "tokenrequests",
            true,
            &["status"],
        ),
        r(
            "authentication.k8s.io",
            "v1",
            "TokenReview",
            "tokenreviews",
            true,
            &["status"],
        ),
        r(
            "authorization.k8s.io",
            "v1",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            true,
            &["status"],
        ),
        r(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            true,
            &["status"],
        ),
        r(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            true,
            &["status"],
        ),
        r(
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
            true,
            &["status"],
        ),
        r(
            "autoscaling",
            "v1",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
            &["status"],
        ),
        r("autoscaling", "v1", "Scale", "scales", true, &["status"]),
        r(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
            &["status"],
        ),
        r("batch", "v1", "CronJob", "cronjobs", true, &["status"]),
        r("batch", "v1", "Job", "jobs", true, &["status"]),
        r(
            "certificates.k8s.io",
            "v1",
            "CertificateSigningRequest",
            "certificatesigningrequests",
            true,
            &["status"],
        ),
        r(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            true,
            &["status"],
        ),
        r("", "v1", "Binding", "bindings", true, &["status"]),
        r(
            "",
            "v1",
            "ComponentStatus",
            "componentstatuss",
            true,
            &["status"],
        ),
        r("", "v1", "ConfigMap", "configmaps", true, &["status"]),
        r("", "v1", "Endpoints", "endpointss", true, &["status"]),
        r("", "v1", "Event", "events", true, &["status"]),
        r("", "v1", "LimitRange", "limitranges", true, &["status"]),
        r("", "v1", "Namespace", "namespaces", true, &["status"]),
        r("", "v1", "Node", "nodes", true, &["status"]),
        r(
            "",
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            true,
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
        r("", "v1", "Pod", "pods", true, &["status"]),
        r("", "v1", "PodTemplate", "podtemplates", true, &["status"]),
        r(
            "",
            "v1",
            "ReplicationController",
            "replicationcontrollers",
            true,
            &["status"],
        ),
        r(
            "",
            "v1",
            "ResourceQuota",
            "resourcequotas",
            true,
            &["status"],
        ),
        r("", "v1", "Secret", "secrets", true, &["status"]),
        r("", "v1", "Service", "services", true, &["status"]),
        r(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["status"],
        ),
        r(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
            &["status"],
        ),
        r("events.k8s.io", "v1", "Event", "events", true, &["status"]),
        r(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "FlowSchema",
            "flowschemas",
            true,
            &["status"],
        ),
        r(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "PriorityLevelConfiguration",
            "prioritylevelconfigurations",
            true,
            &["status"],
        ),
        r(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "ingresss",
            true,
            &["status"],
        ),
        r(
            "networking.k8s.io",
            "v1",
            "IngressClass",
            "ingressclasss",
            true,
            &["status"],
        ),
        r(
            "networking.k8s.io",
            "v1",
            "IPAddress",
            "ipaddresss",
            true,
            &["status"],
        ),
        r(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicys",
            true,
            &["status"],
        ),
        r(
            "networking.k8s.io",
            "v1",
            "ServiceCIDR",
            "servicecidrs",
            true,
            &["status"],
        ),
        r(
            "node.k8s.io",
            "v1",
            "RuntimeClass",
            "runtimeclasss",
            true,
            &["status"],
        ),
        r("policy", "v1", "Eviction", "evictions", true, &["status"]),
        r(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
            &["status"],
        ),
        r(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            true,
            &["status"],
        ),
        r(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            true,
            &["status"],
        ),
        r(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            true,
            &["status"],
        ),
        r(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
            &["status"],
        ),
        r(
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            "priorityclasss",
            true,
            &["status"],
        ),
        r(
            "storage.k8s.io",
            "v1",
            "CSIDriver",
            "csidrivers",
            true,
            &["status"],
        ),
        r(
            "storage.k8s.io",
            "v1",
            "CSINode",
            "csinodes",
            true,
            &["status"],
        ),
        r(
            "storage.k8s.io",
            "v1",
            "CSIStorageCapacity",
            "csistoragecapacitys",
            true,
            &["status"],
        ),
        r(
            "storage.k8s.io",
            "v1",
            "StorageClass",
            "storageclasss",
            true,
            &["status"],
        ),
        r(
            "storage.k8s.io",
            "v1",
            "VolumeAttachment",
            "volumeattachments",
            true,
            &["status"],
        ),
        r(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            true,
            &["status"],
        ),
        r(
            "apiregistration.k8s.io",
            "v1",
            "APIService",
            "apiservices",
            true,
            &["status"],
        ),
    ];
    let o = OpenApi::new(res);
    let s = o.kind_schema("apps", "v1", "Deployment").unwrap();
    std::fs::write(
        "/tmp/catalog-all.json",
        serde_json::to_vec_pretty(s.defs()).unwrap(),
    )
    .unwrap();
    let t = std::time::Instant::now();
    let root = o.root();
    eprintln!(
        "all docs {:?} {}",
        t.elapsed(),
        root["paths"].as_object().unwrap().len()
    );
}

#[test]
fn dump() {
    let res = vec![
        r("", "v1", "Namespace", "namespaces", false, &["status"]),
        r("", "v1", "Pod", "pods", true, &["status", "log", "exec"]),
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
        r("example.com", "v1", "Widget", "widgets", true, &[]),
    ];
    let rss = || {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("VmRSS"))
            .unwrap()
            .to_string()
    };
    eprintln!("before {}", rss());
    let t = std::time::Instant::now();
    let o = OpenApi::new(res);
    eprintln!("new {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let s = o.kind_schema("apps", "v1", "Deployment").unwrap();
    eprintln!("catalog {:?} defs {}", t.elapsed(), s.defs().len());
    std::fs::write(
        "/tmp/catalog.json",
        serde_json::to_vec_pretty(s.defs()).unwrap(),
    )
    .unwrap();
    for p in [
        "api/v1",
        "apis/apps/v1",
        "apis/batch/v1",
        "apis/example.com/v1",
    ] {
        let t = std::time::Instant::now();
        let d = o.document(p).unwrap();
        eprintln!("{p} {} bytes {:?}", d.json.len(), t.elapsed());
        std::fs::write(format!("/tmp/doc-{}.json", p.replace('/', "_")), &d.json).unwrap();
    }
    std::fs::write("/tmp/root.json", o.root().to_string()).unwrap();
    eprintln!("after {}", rss());
}
