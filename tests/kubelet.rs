//! The kubelet of `kate server` running pods as real containers (runc, CNI, cgroups) from the
//! busybox test image, driven with the real kubectl. These tests need root, as CI has.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kate_e2e::{Cluster, eventually_blocking};
use serde_json::Value;

const IMAGE: &str = "busybox:1.35.0";

fn ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

#[test]
fn a_pod_runs_with_its_own_ip_and_reports_upstream_status() -> Result<()> {
    let c = Cluster::start_node(1)?;
    let node = c.kubectl(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"])?;
    let nodes = c.kubectl(&["get", "nodes"])?;
    assert!(nodes.contains(" Ready "), "{nodes}");
    let info: Value = serde_json::from_str(&c.kubectl(&["get", "node", &node, "-o", "json"])?)?;
    assert_eq!(info["status"]["allocatable"]["pods"], "110");
    assert!(
        info["status"]["nodeInfo"]["kubeletVersion"]
            .as_str()
            .unwrap_or("")
            .starts_with("v1.33.")
    );
    assert_eq!(info["spec"]["podCIDR"], "10.151.0.0/24");
    let lease = c.kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        &node,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])?;
    assert_eq!(lease, node);

    c.kubectl(&[
        "run", "web", "--image", IMAGE, "--port", "8080", "--", "httpd", "-f", "-p", "8080", "-h", "/etc",
    ])?;
    let p = c.wait_pod("web", "the pod to be Running and Ready", ready)?;
    let ip = p["status"]["podIP"].as_str().context("podIP")?.to_string();
    assert!(ip.starts_with("10.151.0."), "pod IP {ip} is in the node's pod CIDR");
    assert_eq!(p["status"]["phase"], "Running");
    let cs = &p["status"]["containerStatuses"][0];
    assert!(cs["state"]["running"]["startedAt"].is_string(), "{cs}");
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["started"], true);
    assert_eq!(cs["restartCount"], 0);
    assert!(cs["containerID"].as_str().unwrap_or("").starts_with("kate://"), "{cs}");
    assert!(cs["imageID"].as_str().unwrap_or("").starts_with("sha256:"), "{cs}");
    for kind in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodScheduled",
    ] {
        let found = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == kind && c["status"] == "True");
        assert!(found, "condition {kind} is True: {}", p["status"]);
    }
    // Running is not listening (the pod has no readiness probe): httpd may still be starting.
    eventually_blocking("httpd to answer on the pod IP", || {
        Ok(kate_e2e::http_response(&ip, 8080).is_ok_and(|page| page.contains("200 OK") || page.contains("404")))
    })?;
    let wide = c.kubectl(&["get", "pod", "web", "-o", "wide"])?;
    assert!(wide.contains(&ip) && wide.contains("Running"), "{wide}");

    c.kubectl(&["delete", "pod", "web", "--grace-period=1"])?;
    let left = c.kubectl(&["get", "pods", "-o", "name"])?;
    assert!(left.trim().is_empty(), "the pod is gone: {left}");
    assert!(kate_e2e::http_response(&ip, 8080).is_err(), "its container stopped");
    Ok(())
}

#[test]
fn a_deployment_of_httpd_answers_on_each_pod_ip() -> Result<()> {
    let c = Cluster::start_node(2)?;
    c.apply(&format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: httpd}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: httpd}}}}
  template:
    metadata: {{labels: {{app: httpd}}}}
    spec:
      containers:
      - name: httpd
        image: {IMAGE}
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www']
        ports: [{{containerPort: 80}}]
        readinessProbe: {{httpGet: {{path: /, port: 80}}, periodSeconds: 1}}
"
    ))?;
    c.kubectl(&["rollout", "status", "deployment/httpd", "--timeout=60s"])?;
    let out = c.kubectl(&[
        "get",
        "pods",
        "-l",
        "app=httpd",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.podIP}{\"\\n\"}{end}",
    ])?;
    let pods: Vec<(&str, &str)> = out.lines().filter_map(|l| l.split_once(' ')).collect();
    assert_eq!(pods.len(), 3, "{out}");
    for (name, ip) in pods {
        let page = kate_e2e::http_response(ip, 80)?;
        assert!(
            page.contains(name),
            "pod {name} at {ip} serves its own host name: {page}"
        );
    }

    // Dropping the cluster kills the server with its pods still running, then runs
    // `kate reset`: that removes the containers, the sandboxes and the pod bridge.
    let bridge = std::path::Path::new("/sys/class/net/katee2");
    assert!(bridge.exists(), "the node has its pod bridge");
    drop(c);
    assert!(!bridge.exists(), "kate reset removed the pod bridge");
    Ok(())
}

#[test]
fn a_killed_process_comes_back_and_a_failing_liveness_probe_restarts() -> Result<()> {
    let c = Cluster::start_node(3)?;
    c.kubectl(&["run", "sleeper", "--image", IMAGE, "--", "sleep", "3601"])?;
    c.wait_pod("sleeper", "the sleeper to run", ready)?;
    // SIGKILL: a container's PID 1 ignores signals it has no handler for, SIGTERM included.
    let killed = std::process::Command::new("pkill")
        .args(["-KILL", "-f", "sleep 3601"])
        .status()?;
    assert!(killed.success(), "pkill found the container's process");
    let p = c.wait_pod("sleeper", "a restart", |p| {
        p["status"]["containerStatuses"][0]["restartCount"] == 1 && ready(p)
    })?;
    let last = &p["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "killed by SIGKILL: {last}");
    assert_eq!(last["reason"], "Error", "{last}");

    c.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: unhealthy}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {IMAGE}
    command: [sh, -c, 'touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 3600']
    livenessProbe: {{exec: {{command: [cat, /tmp/healthy]}}, periodSeconds: 1, failureThreshold: 1}}
"
    ))?;
    c.wait_pod("unhealthy", "the liveness probe to restart the container", |p| {
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    })?;
    let events = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=unhealthy"])?;
    assert!(
        events.contains("Unhealthy") && events.contains("Liveness probe failed"),
        "{events}"
    );
    assert!(events.contains("failed liveness probe, will be restarted"), "{events}");
    Ok(())
}

#[test]
fn readiness_gates_the_ready_condition() -> Result<()> {
    let c = Cluster::start_node(4)?;
    c.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: slow}}
spec:
  containers:
  - name: c
    image: {IMAGE}
    command: [sh, -c, 'sleep 3; touch /tmp/ready; sleep 3600']
    readinessProbe: {{exec: {{command: [cat, /tmp/ready]}}, periodSeconds: 1}}
"
    ))?;
    let p = c.wait_pod("slow", "the container to run", |p| {
        p["status"]["containerStatuses"][0]["state"]["running"].is_object()
    })?;
    if !ready(&p) {
        let cond = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready")
            .cloned();
        assert_eq!(
            cond.as_ref().map(|c| c["reason"].clone()),
            Some("ContainersNotReady".into())
        );
    } else {
        bail!("the pod was Ready before its probe passed: {}", p["status"]);
    }
    c.wait_pod("slow", "the pod to become Ready", ready)?;
    Ok(())
}

#[test]
fn exit_codes_oom_kills_and_init_containers() -> Result<()> {
    let c = Cluster::start_node(5)?;
    c.apply(&format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: fails}}
spec:
  restartPolicy: Never
  containers: [{{name: c, image: {IMAGE}, command: [sh, -c, 'echo bye > /dev/termination-log; exit 3']}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: fallback}}
spec:
  restartPolicy: Never
  containers: [{{name: c, image: {IMAGE}, terminationMessagePolicy: FallbackToLogsOnError, command: [sh, -c, 'echo last words; exit 1']}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: crashes}}
spec:
  containers: [{{name: c, image: {IMAGE}, command: [sh, -c, 'exit 2']}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: hungry}}
spec:
  restartPolicy: Never
  containers:
  - {{name: c, image: {IMAGE}, command: [sh, -c, 'tail /dev/zero'], resources: {{limits: {{memory: 16Mi}}}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: ordered}}
spec:
  restartPolicy: Never
  volumes: [{{name: work, emptyDir: {{}}}}]
  initContainers:
  - {{name: first, image: {IMAGE}, command: [sh, -c, 'echo one > /work/log'], volumeMounts: [{{name: work, mountPath: /work}}]}}
  - {{name: second, image: {IMAGE}, command: [sh, -c, 'echo two >> /work/log'], volumeMounts: [{{name: work, mountPath: /work}}]}}
  containers:
  - {{name: main, image: {IMAGE}, command: [sh, -c, 'test \"$(cat /work/log)\" = \"$(printf \"one\\ntwo\")\"'], volumeMounts: [{{name: work, mountPath: /work}}]}}
"
        ),
    )?;
    let p = c.wait_pod("fails", "the failing pod to end", |p| p["status"]["phase"] == "Failed")?;
    let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 3, "{t}");
    assert_eq!(t["reason"], "Error", "{t}");
    assert_eq!(t["message"], "bye", "{t}");

    let p = c.wait_pod("hungry", "the hungry pod to end", |p| p["status"]["phase"] == "Failed")?;
    let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{t}");

    let p = c.wait_pod("ordered", "the ordered pod to end", |p| {
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    })?;
    assert_eq!(p["status"]["phase"], "Succeeded", "{}", p["status"]);
    let init = p["status"]["initContainerStatuses"]
        .as_array()
        .context("init statuses")?;
    assert_eq!(init.len(), 2);
    assert!(
        init.iter().all(|s| s["state"]["terminated"]["reason"] == "Completed"),
        "{init:?}"
    );
    Ok(())
}

#[test]
fn config_maps_secrets_and_the_downward_api_reach_the_container() -> Result<()> {
    let c = Cluster::start_node(6)?;
    c.kubectl(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=color=blue",
        "--from-literal=size=L",
    ])?;
    c.kubectl(&["create", "secret", "generic", "creds", "--from-literal=password=s3cret"])?;
    c.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: configured, labels: {{tier: back}}}}
spec:
  restartPolicy: Never
  volumes:
  - {{name: settings, configMap: {{name: settings}}}}
  - {{name: creds, secret: {{secretName: creds}}}}
  - {{name: info, downwardAPI: {{items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]}}}}
  containers:
  - name: c
    image: {IMAGE}
    env:
    - {{name: COLOR, valueFrom: {{configMapKeyRef: {{name: settings, key: color}}}}}}
    - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}}}
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: GREETING, value: 'hello $(POD_NAME)'}}
    envFrom: [{{configMapRef: {{name: settings}}, prefix: CM_}}]
    command:
    - sh
    - -c
    - >-
      test \"$COLOR\" = blue && test \"$PASSWORD\" = s3cret && test \"$GREETING\" = 'hello configured' &&
      test \"$CM_size\" = L && test \"$(cat /cfg/size)\" = L && test \"$(cat /sec/password)\" = s3cret &&
      grep -q 'tier=\"back\"' /info/labels && test -n \"$KUBERNETES_SERVICE_HOST\"
    volumeMounts:
    - {{name: settings, mountPath: /cfg}}
    - {{name: creds, mountPath: /sec}}
    - {{name: info, mountPath: /info}}
"
    ))?;
    let p = c.wait_pod("configured", "the pod to end", |p| {
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    })?;
    assert_eq!(p["status"]["phase"], "Succeeded", "{}", p["status"]);

    c.kubectl(&["run", "missing", "--image", IMAGE, "--env", "X=1", "--overrides",
        r#"{"spec":{"containers":[{"name":"missing","image":"busybox:1.35.0","envFrom":[{"configMapRef":{"name":"nope"}}]}]}}"#])?;
    let p = c.wait_pod("missing", "a config error", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    })?;
    let message = p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(message.contains("nope"), "{message}");
    Ok(())
}

#[test]
fn a_bad_image_ends_in_image_pull_back_off() -> Result<()> {
    let c = Cluster::start_node(7)?;
    c.kubectl(&["run", "bad", "--image", "registry.invalid/nothing/here:1.0"])?;
    let p = c.wait_pod("bad", "ImagePullBackOff", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff"
    })?;
    assert_eq!(p["status"]["phase"], "Pending");
    let events = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=bad"])?;
    assert!(
        events.contains("Failed to pull image \"registry.invalid/nothing/here:1.0\""),
        "{events}"
    );
    let get = c.kubectl(&["get", "pod", "bad"])?;
    assert!(
        get.contains("ErrImagePull") || get.contains("ImagePullBackOff"),
        "{get}"
    );
    Ok(())
}

#[test]
fn containers_survive_a_restart_of_kate_and_deleted_pods_are_cleaned_up() -> Result<()> {
    let c = Cluster::start_node(8)?;
    c.kubectl(&["run", "stays", "--image", IMAGE, "--", "sleep", "3602"])?;
    c.kubectl(&["run", "goes", "--image", IMAGE, "--", "sleep", "3603"])?;
    let before = c.wait_pod("stays", "stays to run", ready)?;
    c.wait_pod("goes", "goes to run", ready)?;
    let id = before["status"]["containerStatuses"][0]["containerID"].clone();
    let dir = c.kill();
    // While kate is down, `goes` is deleted: a second server on the same store would see it
    // gone, so remove it from the store through a control-plane-only start.
    let c = Cluster::start_with(dir, &[])?;
    c.kubectl(&["delete", "pod", "goes", "--grace-period=0", "--force"])?;
    let dir = c.kill();
    let c = Cluster::start_node_in(dir, 8)?;
    let after = c.wait_pod("stays", "stays to be reported again", ready)?;
    assert_eq!(
        after["status"]["containerStatuses"][0]["containerID"], id,
        "the same container was adopted"
    );
    assert_eq!(after["status"]["containerStatuses"][0]["restartCount"], 0);
    eventually_blocking("the deleted pod's container to stop", || {
        let found = std::process::Command::new("pgrep")
            .args(["-f", "sleep 3603"])
            .output()?;
        Ok(!found.status.success())
    })?;
    Ok(())
}

#[test]
fn images_are_pulled_from_a_registry_with_pull_secrets() -> Result<()> {
    let registry = kate_e2e::Registry::start(Some(kate_e2e::HTPASSWD));
    let creds = format!("{}:{}", kate_e2e::REGISTRY_USER, kate_e2e::REGISTRY_PASSWORD);
    let source = format!(
        "oci-archive:{}:docker.io/library/busybox:latest",
        kate_e2e::busybox_archive().display()
    );
    registry.push(&source, "private/busybox:2.0", Some(&creds), false);
    let image = format!("{}/private/busybox:2.0", registry.host);

    let c = Cluster::start_node_with(9, &["--insecure-registry", &registry.host])?;
    c.kubectl(&["run", "anonymous", "--image", &image, "--", "sleep", "3604"])?;
    c.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        "pull",
        "--docker-server",
        &registry.host,
        "--docker-username",
        kate_e2e::REGISTRY_USER,
        "--docker-password",
        kate_e2e::REGISTRY_PASSWORD,
    ])?;
    c.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: private}}
spec:
  imagePullSecrets: [{{name: pull}}]
  containers: [{{name: c, image: '{image}', command: [sleep, '3605']}}]
"
    ))?;
    let p = c.wait_pod("private", "the pod with pull secrets to run", ready)?;
    assert!(
        p["status"]["containerStatuses"][0]["imageID"]
            .as_str()
            .unwrap_or("")
            .starts_with("sha256:")
    );
    let events = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=private"])?;
    assert!(events.contains("Successfully pulled image"), "{events}");
    let p = c.wait_pod("anonymous", "the anonymous pull to fail", |p| {
        let reason = &p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"];
        reason == "ErrImagePull" || reason == "ImagePullBackOff"
    })?;
    let message = p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(!message.is_empty(), "a clear message: {}", p["status"]);
    Ok(())
}

#[test]
fn memory_backed_empty_dirs_are_tmpfs() -> Result<()> {
    let c = Cluster::start_node(10)?;
    c.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: tmpfs}}
spec:
  restartPolicy: Never
  volumes: [{{name: scratch, emptyDir: {{medium: Memory, sizeLimit: 8Mi}}}}]
  containers:
  - name: c
    image: {IMAGE}
    command: [sh, -c, 'grep -q \" /scratch tmpfs \" /proc/mounts && ! dd if=/dev/zero of=/scratch/big bs=1M count=16']
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
"
    ))?;
    let p = c.wait_pod("tmpfs", "the pod to end", |p| {
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    })?;
    assert_eq!(
        p["status"]["phase"], "Succeeded",
        "a tmpfs limited to 8Mi: {}",
        p["status"]
    );
    Ok(())
}

#[test]
fn lifecycle_hooks_call_out_on_start_and_before_stop() -> Result<()> {
    let c = Cluster::start_node(11)?;
    let node_ip = c.kubectl(&["get", "nodes", "-o", "jsonpath={.items[0].status.addresses[0].address}"])?;
    let listener = std::net::TcpListener::bind("0.0.0.0:0")?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).unwrap_or(0);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            let line = String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            let _ = tx.send(line);
        }
    });
    c.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: c
    image: {IMAGE}
    command: [sleep, '3606']
    lifecycle:
      postStart: {{httpGet: {{host: '{node_ip}', port: {port}, path: /started}}}}
      preStop: {{httpGet: {{host: '{node_ip}', port: {port}, path: /stopping}}}}
"
    ))?;
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .context("the postStart hook called")?;
    assert_eq!(first, "GET /started HTTP/1.1");
    c.wait_pod("hooked", "the pod to run", ready)?;
    c.kubectl(&["delete", "pod", "hooked", "--wait=false"])?;
    let second = rx
        .recv_timeout(Duration::from_secs(30))
        .context("the preStop hook called")?;
    assert_eq!(second, "GET /stopping HTTP/1.1");
    Ok(())
}
