//! The scheduler and simulated nodes (`kate server --sim-nodes 3`), through the real kubectl:
//! placement by resources, taints, node affinity, topology spread and anti-affinity, upstream's
//! refusal messages and events, preemption, and pods left to other schedulers.

use std::time::Duration;

use anyhow::Result;
use kate_e2e::{Cluster, eventually_blocking};
use serde_json::Value;

/// A cluster with three simulated nodes (4 cpu each, zones kate-sim-a/b/c), all Ready.
fn cluster() -> Result<Cluster> {
    let c = Cluster::start_with(tempfile::tempdir()?, &["--sim-nodes", "3"])?;
    eventually_blocking("three Ready nodes", || {
        let nodes = c.kubectl(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
        ])?;
        Ok(nodes.split_whitespace().filter(|s| *s == "True").count() == 3)
    })?;
    Ok(c)
}

fn node_of(c: &Cluster, name: &str) -> Result<String> {
    Ok(c.pod(name)?
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string())
}

/// Waits until the pod is bound and Running (the simulated kubelet started it); its node.
fn running_on(c: &Cluster, name: &str) -> Result<String> {
    eventually_blocking(&format!("{name} running"), || {
        Ok(c.pod(name)?.pointer("/status/phase") == Some(&Value::from("Running")))
    })?;
    node_of(c, name)
}

/// Waits until the pod is refused with reason Unschedulable; the condition's message.
fn unschedulable(c: &Cluster, name: &str) -> Result<String> {
    let mut message = String::new();
    eventually_blocking(&format!("{name} unschedulable"), || {
        let p = c.pod(name)?;
        let cond = p
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c["type"] == "PodScheduled" && c["status"] == "False" && c["reason"] == "Unschedulable")
            });
        if let Some(cond) = cond {
            message = cond["message"].as_str().unwrap_or("").to_string();
        }
        Ok(cond.is_some() && p.pointer("/spec/nodeName").is_none())
    })?;
    Ok(message)
}

/// A bare pod manifest with a cpu request and extra spec lines (indented four spaces).
fn pod_yaml(name: &str, cpu: &str, labels: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  containers:\n  - name: c\n    image: registry.k8s.io/pause:3.10\n    resources: {{requests: {{cpu: \"{cpu}\"}}}}\n{extra}"
    )
}

fn events_for(c: &Cluster, name: &str, reason: &str) -> Result<Vec<String>> {
    let out = c.kubectl(&[
        "get",
        "events",
        "-o",
        "json",
        "--field-selector",
        &format!("involvedObject.name={name}"),
    ])?;
    let events: Value = serde_json::from_str(&out)?;
    Ok(events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == reason)
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect())
}

#[test]
fn exhausted_resources_leave_the_pod_pending_with_upstreams_message() -> Result<()> {
    let c = cluster()?;
    for i in 0..3 {
        c.apply(&pod_yaml(&format!("fill-{i}"), "3", "app: fill", ""))?;
    }
    let mut nodes: Vec<String> = (0..3)
        .map(|i| running_on(&c, &format!("fill-{i}")))
        .collect::<Result<_>>()?;
    nodes.sort();
    assert_eq!(
        nodes,
        ["kate-sim-0", "kate-sim-1", "kate-sim-2"],
        "least allocated spreads them"
    );
    c.apply(&pod_yaml("late", "2", "app: late", ""))?;
    let expected = "0/3 nodes are available: 3 Insufficient cpu. \
                    preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod..";
    assert_eq!(unschedulable(&c, "late")?, expected);
    eventually_blocking("a FailedScheduling event", || {
        Ok(events_for(&c, "late", "FailedScheduling")?
            .iter()
            .any(|m| m == expected))
    })?;
    let scheduled = events_for(&c, "fill-0", "Scheduled")?;
    assert!(
        scheduled[0].starts_with("Successfully assigned default/fill-0 to kate-sim-"),
        "{scheduled:?}"
    );

    // Freeing room schedules the waiting pod.
    c.kubectl(&["delete", "pod", "fill-1", "--wait=true"])?;
    running_on(&c, "late")?;
    Ok(())
}

#[test]
fn taints_keep_out_pods_without_tolerations() -> Result<()> {
    let c = cluster()?;
    c.kubectl(&["taint", "nodes", "--all", "dedicated=gpu:NoSchedule"])?;
    c.apply(&pod_yaml("plain", "1", "app: plain", ""))?;
    assert_eq!(
        unschedulable(&c, "plain")?,
        "0/3 nodes are available: 3 node(s) had untolerated taint {dedicated: gpu}. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.."
    );
    let tolerant = "  tolerations:\n  - {key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}\n";
    c.apply(&pod_yaml("tolerant", "1", "app: t", tolerant))?;
    running_on(&c, "tolerant")?;

    // Untainting one node lets the plain pod in, there and nowhere else.
    c.kubectl(&["taint", "nodes", "kate-sim-2", "dedicated=gpu:NoSchedule-"])?;
    assert_eq!(running_on(&c, "plain")?, "kate-sim-2");
    Ok(())
}

#[test]
fn node_selectors_and_node_affinity_choose_the_zone() -> Result<()> {
    let c = cluster()?;
    c.apply(&pod_yaml(
        "in-b",
        "1",
        "app: a",
        "  nodeSelector: {topology.kubernetes.io/zone: kate-sim-b}\n",
    ))?;
    assert_eq!(running_on(&c, "in-b")?, "kate-sim-1");
    let affinity = "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchExpressions:\n          - {key: topology.kubernetes.io/zone, operator: NotIn, values: [kate-sim-a, kate-sim-b]}\n";
    c.apply(&pod_yaml("not-a-b", "1", "app: a", affinity))?;
    assert_eq!(running_on(&c, "not-a-b")?, "kate-sim-2");
    c.apply(&pod_yaml(
        "nowhere",
        "1",
        "app: a",
        "  nodeSelector: {topology.kubernetes.io/zone: mars}\n",
    ))?;
    assert_eq!(
        unschedulable(&c, "nowhere")?,
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.."
    );
    Ok(())
}

#[test]
fn topology_spread_balances_three_zones() -> Result<()> {
    let c = cluster()?;
    let spread = "  topologySpreadConstraints:\n  - maxSkew: 1\n    topologyKey: topology.kubernetes.io/zone\n    whenUnsatisfiable: DoNotSchedule\n    labelSelector: {matchLabels: {app: spread}}\n";
    // Pin two pods into zone a first: a third there would exceed the skew.
    for i in 0..2 {
        let pinned = format!("{spread}  nodeName: kate-sim-0\n");
        c.apply(&pod_yaml(&format!("pinned-{i}"), "100m", "app: spread", &pinned))?;
    }
    for i in 0..4 {
        c.apply(&pod_yaml(&format!("spread-{i}"), "100m", "app: spread", spread))?;
    }
    let mut per_node = std::collections::BTreeMap::new();
    for i in 0..4 {
        *per_node.entry(running_on(&c, &format!("spread-{i}"))?).or_insert(0) += 1;
    }
    assert_eq!(per_node.get("kate-sim-0"), None, "zone a already had two: {per_node:?}");
    assert_eq!(per_node.get("kate-sim-1"), Some(&2), "{per_node:?}");
    assert_eq!(per_node.get("kate-sim-2"), Some(&2), "{per_node:?}");
    Ok(())
}

#[test]
fn anti_affinity_places_one_per_node() -> Result<()> {
    let c = cluster()?;
    let anti = "  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - labelSelector: {matchLabels: {app: solo}}\n        topologyKey: kubernetes.io/hostname\n";
    for i in 0..3 {
        c.apply(&pod_yaml(&format!("solo-{i}"), "100m", "app: solo", anti))?;
    }
    let mut nodes: Vec<String> = (0..3)
        .map(|i| running_on(&c, &format!("solo-{i}")))
        .collect::<Result<_>>()?;
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "one per node");
    c.apply(&pod_yaml("solo-3", "100m", "app: solo", anti))?;
    assert_eq!(
        unschedulable(&c, "solo-3")?,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
         preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.."
    );
    Ok(())
}

#[test]
fn a_high_priority_pod_preempts_a_low_priority_one() -> Result<()> {
    let c = cluster()?;
    let classes = c.kubectl(&["get", "priorityclasses", "-o", "name"])?;
    assert!(
        classes.contains("system-cluster-critical") && classes.contains("system-node-critical"),
        "{classes}"
    );
    c.apply(
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: low}\nvalue: 10\n---\n\
         apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\n",
    )?;
    for i in 0..3 {
        c.apply(&pod_yaml(
            &format!("low-{i}"),
            "3",
            "app: low",
            "  priorityClassName: low\n",
        ))?;
        running_on(&c, &format!("low-{i}"))?;
    }
    assert_eq!(c.pod("low-0")?.pointer("/spec/priority"), Some(&Value::from(10)));
    c.apply(&pod_yaml("vip", "3", "app: vip", "  priorityClassName: high\n"))?;
    let node = running_on(&c, "vip")?;
    assert_eq!(c.pod("vip")?.pointer("/spec/priority"), Some(&Value::from(1000)));
    let remaining = c.kubectl(&[
        "get",
        "pods",
        "-l",
        "app=low",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ])?;
    assert_eq!(remaining.split_whitespace().count(), 2, "exactly one victim");
    assert!(!remaining.contains(&node), "the victim was on {node}: {remaining}");
    let preempted: Vec<String> = (0..3)
        .map(|i| events_for(&c, &format!("low-{i}"), "Preempted"))
        .collect::<Result<Vec<_>>>()?
        .concat();
    assert_eq!(preempted.len(), 1, "{preempted:?}");
    assert!(preempted[0].starts_with("Preempted by pod ") && preempted[0].ends_with(&format!("on node {node}")));
    let failed = events_for(&c, "vip", "FailedScheduling")?;
    assert_eq!(
        failed,
        ["0/3 nodes are available: 3 Insufficient cpu."],
        "preemption found a node"
    );
    Ok(())
}

#[test]
fn unknown_priority_classes_are_refused() -> Result<()> {
    let c = cluster()?;
    let err = c
        .kubectl_stdin(
            &["apply", "-f", "-"],
            Some(&pod_yaml("x", "1", "app: x", "  priorityClassName: nope\n")),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("no PriorityClass with name nope was found"), "{err}");
    Ok(())
}

#[test]
fn pods_for_another_scheduler_are_left_alone() -> Result<()> {
    let c = cluster()?;
    c.apply(&pod_yaml("theirs", "1", "app: x", "  schedulerName: someone-else\n"))?;
    c.apply(&pod_yaml("ours", "1", "app: x", ""))?;
    running_on(&c, "ours")?;
    std::thread::sleep(Duration::from_secs(1));
    let p = c.pod("theirs")?;
    assert_eq!(p.pointer("/spec/nodeName"), None);
    assert_eq!(p.pointer("/status/conditions"), None, "no PodScheduled condition");
    assert!(events_for(&c, "theirs", "FailedScheduling")?.is_empty());
    let holder = c.kubectl(&[
        "get",
        "lease",
        "kube-scheduler",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])?;
    assert!(!holder.is_empty(), "the scheduler holds its lease");
    Ok(())
}
