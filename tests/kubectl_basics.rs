//! The real kubectl against a real `kate server`: discovery, create/apply/get/patch/delete.

use kate_e2e::{Cluster, table};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        env:
        - {name: A, value: "1"}
        - {name: B, value: "2"}
"#;

#[test]
fn version_and_discovery() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let version = c.kubectl(&["version"])?;
    assert!(version.contains("Server Version: v1.33"), "{version}");
    let resources = c.kubectl(&["api-resources"])?;
    for line in ["deployments", "deploy", "apps/v1", "Deployment"] {
        assert!(resources.contains(line), "{line} missing from\n{resources}");
    }
    let versions = c.kubectl(&["api-versions"])?;
    for gv in ["v1", "apps/v1", "batch/v1", "coordination.k8s.io/v1", "policy/v1"] {
        assert!(versions.lines().any(|l| l == gv), "{gv} missing from\n{versions}");
    }
    Ok(())
}

#[test]
fn system_namespaces_are_active() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let rows = table(&c.kubectl(&["get", "namespaces"])?);
    assert_eq!(rows[0], ["NAME", "STATUS", "AGE"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let row = rows
            .iter()
            .find(|r| r[0] == ns)
            .unwrap_or_else(|| panic!("{ns} missing"));
        assert_eq!(row[1], "Active");
    }
    let label = c.kubectl(&[
        "get",
        "ns",
        "kube-system",
        "-o",
        "jsonpath={.metadata.labels.kubernetes\\.io/metadata\\.name}",
    ])?;
    assert_eq!(label, "kube-system");
    Ok(())
}

#[test]
fn apply_twice_merges_by_key() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    assert_eq!(
        c.kubectl_stdin(&["apply", "-f", "-"], Some(DEPLOYMENT))?.trim(),
        "deployment.apps/web created"
    );
    assert_eq!(
        c.kubectl_stdin(&["apply", "-f", "-"], Some(DEPLOYMENT))?.trim(),
        "deployment.apps/web unchanged"
    );
    let changed = DEPLOYMENT
        .replace("nginx:1.27", "nginx:1.28")
        .replace(r#"{name: B, value: "2"}"#, r#"{name: C, value: "3"}"#);
    assert_eq!(
        c.kubectl_stdin(&["apply", "-f", "-"], Some(&changed))?.trim(),
        "deployment.apps/web configured"
    );
    let env = c.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].env[*].name} {.spec.template.spec.containers[0].image} {.metadata.generation}"])?;
    assert_eq!(env, "A C nginx:1.28 2");
    let rows = table(&c.kubectl(&["get", "deploy", "-o", "wide"])?);
    assert_eq!(
        rows[0],
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(rows[1][0], "web");
    assert_eq!(rows[1][1], "0/2");
    assert_eq!(rows[1][6], "nginx:1.28");
    Ok(())
}

#[test]
fn create_reports_conflicts_and_invalid_objects() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    c.kubectl_stdin(&["create", "-f", "-"], Some(DEPLOYMENT))?;
    let err = c.kubectl_output(&["create", "-f", "-"], Some(DEPLOYMENT))?;
    assert!(!err.status.success());
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(
        stderr.contains("(AlreadyExists)") && stderr.contains("deployments.apps \"web\" already exists"),
        "{stderr}"
    );

    let bad = "apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec:\n  containers:\n  - name: c\n";
    let out = c.kubectl_output(&["create", "-f", "-"], Some(bad))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is invalid") && stderr.contains("metadata.name"),
        "{stderr}"
    );
    assert!(stderr.contains("spec.containers[0].image: Required value"), "{stderr}");

    let unknown = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nbogus: 1\n";
    let out = c.kubectl_output(&["create", "-f", "-"], Some(unknown))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("unknown field \"bogus\""),
        "{stderr}"
    );

    let missing = c.kubectl_fails(&["get", "pod", "nope"])?;
    assert!(
        missing.contains("Error from server (NotFound): pods \"nope\" not found"),
        "{missing}"
    );
    Ok(())
}

#[test]
fn get_output_formats_and_selectors() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    for (name, tier) in [("a", "front"), ("b", "back"), ("c", "front")] {
        let cm = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, labels: {{tier: {tier}}}}}\ndata: {{k: v}}\n"
        );
        c.kubectl_stdin(&["apply", "-f", "-"], Some(&cm))?;
    }
    let rows = table(&c.kubectl(&["get", "cm", "-l", "tier=front"])?);
    assert_eq!(
        rows.iter().skip(1).map(|r| r[0].as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert_eq!(rows[0], ["NAME", "DATA", "AGE"]);
    let names = c.kubectl(&["get", "cm", "--field-selector", "metadata.name=b", "-o", "name"])?;
    assert_eq!(names.trim(), "configmap/b");
    let labels = c.kubectl(&["get", "cm", "a", "--show-labels"])?;
    assert!(labels.contains("tier=front"), "{labels}");
    let all = table(&c.kubectl(&["get", "cm", "-A"])?);
    assert_eq!(all[0][0], "NAMESPACE");
    assert!(all.iter().any(|r| r[0] == "default" && r[1] == "b"));
    let sorted = c.kubectl(&[
        "get",
        "cm",
        "-l",
        "tier",
        "--sort-by=.metadata.labels.tier",
        "-o",
        "custom-columns=N:.metadata.name,T:.metadata.labels.tier",
        "--no-headers",
    ])?;
    assert_eq!(table(&sorted), [["b", "back"], ["a", "front"], ["c", "front"]]);
    let json: serde_json::Value = serde_json::from_str(&c.kubectl(&["get", "cm", "a", "-o", "json"])?)?;
    assert_eq!(json["data"]["k"], "v");
    assert!(json["metadata"]["uid"].is_string() && json["metadata"]["resourceVersion"].is_string());
    let yaml = c.kubectl(&["get", "cm", "a", "-o", "yaml"])?;
    assert!(
        yaml.contains("kind: ConfigMap") && yaml.contains("creationTimestamp:"),
        "{yaml}"
    );
    Ok(())
}

#[test]
fn label_annotate_patch_scale_delete() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    c.kubectl_stdin(&["apply", "-f", "-"], Some(DEPLOYMENT))?;
    assert_eq!(
        c.kubectl(&["label", "deploy", "web", "tier=web"])?.trim(),
        "deployment.apps/web labeled"
    );
    assert_eq!(
        c.kubectl(&["annotate", "deploy", "web", "note=hi"])?.trim(),
        "deployment.apps/web annotated"
    );
    c.kubectl(&["label", "deploy", "web", "tier-"])?;
    c.kubectl(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:2"}]}}}}"#,
    ])?;
    c.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"annotations":{"merged":"yes"}}}"#,
    ])?;
    c.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/revisionHistoryLimit","value":3}]"#,
    ])?;
    assert_eq!(
        c.kubectl(&["scale", "deploy", "web", "--replicas=5"])?.trim(),
        "deployment.apps/web scaled"
    );
    let got = c.kubectl(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.metadata.labels.tier}|{.metadata.annotations.note}|{.metadata.annotations.merged}|{.spec.template.spec.containers[0].image}|{.spec.template.spec.containers[0].env[1].name}|{.spec.revisionHistoryLimit}|{.spec.replicas}",
    ])?;
    assert_eq!(got, "|hi|yes|nginx:2|B|3|5");
    c.kubectl(&["scale", "deploy", "web", "--current-replicas=5", "--replicas=1"])?;
    assert!(
        c.kubectl_fails(&["scale", "deploy", "web", "--current-replicas=5", "--replicas=2"])?
            .contains("Expected replicas to be 5")
    );
    assert_eq!(
        c.kubectl(&["delete", "deploy", "web"])?.trim(),
        "deployment.apps \"web\" deleted"
    );
    assert!(c.kubectl_fails(&["get", "deploy", "web"])?.contains("NotFound"));
    Ok(())
}

#[test]
fn dry_run_server_does_not_persist() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let out = c.kubectl_stdin(
        &["create", "--dry-run=server", "-o", "name", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dry}\n"),
    )?;
    assert_eq!(out.trim(), "configmap/dry");
    assert!(c.kubectl_fails(&["get", "cm", "dry"])?.contains("NotFound"));
    Ok(())
}

#[test]
fn finalizers_hold_deletion() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, finalizers: [example.com/hold]}\n";
    c.kubectl_stdin(&["create", "-f", "-"], Some(cm))?;
    c.kubectl(&["delete", "cm", "held", "--wait=false"])?;
    let ts = c.kubectl(&["get", "cm", "held", "-o", "jsonpath={.metadata.deletionTimestamp}"])?;
    assert!(!ts.is_empty(), "deletionTimestamp should be set");
    c.kubectl(&[
        "patch",
        "cm",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])?;
    assert!(c.kubectl_fails(&["get", "cm", "held"])?.contains("NotFound"));
    Ok(())
}

#[test]
fn generator_commands_send_protobuf() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    assert_eq!(
        c.kubectl(&["create", "namespace", "team-a"])?.trim(),
        "namespace/team-a created"
    );
    c.kubectl(&["create", "configmap", "c1", "--from-literal=a=b", "-n", "team-a"])?;
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        "s1",
        "--from-literal=pw=hunter2",
        "-n",
        "team-a",
    ])?;
    c.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=2",
        "--port=80",
        "-n",
        "team-a",
    ])?;
    c.kubectl(&["create", "service", "clusterip", "web", "--tcp=80:8080", "-n", "team-a"])?;
    c.kubectl(&["create", "service", "nodeport", "np", "--tcp=80:8080", "-n", "team-a"])?;
    let got = c.kubectl(&["get", "cm", "c1", "-n", "team-a", "-o", "jsonpath={.data.a}"])?;
    assert_eq!(got, "b");
    let got = c.kubectl(&["get", "secret", "s1", "-n", "team-a", "-o", "jsonpath={.data.pw}"])?;
    assert_eq!(got, "aHVudGVyMg==");
    let got = c.kubectl(&["get", "deploy", "web", "-n", "team-a", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].ports[0].containerPort} {.spec.template.spec.dnsPolicy}"])?;
    assert_eq!(got, "2 80 ClusterFirst");
    let svc = table(&c.kubectl(&["get", "svc", "-n", "team-a"])?);
    let web = svc.iter().find(|r| r[0] == "web").expect("web service");
    assert!(web[2].starts_with("10.43."), "cluster IP allocated: {web:?}");
    let np = svc.iter().find(|r| r[0] == "np").expect("np service");
    let node_port: u16 = np[4].trim_start_matches("80:").trim_end_matches("/TCP").parse()?;
    assert!((30000..=32767).contains(&node_port), "{np:?}");
    let kubernetes = c.kubectl(&["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"])?;
    assert_eq!(kubernetes, "10.43.0.1");
    Ok(())
}

#[test]
fn server_side_apply_tracks_managers_and_conflicts() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    assert_eq!(
        c.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(DEPLOYMENT))?
            .trim(),
        "deployment.apps/web serverside-applied"
    );
    let managers = c.kubectl(&[
        "get",
        "deploy",
        "web",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[?(@.operation==\"Apply\")].manager}",
    ])?;
    assert_eq!(
        managers, "kubectl",
        "the applier owns what it applied (controllers add their own status entries)"
    );
    c.kubectl(&["scale", "deploy", "web", "--replicas=4"])?;
    let three = DEPLOYMENT.replace("replicas: 2", "replicas: 3");
    let out = c.kubectl_output(&["apply", "--server-side", "-f", "-"], Some(&three))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a conflicting apply must fail");
    assert!(
        stderr.contains("Apply failed with 1 conflict: conflict with \"kubectl\"") && stderr.contains(".spec.replicas"),
        "{stderr}"
    );
    assert!(stderr.contains("--force-conflicts"), "{stderr}");
    c.kubectl_stdin(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&three),
    )?;
    assert_eq!(
        c.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])?,
        "3"
    );
    let without_env = DEPLOYMENT
        .replace(
            "        env:\n        - {name: A, value: \"1\"}\n        - {name: B, value: \"2\"}\n",
            "",
        )
        .replace("replicas: 2", "replicas: 3");
    c.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(&without_env))?;
    let env = c.kubectl(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env}",
    ])?;
    assert_eq!(env, "", "fields the manager stops applying are removed");
    Ok(())
}
