use kate_openapi::*;
fn r(g: &str, k: &str, p: &str, ns: bool, subs: &[&str]) -> ApiResource {
    ApiResource { group: g.into(), version: "v1".into(), kind: k.into(), plural: p.into(), namespaced: ns, subresources: subs.iter().map(|s| s.to_string()).collect(), list_kind: format!("{k}List") }
}
#[test]
fn measure() {
    let res = vec![
        r("", "Namespace", "namespaces", false, &["status"]), r("", "Pod", "pods", true, &["status"]), r("", "Node", "nodes", false, &["status"]),
        r("", "Service", "services", true, &["status"]), r("", "Endpoints", "endpoints", true, &[]), r("", "ConfigMap", "configmaps", true, &[]),
        r("", "Secret", "secrets", true, &[]), r("", "ServiceAccount", "serviceaccounts", true, &[]), r("", "Event", "events", true, &[]),
        r("", "PersistentVolume", "persistentvolumes", false, &["status"]), r("", "PersistentVolumeClaim", "persistentvolumeclaims", true, &["status"]),
        r("", "LimitRange", "limitranges", true, &[]), r("", "ResourceQuota", "resourcequotas", true, &["status"]),
        r("apps", "Deployment", "deployments", true, &["status", "scale"]), r("apps", "ReplicaSet", "replicasets", true, &["status", "scale"]),
        r("apps", "StatefulSet", "statefulsets", true, &["status", "scale"]), r("apps", "DaemonSet", "daemonsets", true, &["status"]),
        r("apps", "ControllerRevision", "controllerrevisions", true, &[]),
    ];
    let t = std::time::Instant::now();
    let o = OpenApi::new(res);
    eprintln!("new {:?}", t.elapsed());
    for p in ["apis/apps/v1", "api/v1"] {
        let t = std::time::Instant::now();
        let d = o.document(p).unwrap();
        eprintln!("{p}: {} bytes in {:?}", d.json.len(), t.elapsed());
    }
    let t = std::time::Instant::now();
    o.kind_schema("apps", "v1", "Deployment").unwrap();
    eprintln!("lean catalog {:?}", t.elapsed());
}
