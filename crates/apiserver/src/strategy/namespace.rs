//! Namespaces: the name label, the `kubernetes` finalizer and the Active phase.

use serde_json::{Value, json};

use super::table::{AGE, Column, NAME, age_cell, col, name_cell, s};
use super::{NameRule, Strategy};

/// The namespace strategy.
pub struct NamespaceStrategy;

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
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
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
