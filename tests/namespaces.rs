//! The namespace and service account controllers, through the real kubectl.

use kate_e2e::{Cluster, eventually_blocking, table};

#[test]
fn every_namespace_gets_a_default_service_account() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    c.kubectl(&["create", "namespace", "team"])?;
    eventually_blocking("the default service account", || {
        Ok(c.kubectl_output(&["get", "sa", "default", "-n", "team"], None)?
            .status
            .success())
    })?;
    c.kubectl(&["delete", "sa", "default", "-n", "team"])?;
    eventually_blocking("the default service account to come back", || {
        Ok(c.kubectl_output(&["get", "sa", "default", "-n", "team"], None)?
            .status
            .success())
    })?;
    let holder = c.kubectl(&[
        "get",
        "lease",
        "kate-controller-manager",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])?;
    assert!(!holder.is_empty(), "the controller manager holds its lease");
    Ok(())
}

#[test]
fn deleting_a_namespace_removes_its_content() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    c.kubectl(&["create", "namespace", "doomed"])?;
    c.kubectl(&["create", "configmap", "a", "--from-literal=k=v", "-n", "doomed"])?;
    c.kubectl(&["create", "secret", "generic", "b", "--from-literal=k=v", "-n", "doomed"])?;
    c.kubectl(&["create", "deployment", "web", "--image=nginx", "-n", "doomed"])?;
    let out = c
        .kubectl_cmd(&["delete", "namespace", "doomed", "--timeout=30s"])
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "namespace \"doomed\" deleted"
    );
    let namespaces = table(&c.kubectl(&["get", "ns"])?);
    assert!(namespaces.iter().all(|r| r[0] != "doomed"), "{namespaces:?}");
    let left = c.kubectl_output(&["get", "cm,secret,deploy", "-n", "doomed"], None)?;
    assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty());
    Ok(())
}

#[test]
fn content_held_by_a_finalizer_keeps_the_namespace_terminating() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    c.kubectl(&["create", "namespace", "held"])?;
    let cm =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stuck, namespace: held, finalizers: [example.com/hold]}\n";
    c.kubectl_stdin(&["create", "-f", "-"], Some(cm))?;
    c.kubectl(&["delete", "namespace", "held", "--wait=false"])?;
    eventually_blocking("the content-remaining condition", || {
        let message = c.kubectl(&[
            "get",
            "ns",
            "held",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"NamespaceContentRemaining\")].message}",
        ])?;
        Ok(message.contains("configmaps: 1"))
    })?;
    assert_eq!(
        c.kubectl(&["get", "ns", "held", "-o", "jsonpath={.status.phase}"])?,
        "Terminating"
    );
    c.kubectl(&[
        "patch",
        "cm",
        "stuck",
        "-n",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])?;
    eventually_blocking("the namespace to go", || {
        Ok(!c.kubectl_output(&["get", "ns", "held"], None)?.status.success())
    })
}
