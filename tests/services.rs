//! Services end to end: the proxy's nftables rules lead cluster IPs and node ports to ready pods
//! (from the host and from pods), and cluster DNS resolves Service names for pods. These tests
//! need root, nft and the busybox image, as CI has.
//!
//! Several clusters share the host and all allocate from 10.43.0.0/16, so each test gives its
//! Services explicit cluster IPs and node ports derived from its network number, and waits for
//! them to appear in the host's ruleset before sending anything to them.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kate_e2e::{Cluster, eventually_blocking};
use serde_json::Value;

const IMAGE: &str = "busybox:1.35.0";

/// A Deployment of busybox httpd pods labelled `app: NAME` serving their host name on the
/// container port named `http` (80).
fn httpd_deployment(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: {IMAGE}
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www']
        ports: [{{name: http, containerPort: 80}}]
        readinessProbe: {{httpGet: {{path: /, port: 80}}, periodSeconds: 1}}
"
    )
}

/// The proxy tables of test network `network` (`kate-proxy-BRIDGE` where the bridge name ends
/// in the network number).
fn tables_of(network: u8) -> Result<Vec<String>> {
    let out = std::process::Command::new("nft")
        .args(["list", "tables", "ip"])
        .output()?;
    let suffix = network.to_string();
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table ip "))
        .filter(|t| {
            t.strip_prefix("kate-proxy-")
                .and_then(|bridge| bridge.strip_suffix(&suffix))
                .is_some_and(|stem| stem.ends_with(|c: char| c.is_ascii_alphabetic()))
        })
        .map(String::from)
        .collect())
}

/// Removes the proxy tables of a test network when created and when dropped, so runs do not see
/// each other's rules even after a test that failed before its cluster's `kate reset`.
struct Tables(u8);

impl Tables {
    fn clean(network: u8) -> Tables {
        let tables = Tables(network);
        tables.remove();
        tables
    }

    fn remove(&self) {
        for table in tables_of(self.0).unwrap_or_default() {
            let _ = std::process::Command::new("nft")
                .args(["delete", "table", "ip", &table])
                .status();
        }
    }

    /// The text of this network's proxy table (empty until the proxy has written it).
    fn text(&self) -> Result<String> {
        let mut text = String::new();
        for table in tables_of(self.0)? {
            let out = std::process::Command::new("nft")
                .args(["list", "table", "ip", &table])
                .output()?;
            text.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        Ok(text)
    }

    /// Waits until the table contains `needle` (say, a map element).
    fn wait_for(&self, what: &str, needle: &str) -> Result<()> {
        eventually_blocking(what, || Ok(self.text()?.contains(needle)))
    }

    /// The number of endpoint chains of a service port.
    fn endpoint_chains(&self, id: &str) -> Result<usize> {
        let prefix = format!("chain ep-{id}/");
        Ok(self
            .text()?
            .lines()
            .filter(|l| l.trim_start().starts_with(&prefix))
            .count())
    }
}

impl Drop for Tables {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A shell pipeline for busybox that GETs `http://ip:port/` (busybox's `wget` crashes in the
/// Debian static build, even with an address, so `nc` speaks HTTP by hand).
fn get_cmd(target: &str) -> String {
    let (ip, port) = target.split_once(':').unwrap_or((target, "80"));
    format!("printf \"GET / HTTP/1.0\\r\\n\\r\\n\" | nc -w 5 {ip} {port}")
}

/// The pod names that answer `ip:port` from the host in `tries` requests.
fn backends(ip: &str, port: u16, tries: usize) -> Result<BTreeSet<String>> {
    let mut seen = BTreeSet::new();
    for _ in 0..tries {
        seen.insert(kate_e2e::http_get(ip, port).with_context(|| format!("GET http://{ip}:{port}/"))?);
    }
    Ok(seen)
}

/// Names of the running pods labelled `app=NAME`.
fn pod_names(c: &Cluster, app: &str) -> Result<BTreeSet<String>> {
    let out = c.kubectl(&[
        "get",
        "pods",
        "-l",
        &format!("app={app}"),
        "--field-selector",
        "status.phase=Running",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])?;
    Ok(out.split_whitespace().map(String::from).collect())
}

/// The node's InternalIP.
fn node_ip(c: &Cluster) -> Result<String> {
    let ip = c.kubectl(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].status.addresses[?(@.type==\"InternalIP\")].address}",
    ])?;
    Ok(ip.trim().to_string())
}

/// Runs a one-shot busybox pod with `script` (and, with `dns`, the cluster DNS settings a
/// ClusterFirst pod gets) and returns whether it Succeeded.
fn run_client(c: &Cluster, name: &str, script: &str, dns: bool) -> Result<bool> {
    let dns_config = if dns {
        "  dnsPolicy: None
  dnsConfig:
    nameservers: [10.43.0.10]
    searches: [default.svc.cluster.local, svc.cluster.local, cluster.local]
    options: [{name: ndots, value: '5'}]
"
    } else {
        ""
    };
    let script = script.replace('\'', "''");
    c.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
{dns_config}  containers:
  - name: c
    image: {IMAGE}
    command: [sh, -c, '{script}']
"
    ))?;
    let mut phase = String::new();
    eventually_blocking(&format!("client pod {name} to finish"), || {
        let p: Value = serde_json::from_str(&c.kubectl(&["get", "pod", name, "-o", "json"])?)?;
        phase = p["status"]["phase"].as_str().unwrap_or("").to_string();
        Ok(phase == "Succeeded" || phase == "Failed")
    })?;
    c.kubectl(&["delete", "pod", name, "--wait=false"])?;
    Ok(phase == "Succeeded")
}

/// Runs client pods until one Succeeds (the rules or DNS records may trail the API a little).
fn client_succeeds(c: &Cluster, name: &str, script: &str, dns: bool) -> Result<()> {
    for attempt in 0..4 {
        if run_client(c, &format!("{name}-{attempt}"), script, dns)? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    bail!("client pod {name} never succeeded running: {script}")
}

#[test]
fn cluster_ips_and_node_ports_lead_to_ready_pods() -> Result<()> {
    let tables = Tables::clean(30);
    let c = Cluster::start_node(30)?;
    c.apply(&httpd_deployment("web", 2))?;
    c.apply(
        "apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 10.43.30.80
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 80, nodePort: 30030}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  clusterIP: 10.43.30.81
  selector: {app: nothing}
  ports: [{port: 80}]
",
    )?;
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"])?;

    // Cluster IP from the host, with the named target port resolved, across both pods.
    tables.wait_for("web in the proxy's table", "10.43.30.80 . tcp . 8080 : goto")?;
    eventually_blocking("both endpoints to be programmed", || {
        Ok(tables.endpoint_chains("default/web/tcp/http")? == 2)
    })?;
    let pods = pod_names(&c, "web")?;
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert_eq!(
        backends("10.43.30.80", 8080, 24)?,
        pods,
        "random balancing reaches both pods"
    );

    // From another pod, through the host's routing.
    let get = get_cmd("10.43.30.80:8080");
    client_succeeds(&c, "client", &format!("{get} | grep -q web-"), false)?;

    // Scaling changes the endpoints.
    c.kubectl(&["scale", "deployment/web", "--replicas=3"])?;
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"])?;
    eventually_blocking("three endpoints", || {
        Ok(tables.endpoint_chains("default/web/tcp/http")? == 3)
    })?;
    let pods = pod_names(&c, "web")?;
    assert_eq!(pods.len(), 3, "{pods:?}");
    assert_eq!(backends("10.43.30.80", 8080, 40)?, pods, "the new pod gets traffic");
    c.kubectl(&["scale", "deployment/web", "--replicas=1"])?;
    eventually_blocking("one endpoint", || {
        Ok(tables.endpoint_chains("default/web/tcp/http")? == 1)
    })?;
    eventually_blocking("one pod left", || Ok(pod_names(&c, "web")?.len() == 1))?;
    let pods = pod_names(&c, "web")?;
    assert_eq!(
        backends("10.43.30.80", 8080, 8)?,
        pods,
        "only the remaining pod answers"
    );

    // The node port on the node's address, from the host and from a pod.
    let node = node_ip(&c)?;
    tables.wait_for("the node port in the proxy's table", "tcp . 30030 : goto")?;
    let page = kate_e2e::http_get(&node, 30030)?;
    assert!(pods.contains(&page), "the node port reaches the pod: {page}");
    let get = get_cmd(&format!("{node}:30030"));
    client_succeeds(&c, "np-client", &format!("{get} | grep -q web-"), false)?;

    // A Service without endpoints refuses at once (no timeout), from the host and from a pod.
    tables.wait_for("empty to be rejected", "10.43.30.81 . tcp . 80 : goto reject-chain")?;
    let started = Instant::now();
    let refused = kate_e2e::http_get("10.43.30.81", 80);
    assert!(
        matches!(&refused, Err(e) if e.kind() == ErrorKind::ConnectionRefused),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    let started = Instant::now();
    let get = get_cmd("10.43.30.81:80");
    assert!(
        !run_client(&c, "refused", &format!("{get} | grep -q HTTP"), false)?,
        "the client pod failed"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    Ok(())
}

#[test]
fn cluster_dns_resolves_services_for_pods() -> Result<()> {
    let tables = Tables::clean(31);
    let c = Cluster::start_node(31)?;
    c.apply(&httpd_deployment("web", 1))?;
    c.apply(
        "apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 10.43.31.80
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80}]
",
    )?;
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"])?;

    // kate publishes kube-dns with this node's DNS server as its endpoint.
    eventually_blocking("kube-dns to be published", || {
        let out = c.kubectl_output(
            &[
                "get",
                "endpointslices",
                "-n",
                "kube-system",
                "-l",
                "kubernetes.io/service-name=kube-dns",
                "-o",
                "name",
            ],
            None,
        )?;
        Ok(!String::from_utf8_lossy(&out.stdout).trim().is_empty())
    })?;
    let svc: Value =
        serde_json::from_str(&c.kubectl(&["get", "service", "-n", "kube-system", "kube-dns", "-o", "json"])?)?;
    assert_eq!(svc["spec"]["clusterIP"], "10.43.0.10");
    let ports: Vec<(&str, &str)> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (p["name"].as_str().unwrap_or(""), p["protocol"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(ports, [("dns", "UDP"), ("dns-tcp", "TCP")]);
    tables.wait_for("kube-dns in the proxy's table", "10.43.0.10 . udp . 53 : goto")?;
    tables.wait_for("web in the proxy's table", "10.43.31.80 . tcp . 80 : goto")?;
    let pod_ip = c
        .kubectl(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[0].status.podIP}",
        ])?
        .trim()
        .to_string();

    client_succeeds(
        &c,
        "fqdn",
        "nslookup web.default.svc.cluster.local | grep -q \"Address: 10.43.31.80\"",
        true,
    )?;
    // A short name through the search path, then a request to the address it resolved to
    // (busybox's own resolver library crashes in this build, so nslookup resolves for it).
    let get = get_cmd("$ip:80");
    client_succeeds(
        &c,
        "short",
        &format!("ip=$(nslookup web | grep \"^Address: 10\\.43\\.\" | cut -d\" \" -f2) && {get} | grep -q web-"),
        true,
    )?;
    client_succeeds(
        &c,
        "headless",
        &format!("nslookup web-headless.default.svc.cluster.local | grep -q \"Address: {pod_ip}\""),
        true,
    )?;
    client_succeeds(
        &c,
        "srv",
        "nslookup -type=srv _http._tcp.web.default.svc.cluster.local | grep -q \"0 100 80 web.default\"",
        true,
    )?;
    assert!(
        !run_client(&c, "unknown", "nslookup nope.default.svc.cluster.local", true)?,
        "an unknown service does not resolve"
    );
    Ok(())
}

#[test]
fn a_clean_stop_removes_the_proxy_table() -> Result<()> {
    let tables = Tables::clean(32);
    let mut c = Cluster::start_node(32)?;
    eventually_blocking("the proxy's table", || Ok(!tables_of(32)?.is_empty()))?;
    let status = c.terminate()?;
    assert!(status.success(), "kate exits cleanly on SIGTERM: {status}");
    assert!(tables_of(32)?.is_empty(), "the table is gone: {:?}", tables_of(32)?);
    drop(tables);
    Ok(())
}
