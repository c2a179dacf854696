//! Node heartbeats: each simulated node owns a Lease in `kube-node-lease` and renews it like a
//! kubelet, spread evenly over the renewal period so thousands of nodes make a steady trickle
//! of writes rather than bursts.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::Semaphore;

use super::SimConfig;

/// The kubelet's lease duration.
const LEASE_DURATION_SECONDS: i32 = 40;
/// Where node leases live.
const NAMESPACE: &str = "kube-node-lease";

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn lease_object(name: &str) -> Lease {
    let now = MicroTime(jiff::Timestamp::now());
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.into()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..Default::default()
        }),
    }
}

/// Creates every node's lease (existing ones are renewed).
pub async fn create_all(client: &kube::Client, config: &SimConfig) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    futures::stream::iter(0..config.nodes)
        .for_each_concurrent(config.concurrency.max(1), |i| {
            let leases = leases.clone();
            async move { renew(&leases, &config.node_name(i)).await }
        })
        .await;
}

/// Renews (or recreates) one lease; failures are logged and retried at the next period.
async fn renew(leases: &Api<Lease>, name: &str) {
    let patch = json!({"spec": {"holderIdentity": name, "renewTime": now()}});
    match leases.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {
            if let Err(e) = leases.create(&PostParams::default(), &lease_object(name)).await {
                tracing::debug!(node = name, error = %e, "could not create the node lease");
            }
        }
        Err(e) => tracing::debug!(node = name, error = %e, "could not renew the node lease"),
    }
}

/// Renewals in flight at once: enough that a slow API server delays heartbeats rather than
/// letting whole slices fall behind, as thousands of independent kubelets would.
const RENEWALS_IN_FLIGHT: usize = 512;

/// Renews every lease once per period, a slice of the nodes each second; a slice does not
/// wait for the previous one to finish.
pub async fn renew_forever(client: kube::Client, config: SimConfig) {
    let leases: Api<Lease> = Api::namespaced(client, NAMESPACE);
    let slices = config.lease_renew.as_secs().max(1) as usize;
    let in_flight = Arc::new(Semaphore::new(RENEWALS_IN_FLIGHT));
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round = 0usize;
    loop {
        tick.tick().await;
        let slice = round % slices;
        round += 1;
        for i in (slice..config.nodes).step_by(slices) {
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let (leases, name) = (leases.clone(), config.node_name(i));
            tokio::spawn(async move {
                renew(&leases, &name).await;
                drop(permit);
            });
        }
    }
}
