//! Namespaces: the name label, the `kubernetes` finalizer and the Active phase.

use serde_json::{Value, json};

use super::table::{AGE, Column, NAME, age_cell, col, name_cell, s};
use super::{NameRule, Strategy};

/// The namespace strategy.
pub struct NamespaceStrategy;

/// The finalizer by which the namespace controller empties a namespace before it goes.
const FINALIZER: &str = "kubernetes";

/// The label upstream puts on every namespace so selectors can match namespaces by name.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

impl Strategy for NamespaceStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn default(&self, obj: &mut Value) {
        let name = s(obj, "/metadata/name").to_string();
        if name.is_empty() {
            return;
        }
        if !obj["metadata"].get("labels").is_some_and(Value::is_object) {
            obj["metadata"]["labels"] = json!({});
        }
        obj["metadata"]["labels"][NAME_LABEL] = json!(name);
    }

    fn prepare_create(&self, obj: &mut Value) {
        // The namespace controller's finalizer is required, after any the client asked for.
        let mut finalizers = obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == FINALIZER) {
            finalizers.push(json!(FINALIZER));
        }
        obj["spec"] = json!({"finalizers": finalizers});
        obj["status"] = json!({"phase": "Active"});
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, col("Status"), AGE]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![name_cell(obj), json!(s(obj, "/status/phase")), age_cell(obj)]
    }

    fn field_labels(&self) -> &'static [&'static str] {
        &["status.phase"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_adds_the_controller_finalizer_after_the_clients_own() {
        let created = |spec: Value| {
            let mut ns = json!({"metadata": {"name": "a"}, "spec": spec, "status": {"phase": "Terminating"}});
            NamespaceStrategy.prepare_create(&mut ns);
            (ns["spec"]["finalizers"].clone(), ns["status"]["phase"].clone())
        };
        assert_eq!(created(json!({})), (json!(["kubernetes"]), json!("Active")));
        assert_eq!(
            created(json!({"finalizers": ["example.com/hold"]})).0,
            json!(["example.com/hold", "kubernetes"])
        );
        assert_eq!(created(json!({"finalizers": ["kubernetes"]})).0, json!(["kubernetes"]));
    }
}
