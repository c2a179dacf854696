//! kubectl workflows beyond plain CRUD: watch, edit, wait, explain, diff, replace, describe,
//! delete --all, and a Table for every served kind.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use kate_e2e::{Cluster, table};

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: NAME}\ndata: {a: b}\n";

fn cm(name: &str) -> String {
    CM.replace("NAME", name)
}

#[test]
fn get_watch_streams_changes() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    c.kubectl_stdin(&["create", "-f", "-"], Some(&cm("first")))?;
    let mut watcher = c
        .kubectl_cmd(&["get", "cm", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = watcher.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || rx.recv_timeout(Duration::from_secs(10));
    assert!(next()?.starts_with("EVENT"), "header first");
    assert!(next()?.starts_with("ADDED"), "existing object listed");
    c.kubectl_stdin(&["create", "-f", "-"], Some(&cm("second")))?;
    let line = next()?;
    assert!(line.starts_with("ADDED") && line.contains("second"), "{line}");
    c.kubectl(&["label", "cm", "second", "x=y"])?;
    let line = next()?;
    assert!(line.starts_with("MODIFIED") && line.contains("second"), "{line}");
    c.kubectl(&["delete", "cm", "second"])?;
    let line = next()?;
    assert!(line.starts_with("DELETED") && line.contains("second"), "{line}");
    assert!(watcher.try_wait()?.is_none(), "kubectl get -w keeps streaming");
    watcher.kill()?;
    Ok(())
}

#[test]
fn edit_with_an_editor_script() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    c.kubectl_stdin(&["create", "-f", "-"], Some(&cm("ed")))?;
    let script = c.dir.path().join("editor.sh");
    std::fs::write(&script, "#!/bin/sh\nsed -i 's/a: b/a: edited/' \"$1\"\n")?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let out = c.kubectl_cmd(&["edit", "cm", "ed"]).env("EDITOR", &script).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "configmap/ed edited");
    assert_eq!(c.kubectl(&["get", "cm", "ed", "-o", "jsonpath={.data.a}"])?, "edited");
    Ok(())
}

#[test]
fn wait_for_jsonpath() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    c.kubectl_stdin(&["create", "-f", "-"], Some(&cm("w")))?;
    let waiter = c
        .kubectl_cmd(&["wait", "--for=jsonpath={.data.a}=done", "cm/w", "--timeout=20s"])
        .stdout(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(500));
    c.kubectl(&["patch", "cm", "w", "--type=merge", "-p", r#"{"data":{"a":"done"}}"#])?;
    let out = waiter.wait_with_output()?;
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "configmap/w condition met");
    let timeout = c.kubectl_fails(&["wait", "--for=jsonpath={.data.a}=never", "cm/w", "--timeout=1s"])?;
    assert!(timeout.contains("timed out"), "{timeout}");
    Ok(())
}

#[test]
fn explain_uses_the_published_schema() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let out = c.kubectl(&["explain", "deployment.spec.strategy"])?;
    assert!(out.contains("KIND:       Deployment"), "{out}");
    assert!(out.contains("FIELD: strategy <DeploymentStrategy>"), "{out}");
    assert!(out.contains("rollingUpdate\t<RollingUpdateDeployment>"), "{out}");
    Ok(())
}

#[test]
fn diff_replace_and_describe() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    c.kubectl_stdin(&["apply", "-f", "-"], Some(&cm("d")))?;
    let same = c.kubectl_output(&["diff", "-f", "-"], Some(&cm("d")))?;
    assert_eq!(
        same.status.code(),
        Some(0),
        "no difference: {}",
        String::from_utf8_lossy(&same.stdout)
    );
    let changed = cm("d").replace("a: b", "a: c");
    let diff = c.kubectl_output(&["diff", "-f", "-"], Some(&changed))?;
    assert_eq!(diff.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&diff.stdout).contains("+  a: c"));
    assert_eq!(
        c.kubectl(&["get", "cm", "d", "-o", "jsonpath={.data.a}"])?,
        "b",
        "diff must not write"
    );
    assert_eq!(
        c.kubectl_stdin(&["replace", "-f", "-"], Some(&changed))?.trim(),
        "configmap/d replaced"
    );
    assert_eq!(c.kubectl(&["get", "cm", "d", "-o", "jsonpath={.data.a}"])?, "c");
    let described = c.kubectl(&["describe", "cm", "d"])?;
    assert!(
        described.contains("Name:") && described.contains("Namespace:    default"),
        "{described}"
    );
    let ns = c.kubectl(&["describe", "ns", "default"])?;
    assert!(ns.contains("Status:       Active"), "{ns}");
    Ok(())
}

#[test]
fn delete_all_and_by_label() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    for name in ["x1", "x2", "x3"] {
        c.kubectl_stdin(&["create", "-f", "-"], Some(&cm(name)))?;
    }
    c.kubectl(&["label", "cm", "x1", "group=one"])?;
    let out = c.kubectl(&["delete", "cm", "-l", "group=one"])?;
    assert_eq!(out.trim(), "configmap \"x1\" deleted");
    let out = c.kubectl(&["delete", "cm", "--all"])?;
    assert!(
        out.contains("\"x2\" deleted") && out.contains("\"x3\" deleted"),
        "{out}"
    );
    let empty = c.kubectl_output(&["get", "cm"], None)?;
    assert!(String::from_utf8_lossy(&empty.stderr).contains("No resources found in default namespace."));
    Ok(())
}

#[test]
fn every_kind_has_a_table() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let expected: &[(&str, &[&str])] = &[
        ("pods", &["NAME", "READY", "STATUS", "RESTARTS", "AGE"]),
        (
            "services",
            &["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"],
        ),
        ("deployments", &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]),
        ("replicasets", &["NAME", "DESIRED", "CURRENT", "READY", "AGE"]),
        ("statefulsets", &["NAME", "READY", "AGE"]),
        (
            "daemonsets",
            &[
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "NODE SELECTOR",
                "AGE",
            ],
        ),
        ("jobs", &["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]),
        (
            "cronjobs",
            &[
                "NAME",
                "SCHEDULE",
                "TIMEZONE",
                "SUSPEND",
                "ACTIVE",
                "LAST SCHEDULE",
                "AGE",
            ],
        ),
        ("secrets", &["NAME", "TYPE", "DATA", "AGE"]),
        ("serviceaccounts", &["NAME", "SECRETS", "AGE"]),
        ("endpoints", &["NAME", "ENDPOINTS", "AGE"]),
        ("leases", &["NAME", "HOLDER", "AGE"]),
        (
            "priorityclasses",
            &["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"],
        ),
        (
            "poddisruptionbudgets",
            &["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"],
        ),
    ];
    let manifests = r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {containers: [{name: c, image: busybox}]}
---
apiVersion: v1
kind: Service
metadata: {name: s}
spec: {ports: [{port: 80}], selector: {app: x}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: cj}
spec: {schedule: "*/5 * * * *", jobTemplate: {spec: {template: {spec: {restartPolicy: OnFailure, containers: [{name: c, image: busybox}]}}}}}
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
stringData: {password: hunter2}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: l}
spec: {holderIdentity: me}
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: pdb}
spec: {minAvailable: 1, selector: {matchLabels: {app: x}}}
"#;
    c.kubectl_stdin(&["apply", "-f", "-"], Some(manifests))?;
    for (kind, header) in expected {
        let out = c.kubectl_output(&["get", kind], None)?;
        assert!(
            out.status.success(),
            "get {kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        if stdout.trim().is_empty() {
            assert!(String::from_utf8_lossy(&out.stderr).contains("No resources found"));
            continue;
        }
        let first = stdout.lines().next().unwrap_or("");
        let cells: Vec<&str> = first.split("  ").map(str::trim).filter(|s| !s.is_empty()).collect();
        assert_eq!(&cells, header, "columns of {kind}");
    }
    let pod = table(&c.kubectl(&["get", "pod", "p"])?);
    assert_eq!(&pod[1][..3], ["p", "0/1", "Pending"]);
    let secret = table(&c.kubectl(&["get", "secret", "sec"])?);
    assert_eq!(&secret[1][..3], ["sec", "Opaque", "1"]);
    let decoded = c.kubectl(&["get", "secret", "sec", "-o", "jsonpath={.data.password}"])?;
    assert_eq!(decoded, "aHVudGVyMg==");
    Ok(())
}
