//! EndpointSlices of a Service, as upstream's endpointslice controller writes them; run by the
//! loop in [`crate::endpoints`].
//!
//! Per IP family of the Service, the selected pods are grouped by the ports they resolve to (a
//! named target port may differ from pod to pod) and each group is cut into slices of at most
//! [`MAX_ENDPOINTS`]. A Service with no endpoints keeps one empty placeholder slice, as upstream.
//! Existing slices are reused where their address type and ports fit, so that an unchanged
//! Service causes no writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};

use crate::endpoints::{self, HEADLESS};
use crate::{Context, Error};

/// The label naming a slice's Service.
pub(crate) const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming the controller that manages a slice.
pub(crate) const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY`], the same as upstream's so tools recognise it.
pub(crate) const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Upstream's default `--max-endpoints-per-slice`.
const MAX_ENDPOINTS: usize = 100;

/// Brings the slices of a Service in line with the pods it selects.
pub(crate) async fn sync(ctx: &Context, svc: &Service, pods: &[Arc<Pod>]) -> Result<(), Error> {
    let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = api.list(&ListParams::default().labels(&selector(&name))).await?.items;
    let changes = plan(svc, existing, desired(svc, pods));
    if changes.is_empty() {
        return Ok(());
    }
    for slice in &changes.create {
        match api.create(&PostParams::default(), slice).await {
            Ok(_) => {}
            // Creation in a terminating namespace is refused; the namespace takes the Service too.
            Err(kube::Error::Api(e)) if e.code == 403 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    for slice in &changes.update {
        api.replace(&slice.name_any(), &PostParams::default(), slice).await?;
    }
    for stale in &changes.delete {
        match api.delete(stale, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(
        namespace = %ns,
        service = %name,
        created = changes.create.len(),
        updated = changes.update.len(),
        deleted = changes.delete.len(),
        "updated endpoint slices"
    );
    Ok(())
}

/// Deletes the slices this controller made for a Service that is gone.
pub(crate) async fn remove(ctx: &Context, ns: &str, name: &str) -> Result<(), Error> {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    for slice in api.list(&ListParams::default().labels(&selector(name))).await?.items {
        match api.delete(&slice.name_any(), &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(namespace = %ns, service = %name, slice = %slice.name_any(), "deleted the endpoint slice of a deleted service")
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The label selector of the slices this controller manages for a Service.
fn selector(service: &str) -> String {
    format!("{SERVICE_NAME}={service},{MANAGED_BY}={CONTROLLER_NAME}")
}

/// The content of one slice.
#[derive(Debug, Clone, PartialEq)]
struct Desired {
    address_type: String,
    ports: Option<Vec<EndpointPort>>,
    endpoints: Vec<Endpoint>,
}

/// The slices a Service should have.
fn desired(svc: &Service, pods: &[Arc<Pod>]) -> Vec<Desired> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let service_ports = spec.ports.unwrap_or_default();
    let mut slices = Vec::new();
    for family in endpoints::families(svc) {
        let mut groups: BTreeMap<Vec<PortKey>, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
        for pod in pods {
            // Terminating pods stay, flagged, so that consumers can drain them.
            if !endpoints::publishable(pod, true) {
                continue;
            }
            let Some(ip) = endpoints::pod_ip(pod, &family) else {
                continue;
            };
            let mut ports: Vec<EndpointPort> = service_ports
                .iter()
                .filter_map(|sp| {
                    endpoints::resolve_port(pod, sp).map(|n| EndpointPort {
                        name: Some(sp.name.clone().unwrap_or_default()),
                        port: Some(n),
                        protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                        app_protocol: sp.app_protocol.clone(),
                    })
                })
                .collect();
            ports.sort_by_key(port_key);
            let serving = endpoints::pod_ready(pod);
            let terminating = pod.metadata.deletion_timestamp.is_some();
            let endpoint = Endpoint {
                addresses: vec![ip],
                conditions: Some(EndpointConditions {
                    // As upstream: never ready while terminating, unless the Service asks for
                    // not-ready addresses too.
                    ready: Some(publish_not_ready || (serving && !terminating)),
                    serving: Some(serving),
                    terminating: Some(terminating),
                }),
                hostname: endpoints::hostname(pod, svc),
                node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                target_ref: Some(endpoints::pod_reference(pod)),
                ..Default::default()
            };
            let key = ports.iter().map(port_key).collect();
            groups
                .entry(key)
                .or_insert_with(|| (ports, Vec::new()))
                .1
                .push(endpoint);
        }
        if groups.is_empty() {
            slices.push(Desired {
                address_type: family.clone(),
                ports: None,
                endpoints: Vec::new(),
            });
        }
        for (ports, mut group) in groups.into_values() {
            group.sort_by(|a, b| {
                let key = |e: &Endpoint| (e.addresses.clone(), e.target_ref.as_ref().and_then(|r| r.name.clone()));
                key(a).cmp(&key(b))
            });
            for chunk in group.chunks(MAX_ENDPOINTS) {
                slices.push(Desired {
                    address_type: family.clone(),
                    ports: Some(ports.clone()).filter(|p| !p.is_empty()),
                    endpoints: chunk.to_vec(),
                });
            }
        }
    }
    slices
}

/// A port's identity, for grouping and matching: name, number, protocol.
type PortKey = (String, i32, String);

fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.name.clone().unwrap_or_default(),
        p.port.unwrap_or_default(),
        p.protocol.clone().unwrap_or_default(),
    )
}

fn ports_key(ports: &Option<Vec<EndpointPort>>) -> Vec<PortKey> {
    let mut key: Vec<_> = ports.iter().flatten().map(port_key).collect();
    key.sort();
    key
}

/// The writes that turn the existing slices into the desired ones.
#[derive(Debug, Default)]
struct Changes {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<String>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Matches desired slices with existing ones of the same address type and ports (owned by this
/// very Service, not an earlier one of the same name); what is left over is created or deleted.
fn plan(svc: &Service, mut existing: Vec<EndpointSlice>, desired: Vec<Desired>) -> Changes {
    let labels = labels(svc);
    let owner = owner(svc);
    let mut changes = Changes::default();
    existing.sort_by_key(|s| s.name_any());
    existing.retain(|s| {
        let owned = s.owner_references().iter().any(|o| o.uid == owner.uid);
        if !owned {
            changes.delete.push(s.name_any());
        }
        owned
    });
    for want in desired {
        let fits = existing
            .iter()
            .position(|s| s.address_type == want.address_type && ports_key(&s.ports) == ports_key(&want.ports));
        let mut slice = match fits {
            Some(i) => existing.remove(i),
            None => EndpointSlice {
                metadata: ObjectMeta {
                    generate_name: Some(format!("{}-", svc.name_any())),
                    namespace: svc.namespace(),
                    ..Default::default()
                },
                ..Default::default()
            },
        };
        let up_to_date = slice.metadata.labels.as_ref() == Some(&labels)
            && slice.metadata.owner_references.as_deref() == Some(std::slice::from_ref(&owner))
            && slice.ports == want.ports
            && slice.endpoints == want.endpoints;
        if up_to_date {
            continue;
        }
        slice.metadata.labels = Some(labels.clone());
        slice.metadata.owner_references = Some(vec![owner.clone()]);
        slice.address_type = want.address_type;
        slice.ports = want.ports;
        slice.endpoints = want.endpoints;
        if fits.is_some() {
            changes.update.push(slice);
        } else {
            changes.create.push(slice);
        }
    }
    changes.delete.extend(existing.iter().map(|s| s.name_any()));
    changes
}

/// A slice's labels: the Service's own (minus those the controller sets) plus the service
/// name, the manager and, for a headless Service, the headless marker.
fn labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    for reserved in [SERVICE_NAME, MANAGED_BY, HEADLESS] {
        labels.remove(reserved);
    }
    if endpoints::headless(svc) {
        labels.insert(HEADLESS.into(), String::new());
    }
    labels.insert(SERVICE_NAME.into(), svc.name_any());
    labels.insert(MANAGED_BY.into(), CONTROLLER_NAME.into());
    labels
}

/// The controller reference from a slice to its Service.
fn owner(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.name_any(),
        uid: svc.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::tests::{pod, port, service};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    /// The slices `plan` would write, as if the API server had stored them.
    fn stored(svc: &Service, desired: Vec<Desired>) -> Vec<EndpointSlice> {
        plan(svc, Vec::new(), desired)
            .create
            .into_iter()
            .enumerate()
            .map(|(n, mut s)| {
                s.metadata.name = Some(format!("web-{n}"));
                s
            })
            .collect()
    }

    #[test]
    fn endpoints_carry_conditions_ports_and_references() {
        let svc = service(vec![port("web", 80, IntOrString::String("http".into()))]);
        let mut terminating = (*pod("c", Some("10.0.0.3"), true)).clone();
        terminating.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        let pods = vec![
            pod("a", Some("10.0.0.1"), true),
            pod("b", Some("10.0.0.2"), false),
            Arc::new(terminating),
            pod("d", None, true),
        ];
        let slices = desired(&svc, &pods);
        assert_eq!(slices.len(), 1);
        let slice = &slices[0];
        assert_eq!(slice.address_type, "IPv4");
        let ports = slice.ports.as_ref().expect("ports");
        assert_eq!((ports[0].name.as_deref(), ports[0].port), (Some("web"), Some(8080)));
        let conditions: Vec<(String, bool, bool, bool)> = slice
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                (
                    e.addresses[0].clone(),
                    c.ready.unwrap_or_default(),
                    c.serving.unwrap_or_default(),
                    c.terminating.unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            conditions,
            [
                ("10.0.0.1".to_string(), true, true, false),
                ("10.0.0.2".to_string(), false, false, false),
                ("10.0.0.3".to_string(), false, true, true),
            ]
        );
        let first = &slice.endpoints[0];
        assert_eq!(first.node_name.as_deref(), Some("n1"));
        assert_eq!(first.target_ref.as_ref().and_then(|r| r.uid.as_deref()), Some("uid-a"));
    }

    #[test]
    fn an_empty_service_keeps_a_placeholder() {
        let svc = service(vec![port("", 80, IntOrString::Int(80))]);
        let slices = desired(&svc, &[]);
        assert_eq!(
            slices,
            [Desired {
                address_type: "IPv4".into(),
                ports: None,
                endpoints: Vec::new()
            }]
        );
    }

    #[test]
    fn big_groups_are_cut_into_slices() {
        let svc = service(vec![port("", 80, IntOrString::Int(80))]);
        let pods: Vec<Arc<Pod>> = (0..250)
            .map(|n| pod(&format!("p{n}"), Some(&format!("10.0.{}.{}", n / 200, n % 200)), true))
            .collect();
        let sizes: Vec<usize> = desired(&svc, &pods).iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
    }

    #[test]
    fn plans_reuse_update_and_delete() {
        let svc = service(vec![port("", 80, IntOrString::Int(80))]);
        let one = desired(&svc, &[pod("a", Some("10.0.0.1"), true)]);
        let created = plan(&svc, Vec::new(), one.clone());
        assert_eq!(created.create.len(), 1);
        let slice = &created.create[0];
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(slice.labels().get(SERVICE_NAME).map(String::as_str), Some("web"));
        assert_eq!(
            slice.labels().get(MANAGED_BY).map(String::as_str),
            Some(CONTROLLER_NAME)
        );
        let refs = slice.owner_references();
        assert_eq!((refs[0].kind.as_str(), refs[0].controller), ("Service", Some(true)));

        let existing = stored(&svc, one.clone());
        assert!(
            plan(&svc, existing.clone(), one).is_empty(),
            "nothing changed, nothing written"
        );

        let two = desired(
            &svc,
            &[pod("a", Some("10.0.0.1"), true), pod("b", Some("10.0.0.2"), false)],
        );
        let changes = plan(&svc, existing.clone(), two);
        assert_eq!((changes.create.len(), changes.update.len()), (0, 1));
        assert_eq!(changes.update[0].name_any(), "web-0");
        assert_eq!(changes.update[0].endpoints.len(), 2);

        let mut other = service(vec![port("", 80, IntOrString::Int(80))]);
        other.metadata.uid = Some("new-uid".into());
        let changes = plan(&other, existing, desired(&other, &[]));
        assert_eq!(
            changes.delete,
            ["web-0"],
            "a slice of an earlier service of that name goes"
        );
        assert_eq!(changes.create.len(), 1);
    }

    #[test]
    fn headless_services_are_labelled() {
        let mut svc = service(vec![]);
        svc.spec.as_mut().expect("spec").cluster_ip = Some("None".into());
        svc.metadata.labels = Some([(SERVICE_NAME.to_string(), "spoof".to_string())].into());
        let labels = labels(&svc);
        assert_eq!(labels.get(HEADLESS).map(String::as_str), Some(""));
        assert_eq!(labels.get(SERVICE_NAME).map(String::as_str), Some("web"));
    }
}
