//! The node controller: initializes nodes from what the provider knows of their machines.
//!
//! A node gets its `spec.providerID` when it has none, the zone, region and instance-type labels
//! it lacks, and loses the [`UNINITIALIZED_TAINT`], in one write. A node carrying that taint (as a
//! kubelet started for an external cloud provider registers it) waits for the cloud's word, so
//! its labels are overwritten; on any other node a label already there was chosen by someone
//! (the kubelet's `--node-labels`, an administrator) and stays. The addresses are kept as the
//! provider reports them, when it reports any. Nodes the provider does not know
//! (`instance_metadata` answers `None`) are left alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, NodeAddress};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::{
    Config, Error, INSTANCE_TYPE_LABEL, InstanceMetadata, Part, Provider, REGION_LABEL, UNINITIALIZED_TAINT,
    ZONE_LABEL, modify,
};

/// How long after a failed sync it is retried.
const RETRY: Duration = Duration::from_secs(5);

/// What a node needs to match its machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeChanges {
    /// A provider ID to set (only ever set where there is none: upstream forbids changing it).
    pub provider_id: Option<String>,
    /// Labels to set.
    pub labels: BTreeMap<String, String>,
    /// Whether the uninitialized taint must go.
    pub remove_taint: bool,
    /// Addresses to write to the status.
    pub addresses: Option<Vec<NodeAddress>>,
}

impl NodeChanges {
    /// Whether the node already matches.
    pub fn is_empty(&self) -> bool {
        !self.touches_object() && self.addresses.is_none()
    }

    /// Whether the node object itself (not its status) must change.
    fn touches_object(&self) -> bool {
        self.provider_id.is_some() || !self.labels.is_empty() || self.remove_taint
    }

    /// Makes the object changes (provider ID, labels, taint) on `node`.
    fn apply_to_object(&self, node: &mut Node) {
        node.labels_mut().extend(self.labels.clone());
        let spec = node.spec.get_or_insert_with(Default::default);
        if let Some(id) = &self.provider_id {
            spec.provider_id = Some(id.clone());
        }
        if self.remove_taint
            && let Some(taints) = spec.taints.as_mut()
        {
            taints.retain(|t| t.key != UNINITIALIZED_TAINT);
        }
    }
}

/// Whether the node carries the uninitialized taint.
fn tainted(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .any(|t| t.key == UNINITIALIZED_TAINT)
}

/// What `node` needs to match `machine`.
pub fn changes(node: &Node, machine: &InstanceMetadata) -> NodeChanges {
    let current_id = node.spec.as_ref().and_then(|s| s.provider_id.as_deref()).unwrap_or("");
    let tainted = tainted(node);
    let mut labels = BTreeMap::new();
    for (key, value) in [
        (ZONE_LABEL, &machine.zone),
        (REGION_LABEL, &machine.region),
        (INSTANCE_TYPE_LABEL, &machine.instance_type),
    ] {
        let Some(value) = value.as_ref().filter(|v| !v.is_empty()) else {
            continue;
        };
        let wrong = match node.labels().get(key) {
            None => true,
            // A tainted node waits for the cloud's word; otherwise a label already there was
            // chosen by someone (say, the kubelet's --node-labels) and stays.
            Some(current) => tainted && current != value,
        };
        if wrong {
            labels.insert(key.to_string(), value.clone());
        }
    }
    let current_addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    NodeChanges {
        provider_id: (current_id.is_empty() && !machine.provider_id.is_empty()).then(|| machine.provider_id.clone()),
        labels,
        remove_taint: tainted,
        addresses: (!machine.addresses.is_empty() && current_addresses != Some(&machine.addresses))
            .then(|| machine.addresses.clone()),
    }
}

/// What the reconciler needs.
struct Ctx {
    client: kube::Client,
    provider: Arc<dyn Provider>,
    resync: Duration,
}

/// Runs the node controller until the process stops.
pub async fn run(client: kube::Client, provider: Arc<dyn Provider>, config: Config) -> Result<(), Error> {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        provider,
        resync: config.resync,
    });
    Controller::new(Api::<Node>::all(client), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "node reconcile failed");
            }
        })
        .await;
    Ok(())
}

fn error_policy(node: Arc<Node>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(node = %node.name_any(), %error, "initializing the node failed; retrying");
    Action::requeue(RETRY)
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = node.name_any();
    let Some(machine) = ctx.provider.instance_metadata(&node).await? else {
        return Ok(Action::await_change());
    };
    let wanted = changes(&node, &machine);
    if wanted.is_empty() {
        return Ok(Action::requeue(ctx.resync));
    }
    let api: Api<Node> = Api::all(ctx.client.clone());
    if wanted.touches_object() {
        let written = modify(&api, &name, Part::Main, |n: &mut Node| {
            let fresh = changes(n, &machine);
            fresh.touches_object() && {
                fresh.apply_to_object(n);
                true
            }
        })
        .await?;
        if written {
            tracing::info!(
                node = %name,
                provider = ctx.provider.name(),
                provider_id = %machine.provider_id,
                labels = ?wanted.labels,
                removed_taint = wanted.remove_taint,
                "initialized the node from its machine"
            );
        }
    }
    if wanted.addresses.is_some() {
        let written = modify(&api, &name, Part::Status, |n: &mut Node| {
            match changes(n, &machine).addresses {
                Some(addresses) => {
                    n.status.get_or_insert_with(Default::default).addresses = Some(addresses);
                    true
                }
                None => false,
            }
        })
        .await?;
        if written {
            tracing::info!(node = %name, "updated the node's addresses from its machine");
        }
    }
    Ok(Action::requeue(ctx.resync))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn machine() -> InstanceMetadata {
        InstanceMetadata {
            provider_id: "local://n1".into(),
            instance_type: Some("local".into()),
            zone: Some("z1".into()),
            region: Some("r1".into()),
            addresses: Vec::new(),
        }
    }

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_new_node_is_initialized_in_full() {
        let n = node(json!({
            "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1", ZONE_LABEL: "stale"}},
            "spec": {"taints": [
                {"key": UNINITIALIZED_TAINT, "value": "true", "effect": "NoSchedule"},
                {"key": "dedicated", "value": "db", "effect": "NoSchedule"},
            ]},
        }));
        let c = changes(&n, &machine());
        assert_eq!(c.provider_id.as_deref(), Some("local://n1"));
        assert_eq!(c.labels[ZONE_LABEL], "z1", "initialization overrides");
        assert_eq!(c.labels[REGION_LABEL], "r1");
        assert_eq!(c.labels[INSTANCE_TYPE_LABEL], "local");
        assert!(c.remove_taint);
        assert_eq!(c.addresses, None, "no addresses from the provider: the kubelet's stay");

        let mut done = n.clone();
        c.apply_to_object(&mut done);
        let taints: Vec<String> = done
            .spec
            .as_ref()
            .unwrap()
            .taints
            .iter()
            .flatten()
            .map(|t| t.key.clone())
            .collect();
        assert_eq!(taints, ["dedicated"], "only the cloud's taint goes");
        assert_eq!(done.labels()["kubernetes.io/hostname"], "n1");
        assert!(changes(&done, &machine()).is_empty(), "converges");
    }

    #[test]
    fn an_initialized_node_keeps_its_provider_id_and_chosen_labels() {
        let n = node(json!({
            "metadata": {"name": "n1", "labels": {ZONE_LABEL: "picked-by-admin", REGION_LABEL: "r1"}},
            "spec": {"providerID": "local://n1"},
        }));
        let c = changes(&n, &machine());
        assert_eq!(c.provider_id, None);
        assert_eq!(
            c.labels,
            BTreeMap::from([(INSTANCE_TYPE_LABEL.to_string(), "local".to_string())]),
            "only the missing label is added back"
        );
        assert!(!c.remove_taint);

        // Not yet initialized (no provider ID) but untainted: the chosen labels stay as well.
        let mut fresh = n.clone();
        fresh.spec = None;
        let c = changes(&fresh, &machine());
        assert_eq!(c.provider_id.as_deref(), Some("local://n1"));
        assert!(!c.labels.contains_key(ZONE_LABEL), "{c:?}");
    }

    #[test]
    fn provider_addresses_replace_the_reported_ones() {
        let n = node(json!({
            "metadata": {"name": "n1", "labels": {ZONE_LABEL: "z1", REGION_LABEL: "r1", INSTANCE_TYPE_LABEL: "local"}},
            "spec": {"providerID": "local://n1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.1"}]},
        }));
        let mut m = machine();
        m.addresses = vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: "192.0.2.1".into(),
            },
            NodeAddress {
                type_: "ExternalIP".into(),
                address: "203.0.113.1".into(),
            },
        ];
        let c = changes(&n, &m);
        assert_eq!(c.addresses.as_ref().map(Vec::len), Some(2));
        assert!(!c.touches_object());
        m.addresses.truncate(1);
        assert!(changes(&n, &m).is_empty(), "the same addresses");
    }

    #[test]
    fn unknown_values_are_not_written() {
        let n = node(json!({"metadata": {"name": "n1"}}));
        let c = changes(&n, &InstanceMetadata::default());
        assert!(c.is_empty());
    }
}
