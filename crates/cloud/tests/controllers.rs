//! The cloud controllers against kate's real API server (in-process, on a temporary store) with
//! the local provider and with a fake one: finalizers, status, node initialization, port
//! conflicts, restarts and provider failures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, LoadBalancerIngress, Node, Service};
use kate_cloud::service::FINALIZER;
use kate_cloud::{Error, InstanceMetadata, Provider, async_trait};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

/// An API server on a temporary store, and a client of it.
struct Cluster {
    client: kube::Client,
    _server: kate_apiserver::Server,
    _dir: tempfile::TempDir,
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn kate_store::Store> =
        Arc::new(kate_store::sqlite::SqliteStore::open(&dir.path().join("state.db")).expect("store"));
    let config = kate_apiserver::Config {
        data_dir: dir.path().to_path_buf(),
        bind_address: "127.0.0.1".parse().expect("address"),
        port: 0,
        extra_sans: Vec::new(),
        history: Duration::from_secs(300),
    };
    let server = kate_apiserver::Server::start(&config, store, &|_| {})
        .await
        .expect("API server");
    let client = kube::Client::new(
        server.loopback("system:cloud-controller-manager", "cloud-controller-manager-test"),
        "default",
    );
    Cluster {
        client,
        _server: server,
        _dir: dir,
    }
}

/// Polls `check` until it returns something, for up to 20 s.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..400 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Registers a node (as its kubelet would) and reports its readiness and address.
async fn add_node(client: &kube::Client, name: &str, ip: &str, taints: serde_json::Value) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"taints": taints}})).expect("node");
    nodes.create(&PostParams::default(), &node).await.expect("create node");
    set_node(client, name, ip, true).await;
}

async fn set_node(client: &kube::Client, name: &str, ip: &str, ready: bool) {
    let nodes: Api<Node> = Api::all(client.clone());
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("node status");
}

async fn add_service(client: &kube::Client, name: &str, port: u16, extra: serde_json::Value) {
    let services: Api<Service> = Api::default_namespaced(client.clone());
    let mut spec = json!({"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"port": port}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    let svc = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("service");
    services
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service");
}

async fn get_service(client: &kube::Client, name: &str) -> Option<Service> {
    let services: Api<Service> = Api::default_namespaced(client.clone());
    services.get_opt(name).await.expect("get service")
}

fn ingress_ips(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
}

fn has_finalizer(svc: &Service) -> bool {
    svc.finalizers().iter().any(|f| f == FINALIZER)
}

/// Waits until the Service has the finalizer and exactly `ips` as its ingress.
async fn wait_ingress(client: &kube::Client, name: &str, ips: &[&str]) -> Service {
    eventually(&format!("{name} to get ingress {ips:?}"), async || {
        let svc = get_service(client, name).await?;
        (has_finalizer(&svc) && ingress_ips(&svc) == ips).then_some(svc)
    })
    .await
}

/// The reasons of the events about the Service `name`.
async fn event_reasons(client: &kube::Client, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let list = events.list(&ListParams::default()).await.expect("events");
    list.items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

async fn delete_service(client: &kube::Client, name: &str) {
    let services: Api<Service> = Api::default_namespaced(client.clone());
    services
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete service");
}

async fn wait_gone(client: &kube::Client, name: &str) {
    eventually(&format!("{name} to be gone"), async || {
        get_service(client, name).await.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_load_balancers_follow_services_and_nodes() {
    let c = cluster().await;
    let config = kate_cloud::Config {
        identity: "test-ccm".into(),
        ..Default::default()
    };
    let provider = kate_cloud::builtin("local", &c.client).expect("the local provider");
    let ccm = tokio::spawn(kate_cloud::run(c.client.clone(), provider, config));
    add_node(&c.client, "n1", "192.0.2.10", json!([])).await;
    add_service(&c.client, "web", 80, json!({})).await;

    let web = wait_ingress(&c.client, "web", &["192.0.2.10"]).await;
    let ingress = &web
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.clone())
        .expect("ingress")[0];
    assert_eq!(ingress.ip_mode.as_deref(), Some("VIP"));

    // The node is initialized: provider ID and topology labels.
    let nodes: Api<Node> = Api::all(c.client.clone());
    let n1 = eventually("n1 to be initialized", async || {
        let n = nodes.get("n1").await.ok()?;
        n.labels().contains_key(kate_cloud::ZONE_LABEL).then_some(n)
    })
    .await;
    assert_eq!(
        n1.spec.as_ref().and_then(|s| s.provider_id.as_deref()),
        Some("local://n1")
    );
    assert_eq!(n1.labels()[kate_cloud::ZONE_LABEL], "local");
    assert_eq!(n1.labels()[kate_cloud::REGION_LABEL], "local");
    assert_eq!(n1.labels()[kate_cloud::INSTANCE_TYPE_LABEL], "local");

    // Nodes joining and turning unready change the ingress.
    add_node(&c.client, "n2", "192.0.2.11", json!([])).await;
    wait_ingress(&c.client, "web", &["192.0.2.10", "192.0.2.11"]).await;
    set_node(&c.client, "n2", "192.0.2.11", false).await;
    wait_ingress(&c.client, "web", &["192.0.2.10"]).await;

    // A second Service on the same port waits, with a warning; another port is fine.
    add_service(&c.client, "web2", 80, json!({})).await;
    add_service(&c.client, "api", 8080, json!({})).await;
    wait_ingress(&c.client, "api", &["192.0.2.10"]).await;
    eventually("web2's warning", async || {
        event_reasons(&c.client, "web2")
            .await
            .iter()
            .any(|r| r == "SyncLoadBalancerFailed")
            .then_some(())
    })
    .await;
    let web2 = get_service(&c.client, "web2").await.expect("web2");
    assert!(has_finalizer(&web2) && ingress_ips(&web2).is_empty(), "{web2:?}");

    // web stops being a LoadBalancer: its balancer is deleted, its status cleared, the
    // finalizer released; then web2 gets the port.
    let services: Api<Service> = Api::default_namespaced(c.client.clone());
    services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": null}]}})),
        )
        .await
        .expect("make web a ClusterIP");
    eventually("web to be cleaned up", async || {
        let svc = get_service(&c.client, "web").await?;
        (!has_finalizer(&svc) && ingress_ips(&svc).is_empty()).then_some(())
    })
    .await;
    wait_ingress(&c.client, "web2", &["192.0.2.10"]).await;
    let reasons = event_reasons(&c.client, "web").await;
    assert!(reasons.iter().any(|r| r == "DeletedLoadBalancer"), "{reasons:?}");

    // Deleting a Service releases its finalizer.
    delete_service(&c.client, "web2").await;
    wait_gone(&c.client, "web2").await;

    // The controllers ran under their own lease.
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-system");
    let lease = leases.get(kate_cloud::LEASE_NAME).await.expect("lease");
    assert_eq!(lease.spec.and_then(|s| s.holder_identity).as_deref(), Some("test-ccm"));
    ccm.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_finishes_what_was_started() {
    let c = cluster().await;
    let start = || {
        let provider = kate_cloud::builtin("local", &c.client).expect("the local provider");
        tokio::spawn(kate_cloud::run_controllers(
            c.client.clone(),
            provider,
            Default::default(),
        ))
    };
    let ccm = start();
    add_node(
        &c.client,
        "n1",
        "192.0.2.20",
        json!([
            {"key": kate_cloud::UNINITIALIZED_TAINT, "value": "true", "effect": "NoSchedule"},
            {"key": "dedicated", "value": "db", "effect": "NoSchedule"},
        ]),
    )
    .await;
    add_service(&c.client, "web", 80, json!({})).await;
    wait_ingress(&c.client, "web", &["192.0.2.20"]).await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let taints = eventually("the uninitialized taint to go", async || {
        let n = nodes.get("n1").await.ok()?;
        let taints: Vec<String> = n.spec?.taints?.into_iter().map(|t| t.key).collect();
        (!taints.iter().any(|t| t == kate_cloud::UNINITIALIZED_TAINT)).then_some(taints)
    })
    .await;
    assert_eq!(taints, ["dedicated"]);

    // Stopped, the controller holds the Service through its finalizer…
    ccm.abort();
    let _ = ccm.await;
    delete_service(&c.client, "web").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = get_service(&c.client, "web").await.expect("held by the finalizer");
    assert!(held.metadata.deletion_timestamp.is_some());
    // …and, started again, finishes the deletion.
    let ccm = start();
    wait_gone(&c.client, "web").await;
    ccm.abort();
}

/// A provider that records its load-balancer calls and can be told to fail.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
    fail: AtomicBool,
}

#[async_trait]
impl Provider for Fake {
    fn name(&self) -> &str {
        "fake"
    }

    async fn instance_metadata(&self, _node: &Node) -> Result<Option<InstanceMetadata>, Error> {
        Ok(None)
    }

    async fn ensure_load_balancer(
        &self,
        service: &Service,
        _nodes: &[Node],
    ) -> Result<Vec<LoadBalancerIngress>, Error> {
        self.call(format!("ensure {}", service.name_any()))?;
        Ok(vec![LoadBalancerIngress {
            hostname: Some(format!("{}.lb.example", service.name_any())),
            ..Default::default()
        }])
    }

    async fn delete_load_balancer(&self, service: &Service) -> Result<(), Error> {
        self.call(format!("delete {}", service.name_any()))
    }
}

impl Fake {
    fn call(&self, what: String) -> Result<(), Error> {
        self.calls.lock().expect("calls").push(what);
        if self.fail.load(Ordering::SeqCst) {
            return Err(Error::provider("the cloud is down"));
        }
        Ok(())
    }

    fn called(&self, what: &str) -> bool {
        self.calls.lock().expect("calls").iter().any(|c| c == what)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failures_keep_the_finalizer_and_classes_are_left_alone() {
    let c = cluster().await;
    let fake = Arc::new(Fake::default());
    let ccm = tokio::spawn(kate_cloud::run_controllers(
        c.client.clone(),
        fake.clone(),
        Default::default(),
    ));
    add_node(&c.client, "n1", "192.0.2.30", json!([])).await;
    add_service(&c.client, "web", 80, json!({})).await;
    add_service(
        &c.client,
        "classy",
        81,
        json!({"loadBalancerClass": "example.com/other"}),
    )
    .await;
    let web = eventually("web's hostname ingress", async || {
        let svc = get_service(&c.client, "web").await?;
        let host = svc.status?.load_balancer?.ingress?.first()?.hostname.clone()?;
        Some(host)
    })
    .await;
    assert_eq!(web, "web.lb.example");
    // The node is not the fake cloud's: untouched.
    let nodes: Api<Node> = Api::all(c.client.clone());
    let n1 = nodes.get("n1").await.expect("n1");
    assert_eq!(n1.spec.and_then(|s| s.provider_id), None);

    // A failing delete keeps the Service (and its balancer) until the cloud answers.
    fake.fail.store(true, Ordering::SeqCst);
    delete_service(&c.client, "web").await;
    eventually("a warning about the failed delete", async || {
        event_reasons(&c.client, "web")
            .await
            .iter()
            .any(|r| r == "SyncLoadBalancerFailed")
            .then_some(())
    })
    .await;
    assert!(get_service(&c.client, "web").await.is_some_and(|s| has_finalizer(&s)));
    fake.fail.store(false, Ordering::SeqCst);
    wait_gone(&c.client, "web").await;

    // A Service with another load-balancer class is another implementation's.
    let classy = get_service(&c.client, "classy").await.expect("classy");
    assert!(!has_finalizer(&classy));
    assert!(!fake.called("ensure classy"));
    delete_service(&c.client, "classy").await;
    wait_gone(&c.client, "classy").await;
    ccm.abort();
}
