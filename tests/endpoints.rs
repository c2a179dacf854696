//! The Endpoints and EndpointSlice controllers against a real `kate server`. There is no
//! kubelet: the test gives pods their IPs and readiness through the status subresource, as a
//! kubelet would.

use std::time::Duration;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kate_e2e::{Cluster, eventually, table};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

/// A pod labelled `app` whose container names `port` "http".
async fn create_pod(pods: &Api<Pod>, name: &str, app: &str, port: i32) -> anyhow::Result<()> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"name": "http", "containerPort": port}]}]},
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    Ok(())
}

/// Sets what a kubelet would report: running, with an IP, ready or not.
async fn set_status(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) -> anyhow::Result<()> {
    let status = json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await?;
    Ok(())
}

/// The Endpoints' addresses as `ip:port` strings: (ready, not ready), sorted.
fn addresses(ep: &Endpoints) -> (Vec<String>, Vec<String>) {
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for subset in ep.subsets.iter().flatten() {
        let ports: Vec<i32> = subset.ports.iter().flatten().map(|p| p.port).collect();
        let list = |addresses: &Option<Vec<EndpointAddress>>, out: &mut Vec<String>| {
            for a in addresses.iter().flatten() {
                out.extend(ports.iter().map(|p| format!("{}:{p}", a.ip)));
            }
        };
        list(&subset.addresses, &mut ready);
        list(&subset.not_ready_addresses, &mut not_ready);
    }
    ready.sort();
    not_ready.sort();
    (ready, not_ready)
}

/// The slices' endpoints as `ip:port ready/serving/terminating` strings, sorted.
fn slice_endpoints(slices: &[EndpointSlice]) -> Vec<String> {
    let mut out = Vec::new();
    for slice in slices {
        for endpoint in &slice.endpoints {
            let c = endpoint.conditions.clone().unwrap_or_default();
            for port in slice.ports.iter().flatten() {
                out.push(format!(
                    "{}:{} {}/{}/{}",
                    endpoint.addresses.join(","),
                    port.port.unwrap_or_default(),
                    c.ready == Some(true),
                    c.serving == Some(true),
                    c.terminating == Some(true),
                ));
            }
        }
    }
    out.sort();
    out
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn services_publish_the_addresses_of_their_pods() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let client = c.client().await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let of_web = ListParams::default().labels("kubernetes.io/service-name=web");

    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }))?;
    let svc = services.create(&PostParams::default(), &svc).await?;
    // The named target port resolves per pod: each pod has its own number for "http".
    create_pod(&pods, "web-a", "web", 8080).await?;
    create_pod(&pods, "web-b", "web", 8081).await?;
    create_pod(&pods, "web-pending", "web", 8082).await?;
    create_pod(&pods, "other", "other", 8083).await?;
    set_status(&pods, "web-a", "10.244.0.1", true).await?;
    set_status(&pods, "web-b", "10.244.0.2", false).await?;
    set_status(&pods, "other", "10.244.0.4", true).await?;

    eventually("the endpoints of web", async || {
        let Some(ep) = endpoints.get_opt("web").await? else {
            return Ok(false);
        };
        Ok(addresses(&ep) == (strings(&["10.244.0.1:8080"]), strings(&["10.244.0.2:8081"])))
    })
    .await?;
    let ep = endpoints.get("web").await?;
    assert_eq!(
        ep.labels().get("tier").map(String::as_str),
        Some("front"),
        "the service's labels"
    );
    let address = &ep
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten())
        .next()
        .cloned();
    let target = address.as_ref().and_then(|a| a.target_ref.clone()).unwrap_or_default();
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref()),
        (Some("Pod"), Some("web-a"))
    );

    eventually("the endpoint slices of web", async || {
        let listed = slices.list(&of_web).await?.items;
        Ok(slice_endpoints(&listed)
            == strings(&["10.244.0.1:8080 true/true/false", "10.244.0.2:8081 false/false/false"]))
    })
    .await?;
    let listed = slices.list(&of_web).await?.items;
    for slice in &listed {
        assert_eq!(slice.address_type, "IPv4");
        assert_eq!(
            slice
                .labels()
                .get("endpointslice.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("endpointslice-controller.k8s.io")
        );
        assert_eq!(slice.labels().get("tier").map(String::as_str), Some("front"));
        let owner = &slice.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Service", "web"));
        assert_eq!(Some(&owner.uid), svc.metadata.uid.as_ref());
        assert_eq!(owner.controller, Some(true));
        assert_eq!(
            slice.ports.iter().flatten().next().and_then(|p| p.name.as_deref()),
            Some("http")
        );
        let target = slice.endpoints[0].target_ref.clone().unwrap_or_default();
        assert!(target.name.is_some_and(|n| n.starts_with("web-")));
    }
    assert_eq!(listed.len(), 2, "pods with different ports go into different slices");

    // kubectl shows the ready addresses of the Endpoints and every address of the slices.
    let rows = table(&c.kubectl(&["get", "endpoints", "web"])?);
    assert_eq!(rows[1][1], "10.244.0.1:8080", "{rows:?}");
    let out = c.kubectl(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web"])?;
    assert!(
        out.contains("IPv4") && out.contains("10.244.0.1") && out.contains("10.244.0.2"),
        "{out}"
    );

    // Nothing changes while nothing happens.
    let before = endpoints.get("web").await?.resource_version();
    let slice_versions: Vec<_> = listed.iter().map(|s| s.resource_version()).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(endpoints.get("web").await?.resource_version(), before);
    let mut after: Vec<_> = slices
        .list(&of_web)
        .await?
        .items
        .iter()
        .map(|s| s.resource_version())
        .collect();
    let mut expected = slice_versions;
    after.sort();
    expected.sort();
    assert_eq!(after, expected);

    // web-b turns ready; web-a goes; web-pending gets an IP but is relabelled away.
    set_status(&pods, "web-b", "10.244.0.2", true).await?;
    pods.delete("web-a", &DeleteParams::default()).await?;
    eventually("web-a to leave and web-b to be ready", async || {
        let ep = endpoints.get("web").await?;
        let listed = slices.list(&of_web).await?.items;
        Ok(addresses(&ep) == (strings(&["10.244.0.2:8081"]), vec![])
            && slice_endpoints(&listed) == strings(&["10.244.0.2:8081 true/true/false"])
            && listed.len() == 1)
    })
    .await?;
    set_status(&pods, "web-pending", "10.244.0.3", true).await?;
    eventually("web-pending to join", async || {
        Ok(addresses(&endpoints.get("web").await?).0 == strings(&["10.244.0.2:8081", "10.244.0.3:8082"]))
    })
    .await?;
    let relabel = json!({"metadata": {"labels": {"app": "other"}}});
    pods.patch("web-pending", &PatchParams::default(), &Patch::Merge(relabel))
        .await?;
    eventually("the relabelled pod to leave", async || {
        Ok(addresses(&endpoints.get("web").await?).0 == strings(&["10.244.0.2:8081"]))
    })
    .await?;

    // A deleted Endpoints object comes back; the service's deletion takes everything along.
    endpoints.delete("web", &DeleteParams::default()).await?;
    eventually("the endpoints to be recreated", async || {
        Ok(endpoints.get_opt("web").await?.is_some())
    })
    .await?;
    services.delete("web", &DeleteParams::default()).await?;
    eventually("the endpoints and slices of web to go", async || {
        Ok(endpoints.get_opt("web").await?.is_none() && slices.list(&of_web).await?.items.is_empty())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn services_without_selectors_are_left_alone() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let client = c.client().await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");

    let manual: Service = serde_json::from_value(json!({
        "metadata": {"name": "external"},
        "spec": {"ports": [{"port": 5432}]},
    }))?;
    services.create(&PostParams::default(), &manual).await?;
    let ep: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "external"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 5432}]}],
    }))?;
    let ep = endpoints.create(&PostParams::default(), &ep).await?;
    // A selecting service in the same namespace shows the controller is running.
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}]},
    }))?;
    services.create(&PostParams::default(), &svc).await?;
    create_pod(&pods, "db-0", "db", 5432).await?;
    set_status(&pods, "db-0", "10.244.1.1", true).await?;
    eventually("the endpoints of db", async || {
        let Some(ep) = endpoints.get_opt("db").await? else {
            return Ok(false);
        };
        Ok(addresses(&ep).0 == strings(&["10.244.1.1:5432"]))
    })
    .await?;

    let kept = endpoints.get("external").await?;
    assert_eq!(kept.resource_version(), ep.resource_version());
    let external = ListParams::default().labels("kubernetes.io/service-name=external");
    assert!(slices.list(&external).await?.items.is_empty());
    // The API server's own service keeps the API server's endpoints.
    let kubernetes = endpoints.get("kubernetes").await?;
    assert!(
        kubernetes
            .labels()
            .contains_key("endpointslice.kubernetes.io/skip-mirror")
    );
    Ok(())
}
