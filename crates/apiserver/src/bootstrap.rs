//! Objects every cluster has from its first start: the system namespaces and the `kubernetes`
//! service with its endpoints pointing at this API server.

use std::net::IpAddr;

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::registry::{Registry, WriteOptions};

/// The namespaces every cluster has.
pub const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates what is missing and points the `kubernetes` endpoints at `address:port`.
pub async fn run(registry: &Registry, address: IpAddr, port: u16) -> Result<(), ApiError> {
    for name in SYSTEM_NAMESPACES {
        ensure(
            registry,
            "namespaces",
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .await?;
    }
    crate::priority::bootstrap(registry).await?;
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": registry.apiserver_service_ip().to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
        },
    });
    ensure(registry, "services", Some("default"), service).await?;
    let endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": address.to_string()}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    upsert(registry, "endpoints", Some("default"), endpoints).await?;
    // Service proxies read EndpointSlices, so the API server publishes its own as upstream does.
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {
            "kubernetes.io/service-name": "kubernetes",
            "endpointslice.kubernetes.io/managed-by": "kube-apiserver",
        }},
        "addressType": if address.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{"addresses": [address.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    upsert(registry, "endpointslices", Some("default"), slice).await
}

fn def(registry: &Registry, plural: &str) -> Result<std::sync::Arc<crate::catalog::ResourceDef>, ApiError> {
    let (group, version) = match plural {
        "endpointslices" => ("discovery.k8s.io", "v1"),
        _ => ("", "v1"),
    };
    registry
        .catalog
        .find(group, version, plural)
        .cloned()
        .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))
}

fn name_of(obj: &Value) -> String {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Creates `obj` unless it exists.
async fn ensure(registry: &Registry, plural: &str, ns: Option<&str>, obj: Value) -> Result<(), ApiError> {
    let def = def(registry, plural)?;
    if registry.get(&def, ns, &name_of(&obj)).await.is_ok() {
        return Ok(());
    }
    match registry.create(&def, ns, obj, &WriteOptions::default()).await {
        Err(e) if e.code != 409 => Err(e),
        _ => Ok(()),
    }
}

/// Creates `obj`, or replaces the stored one with it.
async fn upsert(registry: &Registry, plural: &str, ns: Option<&str>, obj: Value) -> Result<(), ApiError> {
    let def = def(registry, plural)?;
    let name = name_of(&obj);
    match registry.get(&def, ns, &name).await {
        Ok(_) => registry
            .update(&def, ns, &name, obj, None, &WriteOptions::default())
            .await
            .map(drop),
        Err(_) => registry.create(&def, ns, obj, &WriteOptions::default()).await.map(drop),
    }
}
