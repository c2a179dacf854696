//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several servers only one
//! runs the controllers at a time.
//!
//! The holder renews the lease every [`RETRY`]; a lease not renewed for [`LEASE_DURATION`] may be
//! taken over. A holder that cannot renew for [`RENEW_DEADLINE`] stops its controllers before
//! anyone else can take over, so two holders never overlap.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;

use crate::Error;

/// How long a lease is valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long the holder keeps trying to renew before giving up leadership.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often the holder renews, and a candidate retries.
pub const RETRY: Duration = Duration::from_secs(2);

/// Runs `start()` whenever this process holds the lease `namespace/name`, stopping it when the
/// lease is lost; loops forever.
pub async fn run_while_leader<F, Fut>(
    client: kube::Client,
    namespace: &str,
    name: &str,
    identity: &str,
    start: F,
) -> Result<(), Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let leases: Api<Lease> = Api::namespaced(client, namespace);
    loop {
        match try_acquire(&leases, name, identity).await {
            Ok(true) => {
                tracing::info!(lease = name, identity, "became leader");
                let work = tokio::spawn(start());
                hold(&leases, name, identity).await;
                work.abort();
                tracing::warn!(lease = name, identity, "lost leadership; controllers stopped");
            }
            Ok(false) => {}
            Err(e) => tracing::debug!(lease = name, error = %e, "lease not acquired"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Renews the lease until a renewal deadline passes without success.
async fn hold(leases: &Api<Lease>, name: &str, identity: &str) {
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(RETRY).await;
        match try_acquire(leases, name, identity).await {
            Ok(true) => last_renewal = tokio::time::Instant::now(),
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(lease = name, error = %e, "lease renewal failed");
                if last_renewal.elapsed() > RENEW_DEADLINE {
                    return;
                }
            }
        }
    }
}

/// Takes or renews the lease if it is free, expired or already ours; true when we hold it.
async fn try_acquire(leases: &Api<Lease>, name: &str, identity: &str) -> Result<bool, Error> {
    let now = MicroTime(jiff::Timestamp::now());
    let current = leases.get_opt(name).await?;
    let Some(mut lease) = current else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity.into()),
                lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let ours = spec.holder_identity.as_deref() == Some(identity);
    if !ours {
        let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0));
        let expired = match &spec.renew_time {
            Some(renewed) => now.0.as_second() - renewed.0.as_second() > duration,
            None => true,
        };
        if !expired {
            return Ok(false);
        }
        spec.holder_identity = Some(identity.into());
        spec.acquire_time = Some(now.clone());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.lease_duration_seconds = Some(LEASE_DURATION.as_secs() as i32);
    spec.renew_time = Some(now);
    match leases.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}
