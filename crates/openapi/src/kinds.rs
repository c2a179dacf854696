//! The built-in kinds whose schemas come from k8s-openapi, keyed by group, version and kind.

use k8s_openapi::schemars::{JsonSchema, SchemaGenerator};
use k8s_openapi::{Resource, api, apiextensions_apiserver, apimachinery, kube_aggregator};

/// One built-in kind: its GVK and how to add its schema (and everything it references) to a generator.
pub(crate) struct Builtin {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Adds the kind's definitions to the generator and returns the kind's definition name.
    pub add: fn(&mut SchemaGenerator) -> String,
}

/// Looks up a built-in kind; `None` means the kind is not compiled in (a custom resource).
pub(crate) fn builtin(group: &str, version: &str, kind: &str) -> Option<&'static Builtin> {
    BUILTINS
        .iter()
        .find(|b| b.group == group && b.version == version && b.kind == kind)
}

fn add<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

const fn entry<T: Resource + JsonSchema>() -> Builtin {
    Builtin {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        add: add::<T>,
    }
}

/// Every GA kind of Kubernetes 1.33 that k8s-openapi models; alpha and beta versions are left out
/// because kate does not serve them.
pub(crate) static BUILTINS: &[Builtin] = &[
    entry::<api::admissionregistration::v1::MutatingWebhookConfiguration>(),
    entry::<api::admissionregistration::v1::ValidatingAdmissionPolicy>(),
    entry::<api::admissionregistration::v1::ValidatingAdmissionPolicyBinding>(),
    entry::<api::admissionregistration::v1::ValidatingWebhookConfiguration>(),
    entry::<api::apps::v1::ControllerRevision>(),
    entry::<api::apps::v1::DaemonSet>(),
    entry::<api::apps::v1::Deployment>(),
    entry::<api::apps::v1::ReplicaSet>(),
    entry::<api::apps::v1::StatefulSet>(),
    entry::<api::authentication::v1::SelfSubjectReview>(),
    entry::<api::authentication::v1::TokenRequest>(),
    entry::<api::authentication::v1::TokenReview>(),
    entry::<api::authorization::v1::LocalSubjectAccessReview>(),
    entry::<api::authorization::v1::SelfSubjectAccessReview>(),
    entry::<api::authorization::v1::SelfSubjectRulesReview>(),
    entry::<api::authorization::v1::SubjectAccessReview>(),
    entry::<api::autoscaling::v1::HorizontalPodAutoscaler>(),
    entry::<api::autoscaling::v1::Scale>(),
    entry::<api::autoscaling::v2::HorizontalPodAutoscaler>(),
    entry::<api::batch::v1::CronJob>(),
    entry::<api::batch::v1::Job>(),
    entry::<api::certificates::v1::CertificateSigningRequest>(),
    entry::<api::coordination::v1::Lease>(),
    entry::<api::core::v1::Binding>(),
    entry::<api::core::v1::ComponentStatus>(),
    entry::<api::core::v1::ConfigMap>(),
    entry::<api::core::v1::Endpoints>(),
    entry::<api::core::v1::Event>(),
    entry::<api::core::v1::LimitRange>(),
    entry::<api::core::v1::Namespace>(),
    entry::<api::core::v1::Node>(),
    entry::<api::core::v1::PersistentVolume>(),
    entry::<api::core::v1::PersistentVolumeClaim>(),
    entry::<api::core::v1::Pod>(),
    entry::<api::core::v1::PodTemplate>(),
    entry::<api::core::v1::ReplicationController>(),
    entry::<api::core::v1::ResourceQuota>(),
    entry::<api::core::v1::Secret>(),
    entry::<api::core::v1::Service>(),
    entry::<api::core::v1::ServiceAccount>(),
    entry::<api::discovery::v1::EndpointSlice>(),
    entry::<api::events::v1::Event>(),
    entry::<api::flowcontrol::v1::FlowSchema>(),
    entry::<api::flowcontrol::v1::PriorityLevelConfiguration>(),
    entry::<api::networking::v1::Ingress>(),
    entry::<api::networking::v1::IngressClass>(),
    entry::<api::networking::v1::IPAddress>(),
    entry::<api::networking::v1::NetworkPolicy>(),
    entry::<api::networking::v1::ServiceCIDR>(),
    entry::<api::node::v1::RuntimeClass>(),
    entry::<api::policy::v1::Eviction>(),
    entry::<api::policy::v1::PodDisruptionBudget>(),
    entry::<api::rbac::v1::ClusterRole>(),
    entry::<api::rbac::v1::ClusterRoleBinding>(),
    entry::<api::rbac::v1::Role>(),
    entry::<api::rbac::v1::RoleBinding>(),
    entry::<api::scheduling::v1::PriorityClass>(),
    entry::<api::storage::v1::CSIDriver>(),
    entry::<api::storage::v1::CSINode>(),
    entry::<api::storage::v1::CSIStorageCapacity>(),
    entry::<api::storage::v1::StorageClass>(),
    entry::<api::storage::v1::VolumeAttachment>(),
    entry::<apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(),
    entry::<apimachinery::pkg::apis::meta::v1::Status>(),
    entry::<kube_aggregator::pkg::apis::apiregistration::v1::APIService>(),
];
