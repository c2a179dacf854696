//! The node heartbeat: a Lease in `kube-node-lease` renewed every 10 seconds, which the node
//! lifecycle controller reads to tell a live node from a lost one.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use crate::Error;

/// Where node leases live.
const NAMESPACE: &str = "kube-node-lease";
/// How long the lease is valid without renewal.
const DURATION_SECONDS: i32 = 40;
/// How often it is renewed, as upstream's kubelet (a quarter of the duration).
pub const RENEW_PERIOD: Duration = Duration::from_secs(10);

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Renews the node's lease (creating it, owned by the Node, when missing).
pub async fn renew(client: &kube::Client, node: &str, node_uid: &str) -> Result<(), Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let patch = json!({"spec": {"holderIdentity": node, "leaseDurationSeconds": DURATION_SECONDS, "renewTime": now()}});
    match leases.patch(node, &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {
                    "name": node,
                    "namespace": NAMESPACE,
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}],
                },
                "spec": {"holderIdentity": node, "leaseDurationSeconds": DURATION_SECONDS, "renewTime": now()},
            }))?;
            leases.create(&PostParams::default(), &lease).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
