//! The ReplicaSet and Deployment controllers in a real `kate server`, driven with kubectl and
//! kube-rs. There is no kubelet: a test that needs running pods starts [`Kubelet`], which
//! marks pods Running and Ready the way a kubelet would.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kate_e2e::Cluster;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const NS: &str = "default";
const TIMEOUT: Duration = Duration::from_secs(60);

/// A Deployment manifest for `kubectl apply`.
fn deployment(name: &str, replicas: u32, image: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
{extra_spec}  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: web, image: \"{image}\"}}]
"
    )
}

/// Runs kubectl without stalling the runtime's other tasks (the fake kubelet among them).
fn kubectl(c: &Cluster, args: &[&str]) -> anyhow::Result<String> {
    tokio::task::block_in_place(|| c.kubectl(args))
}

fn kubectl_stdin(c: &Cluster, args: &[&str], input: &str) -> anyhow::Result<String> {
    tokio::task::block_in_place(|| c.kubectl_stdin(args, Some(input)))
}

/// Polls `check` until it yields a value or `TIMEOUT` passes.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pods matching `selector` that are not being deleted.
async fn live_pods(pods: &Api<Pod>, selector: &str) -> anyhow::Result<Vec<Pod>> {
    let list = pods.list(&ListParams::default().labels(selector)).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

/// Waits until exactly `n` live pods match `selector`; returns them.
async fn wait_for_pods(pods: &Api<Pod>, selector: &str, n: usize) -> anyhow::Result<Vec<Pod>> {
    eventually(&format!("{n} pods matching {selector}"), || async {
        let live = live_pods(pods, selector).await?;
        Ok((live.len() == n).then_some(live))
    })
    .await
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn image(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// Marks a pod Running and Ready, as a kubelet reports a started pod.
async fn make_ready(pods: &Api<Pod>, name: &str) -> anyhow::Result<()> {
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let status = json!({"status": {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
        ],
    }});
    match pods
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A stand-in kubelet: makes every pod of the namespace Running and Ready `delay` after it
/// first sees it, and tracks the fewest ready pods seen once `watch` is set.
struct Kubelet {
    task: tokio::task::JoinHandle<()>,
    watching: Arc<AtomicBool>,
    fewest_ready: Arc<AtomicI64>,
}

impl Kubelet {
    fn start(pods: Api<Pod>, delay: Duration) -> Kubelet {
        let watching = Arc::new(AtomicBool::new(false));
        let fewest_ready = Arc::new(AtomicI64::new(i64::MAX));
        let (w, f) = (watching.clone(), fewest_ready.clone());
        let task = tokio::spawn(async move {
            let mut first_seen: HashMap<String, Instant> = HashMap::new();
            loop {
                if let Ok(list) = live_pods(&pods, "").await {
                    let ready = list.iter().filter(|p| is_ready(p)).count() as i64;
                    if w.load(Ordering::SeqCst) {
                        f.fetch_min(ready, Ordering::SeqCst);
                    }
                    for pod in list.iter().filter(|p| !is_ready(p)) {
                        let seen = *first_seen
                            .entry(pod.uid().unwrap_or_default())
                            .or_insert_with(Instant::now);
                        if seen.elapsed() >= delay {
                            let _ = make_ready(&pods, &pod.name_any()).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
        Kubelet {
            task,
            watching,
            fewest_ready,
        }
    }

    /// Starts counting ready pods.
    fn watch_availability(&self) {
        self.watching.store(true, Ordering::SeqCst);
    }

    /// The fewest ready pods seen since [`Kubelet::watch_availability`].
    fn fewest_ready(&self) -> i64 {
        self.fewest_ready.load(Ordering::SeqCst)
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The ReplicaSets of a Deployment (by its label `app`), oldest revision first.
async fn replica_sets(sets: &Api<ReplicaSet>, app: &str) -> anyhow::Result<Vec<ReplicaSet>> {
    let mut list = sets
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?
        .items;
    list.sort_by_key(revision);
    Ok(list)
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get("deployment.kubernetes.io/revision")
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_keeps_its_replicas() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let client = c.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    kubectl_stdin(&c, &["apply", "-f", "-"], &deployment("web", 3, "nginx:1", ""))?;

    let three = wait_for_pods(&pods, "app=web", 3).await?;
    let rs = eventually("the replica set", || async {
        Ok(replica_sets(&sets, "web").await?.into_iter().next())
    })
    .await?;
    let hash = rs.labels().get("pod-template-hash").cloned().context("no hash label")?;
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(revision(&rs), 1);
    let annotations = rs.annotations();
    assert_eq!(
        annotations
            .get("deployment.kubernetes.io/desired-replicas")
            .map(String::as_str),
        Some("3")
    );
    assert_eq!(
        annotations
            .get("deployment.kubernetes.io/max-replicas")
            .map(String::as_str),
        Some("4")
    );
    let rs_owner = rs.owner_references().first().context("the replica set has no owner")?;
    assert_eq!((rs_owner.kind.as_str(), rs_owner.name.as_str()), ("Deployment", "web"));
    for pod in &three {
        let owner = pod.owner_references().first().context("a pod has no owner")?;
        assert_eq!(owner.kind, "ReplicaSet");
        assert_eq!(owner.uid, rs.uid().unwrap_or_default());
        assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
        assert!(
            pod.name_any().starts_with(&format!("web-{hash}-")),
            "{}",
            pod.name_any()
        );
        assert_eq!(pod.labels().get("pod-template-hash"), Some(&hash));
    }
    let revision_of_deployment = kubectl(
        &c,
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ],
    )?;
    assert_eq!(revision_of_deployment, "1");

    // A deleted pod is replaced.
    let victim = three[0].name_any();
    kubectl(&c, &["delete", "pod", &victim])?;
    eventually("a replacement pod", || async {
        let live = live_pods(&pods, "app=web").await?;
        Ok((live.len() == 3 && live.iter().all(|p| p.name_any() != victim)).then_some(()))
    })
    .await?;

    kubectl(&c, &["scale", "deployment", "web", "--replicas=5"])?;
    wait_for_pods(&pods, "app=web", 5).await?;
    kubectl(&c, &["scale", "deployment", "web", "--replicas=1"])?;
    wait_for_pods(&pods, "app=web", 1).await?;
    assert_eq!(
        replica_sets(&sets, "web").await?.len(),
        1,
        "scaling makes no new replica set"
    );

    // With pods running the rollout completes, and status and conditions say so.
    let _kubelet = Kubelet::start(pods.clone(), Duration::ZERO);
    let out = tokio::task::block_in_place(|| c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]))?;
    assert!(out.contains("deployment \"web\" successfully rolled out"), "{out}");
    let d: Deployment = Api::namespaced(client, NS).get("web").await?;
    let status = d.status.context("no status")?;
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.ready_replicas,
            status.available_replicas
        ),
        (Some(1), Some(1), Some(1), Some(1))
    );
    assert_eq!(status.observed_generation, d.metadata.generation);
    let conditions: HashMap<String, (String, String)> = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, (c.status, c.reason.unwrap_or_default())))
        .collect();
    assert_eq!(
        conditions["Available"],
        ("True".into(), "MinimumReplicasAvailable".into())
    );
    assert_eq!(
        conditions["Progressing"],
        ("True".into(), "NewReplicaSetAvailable".into())
    );

    let events = kubectl(
        &c,
        &[
            "get",
            "events",
            "-o",
            "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
        ],
    )?;
    for reason in ["ScalingReplicaSet", "SuccessfulCreate", "SuccessfulDelete"] {
        assert!(events.lines().any(|l| l == reason), "no {reason} event in:\n{events}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_undo_and_history() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let client = c.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    let kubelet = Kubelet::start(pods.clone(), Duration::from_millis(800));
    let strategy = "  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}\n";
    kubectl_stdin(&c, &["apply", "-f", "-"], &deployment("web", 4, "nginx:1", strategy))?;
    kubectl(&c, &["rollout", "status", "deployment/web", "--timeout=60s"])?;
    kubelet.watch_availability();

    kubectl(&c, &["set", "image", "deployment/web", "web=nginx:2"])?;
    let out = kubectl(&c, &["rollout", "status", "deployment/web", "--timeout=60s"])?;
    assert!(out.starts_with("Waiting for deployment"), "{out}");
    assert!(
        out.trim_end().ends_with("deployment \"web\" successfully rolled out"),
        "{out}"
    );
    let now = wait_for_pods(&pods, "app=web", 4).await?;
    assert!(now.iter().all(|p| image(p) == "nginx:2"));
    let rs = replica_sets(&sets, "web").await?;
    assert_eq!(rs.iter().map(revision).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(rs.iter().map(spec_replicas).collect::<Vec<_>>(), [0, 4]);
    let history = kubectl(&c, &["rollout", "history", "deployment/web"])?;
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    // Undo goes back to the first template, whose ReplicaSet becomes revision 3.
    let undo = kubectl(&c, &["rollout", "undo", "deployment/web"])?;
    assert!(undo.contains("rolled back"), "{undo}");
    kubectl(&c, &["rollout", "status", "deployment/web", "--timeout=60s"])?;
    let now = wait_for_pods(&pods, "app=web", 4).await?;
    assert!(now.iter().all(|p| image(p) == "nginx:1"));
    let rs = replica_sets(&sets, "web").await?;
    assert_eq!(rs.len(), 2, "the old replica set is reused");
    assert_eq!((revision(&rs[1]), spec_replicas(&rs[1])), (3, 4));
    assert_eq!(
        rs[1]
            .annotations()
            .get("deployment.kubernetes.io/revision-history")
            .map(String::as_str),
        Some("1")
    );

    kubectl(&c, &["rollout", "undo", "deployment/web", "--to-revision=2"])?;
    kubectl(&c, &["rollout", "status", "deployment/web", "--timeout=60s"])?;
    let now = wait_for_pods(&pods, "app=web", 4).await?;
    assert!(now.iter().all(|p| image(p) == "nginx:2"));
    let history = kubectl(&c, &["rollout", "history", "deployment/web"])?;
    assert!(history.contains('3') && history.contains('4'), "{history}");

    // maxUnavailable 1 of 4: at least 3 pods were ready at every moment.
    assert!(
        kubelet.fewest_ready() >= 3,
        "only {} ready pods at one point",
        kubelet.fewest_ready()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_restart() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let client = c.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let _kubelet = Kubelet::start(pods.clone(), Duration::ZERO);
    kubectl_stdin(&c, &["apply", "-f", "-"], &deployment("web", 2, "nginx:1", ""))?;
    kubectl(&c, &["rollout", "status", "deployment/web", "--timeout=60s"])?;

    kubectl(&c, &["rollout", "pause", "deployment/web"])?;
    kubectl(&c, &["set", "image", "deployment/web", "web=nginx:2"])?;
    let reason = eventually("the paused condition", || async {
        let d = deployments.get("web").await?;
        let progressing = d
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Progressing");
        Ok(progressing.and_then(|c| c.reason).filter(|r| r == "DeploymentPaused"))
    })
    .await?;
    assert_eq!(reason, "DeploymentPaused");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(replica_sets(&sets, "web").await?.len(), 1, "no rollout while paused");
    assert!(live_pods(&pods, "app=web").await?.iter().all(|p| image(p) == "nginx:1"));

    kubectl(&c, &["rollout", "resume", "deployment/web"])?;
    kubectl(&c, &["rollout", "status", "deployment/web", "--timeout=60s"])?;
    let now = wait_for_pods(&pods, "app=web", 2).await?;
    assert!(now.iter().all(|p| image(p) == "nginx:2"));

    kubectl(&c, &["rollout", "restart", "deployment/web"])?;
    kubectl(&c, &["rollout", "status", "deployment/web", "--timeout=60s"])?;
    let rs = replica_sets(&sets, "web").await?;
    assert_eq!(rs.iter().map(revision).collect::<Vec<_>>(), [1, 2, 3]);
    let restarted = wait_for_pods(&pods, "app=web", 2).await?;
    let newest = rs[2].labels().get("pod-template-hash").cloned().unwrap_or_default();
    assert!(
        restarted
            .iter()
            .all(|p| p.labels().get("pod-template-hash") == Some(&newest))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_rollout_exceeds_its_progress_deadline() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let extra = "  progressDeadlineSeconds: 2\n";
    kubectl_stdin(&c, &["apply", "-f", "-"], &deployment("stuck", 1, "nginx:1", extra))?;
    // No kubelet: the pod never becomes ready.
    let started = Instant::now();
    let err =
        tokio::task::block_in_place(|| c.kubectl_fails(&["rollout", "status", "deployment/stuck", "--timeout=30s"]))?;
    assert!(
        err.contains("deployment \"stuck\" exceeded its progress deadline"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let condition = kubectl(
        &c,
        &[
            "get",
            "deployment",
            "stuck",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
        ],
    )?;
    assert_eq!(condition, "ProgressDeadlineExceeded");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_replaces_every_pod_at_once() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let client = c.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let _kubelet = Kubelet::start(pods.clone(), Duration::from_millis(100));
    let strategy = "  strategy: {type: Recreate}\n";
    kubectl_stdin(&c, &["apply", "-f", "-"], &deployment("db", 3, "postgres:16", strategy))?;
    kubectl(&c, &["rollout", "status", "deployment/db", "--timeout=60s"])?;

    // Sample the pods through the rollout: both images must never run side by side.
    let sampler = {
        let pods = pods.clone();
        tokio::spawn(async move {
            let mut mixed = false;
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(list) = live_pods(&pods, "app=db").await {
                    let images: BTreeSet<String> = list.iter().map(image).collect();
                    mixed |= images.len() > 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            mixed
        })
    };
    kubectl(&c, &["set", "image", "deployment/db", "web=postgres:17"])?;
    kubectl(&c, &["rollout", "status", "deployment/db", "--timeout=60s"])?;
    let now = wait_for_pods(&pods, "app=db", 3).await?;
    assert!(now.iter().all(|p| image(p) == "postgres:17"));
    assert!(!sampler.await?, "old and new pods ran together");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_set_adopts_releases_and_deletes_unready_first() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let client = c.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    kubectl_stdin(
        &c,
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: orphan, labels: {app: cache}}\nspec: {containers: [{name: c, image: redis}]}\n",
    )?;
    let rs = "apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: cache}
spec:
  replicas: 2
  minReadySeconds: 1
  selector: {matchLabels: {app: cache}}
  template:
    metadata: {labels: {app: cache}}
    spec: {containers: [{name: c, image: redis}]}
";
    kubectl_stdin(&c, &["apply", "-f", "-"], rs)?;
    let two = wait_for_pods(&pods, "app=cache", 2).await?;
    assert!(
        two.iter().any(|p| p.name_any() == "orphan"),
        "the orphan was adopted rather than replaced"
    );
    let uid = sets.get("cache").await?.uid().unwrap_or_default();
    eventually("the orphan's owner reference", || async {
        let orphan = pods.get("orphan").await?;
        Ok(orphan
            .owner_references()
            .iter()
            .any(|r| r.uid == uid && r.controller == Some(true))
            .then_some(()))
    })
    .await?;

    // A pod relabelled out of the selector is released and replaced.
    kubectl(&c, &["label", "pod", "orphan", "app=gone", "--overwrite"])?;
    eventually("the release", || async {
        let released = pods.get("orphan").await?;
        Ok(released.owner_references().is_empty().then_some(()))
    })
    .await?;
    let two = wait_for_pods(&pods, "app=cache", 2).await?;
    assert!(two.iter().all(|p| p.name_any() != "orphan"));

    // Status counts ready pods at once and available ones after minReadySeconds.
    for pod in &two {
        make_ready(&pods, &pod.name_any()).await?;
    }
    eventually("two available replicas", || async {
        let status = sets.get("cache").await?.status.unwrap_or_default();
        Ok((status.ready_replicas == Some(2) && status.available_replicas == Some(2)).then_some(()))
    })
    .await?;

    // Scaling down gives up the not-ready pods before the ready one.
    kubectl(&c, &["scale", "rs", "cache", "--replicas=3"])?;
    let three = wait_for_pods(&pods, "app=cache", 3).await?;
    let ready: BTreeSet<String> = three.iter().filter(|p| is_ready(p)).map(|p| p.name_any()).collect();
    assert_eq!(ready.len(), 2);
    kubectl(&c, &["scale", "rs", "cache", "--replicas=2"])?;
    let left = wait_for_pods(&pods, "app=cache", 2).await?;
    assert_eq!(left.iter().map(|p| p.name_any()).collect::<BTreeSet<_>>(), ready);
    let status = eventually("the status after scaling", || async {
        let rs = sets.get("cache").await?;
        let status = rs.status.clone().unwrap_or_default();
        Ok((status.replicas == 2 && status.observed_generation == rs.metadata.generation).then_some(status))
    })
    .await?;
    assert_eq!(status.fully_labeled_replicas, Some(2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_does_not_duplicate_pods() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    kubectl_stdin(&c, &["apply", "-f", "-"], &deployment("steady", 20, "nginx:1", ""))?;
    let pods: Api<Pod> = Api::namespaced(c.client().await?, NS);
    let before: BTreeSet<String> = wait_for_pods(&pods, "app=steady", 20)
        .await?
        .iter()
        .map(|p| p.name_any())
        .collect();
    // A second Deployment is killed in the middle of creating its pods.
    kubectl_stdin(&c, &["apply", "-f", "-"], &deployment("busy", 300, "nginx:1", ""))?;
    eventually("the first pods of busy", || async {
        Ok((!live_pods(&pods, "app=busy").await?.is_empty()).then_some(()))
    })
    .await?;
    let dir = c.kill();

    let c = Cluster::start_in(dir)?;
    let pods: Api<Pod> = Api::namespaced(c.client().await?, NS);
    // The controllers run again once the dead server's lease expires; a new Deployment getting
    // its pods shows they do.
    kubectl_stdin(&c, &["apply", "-f", "-"], &deployment("probe", 1, "nginx:1", ""))?;
    wait_for_pods(&pods, "app=probe", 1).await?;
    wait_for_pods(&pods, "app=busy", 300).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(live_pods(&pods, "app=busy").await?.len(), 300);
    let after: BTreeSet<String> = live_pods(&pods, "app=steady")
        .await?
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(before, after, "the steady deployment's pods were left alone");
    let sets: Api<ReplicaSet> = Api::namespaced(c.client().await?, NS);
    assert_eq!(replica_sets(&sets, "busy").await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resizing_mid_rollout_and_history_limit() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let client = c.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    let _kubelet = Kubelet::start(pods.clone(), Duration::from_millis(1000));
    let extra = "  revisionHistoryLimit: 1\n  strategy: {rollingUpdate: {maxSurge: 3, maxUnavailable: 0}}\n";
    kubectl_stdin(&c, &["apply", "-f", "-"], &deployment("web", 4, "nginx:1", extra))?;
    kubectl(&c, &["rollout", "status", "deployment/web", "--timeout=60s"])?;

    // Resized while both ReplicaSets run: the change is shared and the rollout still ends
    // with every replica on the new template.
    kubectl(&c, &["set", "image", "deployment/web", "web=nginx:2"])?;
    eventually("two active replica sets", || async {
        let rs = replica_sets(&sets, "web").await?;
        Ok((rs.iter().filter(|rs| spec_replicas(rs) > 0).count() == 2).then_some(()))
    })
    .await?;
    kubectl(&c, &["scale", "deployment", "web", "--replicas=8"])?;
    eventually("the resize recorded on every active replica set", || async {
        let rs = replica_sets(&sets, "web").await?;
        let sized = rs.iter().filter(|rs| spec_replicas(rs) > 0).all(|rs| {
            rs.annotations()
                .get("deployment.kubernetes.io/desired-replicas")
                .map(String::as_str)
                == Some("8")
        });
        Ok(sized.then_some(()))
    })
    .await?;
    kubectl(&c, &["rollout", "status", "deployment/web", "--timeout=60s"])?;
    let now = wait_for_pods(&pods, "app=web", 8).await?;
    assert!(now.iter().all(|p| image(p) == "nginx:2"));

    // With revisionHistoryLimit 1, one old ReplicaSet is kept.
    kubectl(&c, &["set", "image", "deployment/web", "web=nginx:3"])?;
    kubectl(&c, &["rollout", "status", "deployment/web", "--timeout=60s"])?;
    let rs = eventually("the oldest replica set deleted", || async {
        let rs = replica_sets(&sets, "web").await?;
        Ok((rs.len() == 2).then_some(rs))
    })
    .await?;
    assert_eq!(rs.iter().map(revision).collect::<Vec<_>>(), [2, 3]);
    Ok(())
}

#[test]
fn failed_pod_creates_set_replica_failure_until_they_succeed() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: doomed}
spec:
  replicas: 2
  selector: {matchLabels: {app: doomed}}
  template:
    metadata: {labels: {app: doomed}}
    spec:
      priorityClassName: late-class
      containers: [{name: c, image: busybox:1.35.0}]
",
        ),
    )?;
    let condition = |c: &Cluster| {
        c.kubectl(&[
            "get",
            "rs",
            "doomed",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"ReplicaFailure\")].reason}",
        ])
    };
    kate_e2e::eventually_blocking("ReplicaFailure", || Ok(condition(&c)? == "FailedCreate"))?;
    let events = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=doomed"])?;
    assert!(
        events.contains("FailedCreate") && events.contains("no PriorityClass with name late-class was found"),
        "{events}"
    );
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        Some("apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: late-class}\nvalue: 10\n"),
    )?;
    kate_e2e::eventually_blocking("the pods and no ReplicaFailure", || {
        let replicas = c.kubectl(&["get", "rs", "doomed", "-o", "jsonpath={.status.replicas}"])?;
        Ok(replicas == "2" && condition(&c)?.is_empty())
    })?;
    Ok(())
}
