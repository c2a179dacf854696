//! The cloud-controller-manager end to end with the built-in `local` provider: a LoadBalancer
//! Service gets the node's address as its external IP, with the cleanup finalizer, and answers
//! there through the service proxy; deleting it releases the finalizer; the node is initialized
//! with a provider ID and zone labels. The first test needs root, nft and the busybox image, as
//! CI has.
//!
//! Every cluster on the host shares the node address, so the Service uses a port, cluster IP and
//! node port of its own (network 50), and the test waits for the proxy's rule before sending.

use std::time::Duration;

use anyhow::{Context, Result};
use kate_e2e::{Cluster, eventually_blocking, table};
use serde_json::Value;

const IMAGE: &str = "busybox:1.35.0";
/// The test's network number (bridge, pod CIDR, kubelet port; see `Cluster::start_node`).
const NETWORK: u8 = 50;
/// The load balancer's port on the node's address.
const LB_PORT: u16 = 18050;

/// The text of the proxy tables of this test's network (`kate-proxy-katee50`).
fn proxy_rules() -> Result<String> {
    let table = format!("kate-proxy-katee{NETWORK}");
    let out = std::process::Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Removes this network's proxy table when created and when dropped, so runs do not see each
/// other's rules.
struct Table;

impl Table {
    fn clean() -> Table {
        Table.remove();
        Table
    }

    fn remove(&self) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "ip", &format!("kate-proxy-katee{NETWORK}")])
            .output();
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The one node as JSON.
fn node(c: &Cluster) -> Result<Value> {
    let nodes: Value = serde_json::from_str(&c.kubectl(&["get", "nodes", "-o", "json"])?)?;
    nodes["items"][0].as_object().context("no node")?;
    Ok(nodes["items"][0].clone())
}

/// The EXTERNAL-IP column of `kubectl get svc NAME`.
fn external_ip(c: &Cluster, name: &str) -> Result<String> {
    let rows = table(&c.kubectl(&["get", "svc", name])?);
    Ok(rows.get(1).and_then(|r| r.get(3)).cloned().unwrap_or_default())
}

#[test]
fn local_load_balancer_answers_on_the_node_address() -> Result<()> {
    let _table = Table::clean();
    let c = Cluster::start_node(NETWORK)?;
    c.apply(&format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: lb-web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: lb-web}}}}
  template:
    metadata: {{labels: {{app: lb-web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: {IMAGE}
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www']
        ports: [{{name: http, containerPort: 80}}]
        readinessProbe: {{httpGet: {{path: /, port: 80}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: lb-web}}
spec:
  type: LoadBalancer
  clusterIP: 10.43.{NETWORK}.80
  selector: {{app: lb-web}}
  ports: [{{name: http, port: {LB_PORT}, targetPort: http, nodePort: 300{NETWORK}}}]
"
    ))?;
    c.kubectl(&["rollout", "status", "deployment/lb-web", "--timeout=90s"])?;

    // The node is initialized by the node controller.
    let node_name = node(&c)?["metadata"]["name"].as_str().unwrap_or_default().to_string();
    eventually_blocking("the node to get its provider ID and zone", || {
        let n = node(&c)?;
        Ok(n["spec"]["providerID"] == format!("local://{node_name}")
            && n["metadata"]["labels"]["topology.kubernetes.io/zone"] == "local")
    })?;
    let n = node(&c)?;
    assert_eq!(n["metadata"]["labels"]["topology.kubernetes.io/region"], "local");
    assert_eq!(n["metadata"]["labels"]["node.kubernetes.io/instance-type"], "local");
    let node_ip = n["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .context("the node has no InternalIP")?
        .to_string();

    // kubectl shows the node's address as the external IP; the finalizer is on.
    eventually_blocking(
        "the Service's external IP",
        || Ok(external_ip(&c, "lb-web")? == node_ip),
    )?;
    let svc: Value = serde_json::from_str(&c.kubectl(&["get", "svc", "lb-web", "-o", "json"])?)?;
    let finalizers: Vec<&str> = svc["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(finalizers, ["service.kubernetes.io/load-balancer-cleanup"]);
    assert_eq!(svc["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP");

    // EXTERNAL-IP:port answers from the host, through the proxy, from one of the pods.
    let rule = format!("{node_ip} . tcp . {LB_PORT} : goto");
    eventually_blocking("the load balancer's rule", || Ok(proxy_rules()?.contains(&rule)))?;
    let pods = c.kubectl(&[
        "get",
        "pods",
        "-l",
        "app=lb-web",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])?;
    let mut page = String::new();
    eventually_blocking("an answer on the external IP", || {
        page = kate_e2e::http_get(&node_ip, LB_PORT).unwrap_or_default();
        Ok(!page.is_empty())
    })?;
    assert!(
        pods.split_whitespace().any(|p| p == page),
        "{page:?} is not one of {pods}"
    );

    // Deleting the Service releases the finalizer (kubectl waits for the object to go), and the
    // proxy stops serving the address.
    c.kubectl(&["delete", "svc", "lb-web", "--timeout=30s"])?;
    let gone = c.kubectl_fails(&["get", "svc", "lb-web"])?;
    assert!(gone.contains("NotFound"), "{gone}");
    eventually_blocking("the load balancer's rule to go", || Ok(!proxy_rules()?.contains(&rule)))?;
    let events = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=lb-web"])?;
    assert!(events.contains("DeletedLoadBalancer"), "{events}");
    Ok(())
}

/// A LoadBalancer Service for the control-plane-only tests.
const PENDING_SVC: &str = "apiVersion: v1
kind: Service
metadata: {name: lb}
spec:
  type: LoadBalancer
  selector: {app: lb}
  ports: [{port: 80}]
";

#[test]
fn without_nodes_or_without_a_provider_load_balancers_stay_pending() -> Result<()> {
    // The default provider with no node: the finalizer goes on, the address stays pending.
    let c = Cluster::start()?;
    c.apply(PENDING_SVC)?;
    eventually_blocking("the finalizer", || {
        let f = c.kubectl(&["get", "svc", "lb", "-o", "jsonpath={.metadata.finalizers}"])?;
        Ok(f.contains("service.kubernetes.io/load-balancer-cleanup"))
    })?;
    assert_eq!(external_ip(&c, "lb")?, "<pending>");
    c.kubectl(&["delete", "svc", "lb", "--timeout=30s"])?;
    drop(c);

    // `--cloud-provider none`: nothing touches the Service.
    let c = Cluster::start_with(tempfile::tempdir()?, &["--cloud-provider", "none"])?;
    c.apply(PENDING_SVC)?;
    std::thread::sleep(Duration::from_secs(3));
    let f = c.kubectl(&["get", "svc", "lb", "-o", "jsonpath={.metadata.finalizers}"])?;
    assert!(f.trim().is_empty(), "{f}");
    assert_eq!(external_ip(&c, "lb")?, "<pending>");
    let leases = c.kubectl(&["get", "leases", "-n", "kube-system", "-o", "name"])?;
    assert!(!leases.contains("cloud-controller-manager"), "{leases}");
    Ok(())
}
