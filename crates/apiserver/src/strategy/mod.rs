//! Per-kind strategies: the small amount of behaviour that differs between kinds (defaults,
//! validation, create-time preparation, table columns); everything else is the generic registry.

mod apps;
mod batch;
mod core;
mod events;
mod misc;
mod namespace;
mod pod;
mod service;
pub mod table;
mod typed;
pub mod validation;

use serde_json::Value;

use crate::catalog::{ResourceDef, Subresource};
use crate::error::Cause;
pub use table::Column;
pub use validation::NameRule;

/// What differs between kinds. Every method has a neutral default, so a kind overrides only
/// what upstream's strategy for it does.
pub trait Strategy: Send + Sync {
    /// Checks that the object decodes as the kind's typed structure; the error explains the first
    /// field that does not fit (answered as 400 BadRequest, as upstream's decoder does).
    fn decode_check(&self, _obj: &Value) -> Result<(), String> {
        Ok(())
    }

    /// How object names are checked.
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// Fills in defaults; called on create and on every update, so it must be idempotent.
    fn default(&self, _obj: &mut Value) {}

    /// Adjusts a new object before it is stored (beyond the generic status reset).
    fn prepare_create(&self, _obj: &mut Value) {}

    /// Kind-specific validation; `old` is the stored object on updates.
    fn validate(&self, _obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        Vec::new()
    }

    /// Whether a create resets `.status` (when the kind has a status subresource).
    fn reset_status_on_create(&self) -> bool {
        true
    }

    /// Table columns, as `kubectl get` shows them.
    fn columns(&self) -> Vec<Column> {
        vec![table::NAME, table::AGE]
    }

    /// Table cells matching [`Strategy::columns`].
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![table::name_cell(obj), table::age_cell(obj)]
    }

    /// Field selector labels this kind supports beyond `metadata.name`/`metadata.namespace`.
    fn field_labels(&self) -> &'static [&'static str] {
        &[]
    }
}

/// A strategy with upstream's generic behaviour only.
pub struct Plain;

impl Strategy for Plain {}

/// Options for [`def`]: everything but the names.
#[derive(Clone, Copy)]
struct Opts {
    namespaced: bool,
    short: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [Subresource],
    generation: bool,
}

const NS: Opts = Opts {
    namespaced: true,
    short: &[],
    categories: &[],
    subresources: &[],
    generation: false,
};
const CLUSTER: Opts = Opts {
    namespaced: false,
    ..NS
};
const ALL: &[&str] = &["all"];
const STATUS: &[Subresource] = &[Subresource::Status];
const STATUS_SCALE: &[Subresource] = &[Subresource::Status, Subresource::Scale];
const STATUS_FINALIZE: &[Subresource] = &[Subresource::Status, Subresource::Finalize];
/// As upstream lists them (alphabetically).
const POD_SUBRESOURCES: &[Subresource] = &[
    Subresource::Attach,
    Subresource::Binding,
    Subresource::Exec,
    Subresource::Log,
    Subresource::PortForward,
    Subresource::Status,
];

#[allow(clippy::too_many_arguments)]
fn def(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    opts: Opts,
    strategy: Box<dyn Strategy>,
) -> ResourceDef {
    ResourceDef {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced: opts.namespaced,
        short_names: opts.short,
        categories: opts.categories,
        subresources: opts.subresources,
        generation: opts.generation,
        strategy,
        view: None,
    }
}

impl ResourceDef {
    fn stored_as(self, view: crate::catalog::View) -> ResourceDef {
        ResourceDef {
            view: Some(view),
            ..self
        }
    }
}

/// The built-in resources of Kubernetes v1.33 that kate serves, in discovery order.
pub fn builtin_resources() -> Vec<ResourceDef> {
    use typed::typed;
    let gen_status = |short, categories| Opts {
        short,
        categories,
        subresources: STATUS,
        generation: true,
        ..NS
    };
    vec![
        def(
            "",
            "v1",
            "Pod",
            "pods",
            "pod",
            Opts {
                short: &["po"],
                categories: ALL,
                subresources: POD_SUBRESOURCES,
                ..NS
            },
            typed::<k8s_openapi::api::core::v1::Pod>(Box::new(pod::PodStrategy)),
        ),
        def(
            "",
            "v1",
            "Service",
            "services",
            "service",
            Opts {
                short: &["svc"],
                categories: ALL,
                subresources: STATUS,
                ..NS
            },
            typed::<k8s_openapi::api::core::v1::Service>(Box::new(service::ServiceStrategy)),
        ),
        def(
            "",
            "v1",
            "Namespace",
            "namespaces",
            "namespace",
            Opts {
                short: &["ns"],
                subresources: STATUS_FINALIZE,
                ..CLUSTER
            },
            typed::<k8s_openapi::api::core::v1::Namespace>(Box::new(namespace::NamespaceStrategy)),
        ),
        def(
            "",
            "v1",
            "Node",
            "nodes",
            "node",
            Opts {
                short: &["no"],
                subresources: STATUS,
                ..CLUSTER
            },
            typed::<k8s_openapi::api::core::v1::Node>(Box::new(core::NodeStrategy)),
        ),
        def(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            "configmap",
            Opts { short: &["cm"], ..NS },
            typed::<k8s_openapi::api::core::v1::ConfigMap>(Box::new(core::ConfigMapStrategy)),
        ),
        def(
            "",
            "v1",
            "Secret",
            "secrets",
            "secret",
            NS,
            typed::<k8s_openapi::api::core::v1::Secret>(Box::new(core::SecretStrategy)),
        ),
        def(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            "serviceaccount",
            Opts { short: &["sa"], ..NS },
            typed::<k8s_openapi::api::core::v1::ServiceAccount>(Box::new(core::ServiceAccountStrategy)),
        ),
        def(
            "",
            "v1",
            "Endpoints",
            "endpoints",
            "endpoints",
            Opts { short: &["ep"], ..NS },
            typed::<k8s_openapi::api::core::v1::Endpoints>(Box::new(core::EndpointsStrategy)),
        ),
        def(
            "",
            "v1",
            "Event",
            "events",
            "event",
            Opts { short: &["ev"], ..NS },
            typed::<k8s_openapi::api::core::v1::Event>(Box::new(core::EventStrategy)),
        ),
        def(
            "",
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            "persistentvolume",
            Opts {
                short: &["pv"],
                subresources: STATUS,
                ..CLUSTER
            },
            typed::<k8s_openapi::api::core::v1::PersistentVolume>(Box::new(core::PersistentVolumeStrategy)),
        ),
        def(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            Opts {
                short: &["pvc"],
                subresources: STATUS,
                ..NS
            },
            typed::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(Box::new(core::PersistentVolumeClaimStrategy)),
        ),
        def(
            "",
            "v1",
            "LimitRange",
            "limitranges",
            "limitrange",
            Opts {
                short: &["limits"],
                ..NS
            },
            typed::<k8s_openapi::api::core::v1::LimitRange>(Box::new(Plain)),
        ),
        def(
            "",
            "v1",
            "ResourceQuota",
            "resourcequotas",
            "resourcequota",
            Opts {
                short: &["quota"],
                subresources: STATUS,
                ..NS
            },
            typed::<k8s_openapi::api::core::v1::ResourceQuota>(Box::new(Plain)),
        ),
        def(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            "deployment",
            Opts {
                subresources: STATUS_SCALE,
                ..gen_status(&["deploy"], ALL)
            },
            typed::<k8s_openapi::api::apps::v1::Deployment>(Box::new(apps::DeploymentStrategy)),
        ),
        def(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            "replicaset",
            Opts {
                subresources: STATUS_SCALE,
                ..gen_status(&["rs"], ALL)
            },
            typed::<k8s_openapi::api::apps::v1::ReplicaSet>(Box::new(apps::ReplicaSetStrategy)),
        ),
        def(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            "statefulset",
            Opts {
                subresources: STATUS_SCALE,
                ..gen_status(&["sts"], ALL)
            },
            typed::<k8s_openapi::api::apps::v1::StatefulSet>(Box::new(apps::StatefulSetStrategy)),
        ),
        def(
            "apps",
            "v1",
            "DaemonSet",
            "daemonsets",
            "daemonset",
            gen_status(&["ds"], ALL),
            typed::<k8s_openapi::api::apps::v1::DaemonSet>(Box::new(apps::DaemonSetStrategy)),
        ),
        def(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            "controllerrevision",
            NS,
            typed::<k8s_openapi::api::apps::v1::ControllerRevision>(Box::new(apps::ControllerRevisionStrategy)),
        ),
        def(
            "batch",
            "v1",
            "Job",
            "jobs",
            "job",
            gen_status(&[], ALL),
            typed::<k8s_openapi::api::batch::v1::Job>(Box::new(batch::JobStrategy)),
        ),
        def(
            "batch",
            "v1",
            "CronJob",
            "cronjobs",
            "cronjob",
            gen_status(&["cj"], ALL),
            typed::<k8s_openapi::api::batch::v1::CronJob>(Box::new(batch::CronJobStrategy)),
        ),
        def(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            "lease",
            NS,
            typed::<k8s_openapi::api::coordination::v1::Lease>(Box::new(misc::LeaseStrategy)),
        ),
        def(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            "endpointslice",
            NS,
            typed::<k8s_openapi::api::discovery::v1::EndpointSlice>(Box::new(misc::EndpointSliceStrategy)),
        ),
        def(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            "event",
            Opts { short: &["ev"], ..NS },
            typed::<k8s_openapi::api::events::v1::Event>(Box::new(Plain)),
        )
        .stored_as(events::VIEW),
        def(
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            "priorityclasses",
            "priorityclass",
            Opts {
                short: &["pc"],
                ..CLUSTER
            },
            typed::<k8s_openapi::api::scheduling::v1::PriorityClass>(Box::new(misc::PriorityClassStrategy)),
        ),
        def(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            "poddisruptionbudget",
            Opts {
                short: &["pdb"],
                subresources: STATUS,
                generation: true,
                ..NS
            },
            typed::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(Box::new(misc::PodDisruptionBudgetStrategy)),
        ),
    ]
}
