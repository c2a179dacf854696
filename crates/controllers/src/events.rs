//! Records core/v1 Events about objects, as `kubectl describe` and `kubectl get events` show
//! them; repeats of the same event bump its count instead of piling up new objects.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

/// Whether an event reports normal operation or a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Normal`.
    Normal,
    /// `Warning`.
    Warning,
}

/// (namespace, uid, reason, message) of an event, and its (name, count) once recorded.
type Seen = HashMap<(String, String, String, String), (String, i32)>;

/// Writes events for one component.
pub struct Recorder {
    client: kube::Client,
    component: String,
    /// What was recorded, to aggregate repeats.
    seen: Mutex<Seen>,
}

impl Recorder {
    /// A recorder whose events name `component` as their source.
    pub fn new(client: kube::Client, component: &str) -> Recorder {
        Recorder {
            client,
            component: component.into(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records an event about `object`; failures are logged, never returned, since an event
    /// must not stop a controller from doing its work.
    pub async fn record(&self, object: &ObjectReference, kind: Kind, reason: &str, message: &str) {
        if let Err(e) = self.try_record(object, kind, reason, message).await {
            tracing::debug!(reason, error = %e, "could not record event");
        }
    }

    async fn try_record(
        &self,
        object: &ObjectReference,
        kind: Kind,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let namespace = object.namespace.clone().unwrap_or_else(|| "default".into());
        let key = (
            namespace.clone(),
            object.uid.clone().unwrap_or_default(),
            reason.to_string(),
            message.to_string(),
        );
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = Time(jiff::Timestamp::now());
        let repeat = self.lock().get(&key).cloned();
        if let Some((name, count)) = repeat {
            let patch = json!({"count": count + 1, "lastTimestamp": now});
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => {
                    self.lock().insert(key, (name, count + 1));
                    return Ok(());
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let name = format!(
            "{}.{:x}",
            object.name.as_deref().unwrap_or("object"),
            uuid::Uuid::new_v4().as_u128() as u64
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..Default::default()
            },
            involved_object: object.clone(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(match kind {
                Kind::Normal => "Normal".into(),
                Kind::Warning => "Warning".into(),
            }),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        let mut seen = self.lock();
        if seen.len() > 4096 {
            seen.clear();
        }
        seen.insert(key, (name, 1));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}
