//! events.k8s.io/v1 Events are stored as core/v1 Events (as upstream does), so an event written
//! through either API shows in both `kubectl get events` and `kubectl describe`.

use serde_json::{Map, Value, json};

use crate::catalog::View;

/// The events.k8s.io/v1 view of core/v1 Events.
pub const VIEW: View = View {
    storage_prefix: "/registry/events/",
    read: to_events_v1,
    write: to_core,
};

/// (events.k8s.io/v1 field, core/v1 field) pairs that carry the same value.
const FIELDS: [(&str, &str); 13] = [
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("reportingController", "reportingComponent"),
    ("reportingInstance", "reportingInstance"),
    ("action", "action"),
    ("reason", "reason"),
    ("regarding", "involvedObject"),
    ("related", "related"),
    ("note", "message"),
    ("type", "type"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
];

fn convert(obj: &Value, api_version: &str, pairs: impl Iterator<Item = (&'static str, &'static str)>) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!("Event"));
    out.insert("apiVersion".into(), json!(api_version));
    if let Some(meta) = obj.get("metadata") {
        out.insert("metadata".into(), meta.clone());
    }
    for (from, to) in pairs {
        if let Some(v) = obj.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// core/v1 → events.k8s.io/v1.
fn to_events_v1(core: &Value) -> Value {
    let pairs = FIELDS
        .iter()
        .map(|(v1, core)| (*core, *v1))
        .chain([("count", "deprecatedCount")]);
    convert(core, "events.k8s.io/v1", pairs)
}

/// events.k8s.io/v1 → core/v1.
fn to_core(v1: &Value) -> Value {
    let pairs = FIELDS.iter().copied().chain([("deprecatedCount", "count")]);
    convert(v1, "v1", pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v1 = json!({"kind": "Event", "apiVersion": "events.k8s.io/v1", "metadata": {"name": "e", "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "op", "reportingInstance": "op-1", "action": "Reconcile",
            "reason": "Done", "regarding": {"kind": "Pod", "name": "p"}, "note": "all good", "type": "Normal", "deprecatedCount": 2});
        let core = to_core(&v1);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "all good");
        assert_eq!(core["reportingComponent"], "op");
        assert_eq!(core["count"], 2);
        assert_eq!(to_events_v1(&core), v1);
    }
}
