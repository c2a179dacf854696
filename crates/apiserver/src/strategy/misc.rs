//! Kinds of the smaller groups: leases, endpoint slices, priority classes, disruption budgets.

use serde_json::{Value, json};

use super::Strategy;
use super::table::{AGE, Column, NAME, age_cell, arr, col, i, name_cell, or_none, s};
use crate::error::Cause;

/// Leases.
pub struct LeaseStrategy;

impl Strategy for LeaseStrategy {
    fn columns(&self) -> Vec<Column> {
        vec![NAME, col("Holder"), AGE]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![name_cell(obj), json!(s(obj, "/spec/holderIdentity")), age_cell(obj)]
    }
}

/// Endpoint slices.
pub struct EndpointSliceStrategy;

impl Strategy for EndpointSliceStrategy {
    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let ty = obj.get("addressType");
        match ty.and_then(Value::as_str) {
            Some("IPv4" | "IPv6" | "FQDN") => Vec::new(),
            None => vec![Cause::required("addressType")],
            Some(_) => vec![Cause::not_supported(
                "addressType",
                ty.unwrap_or(&Value::Null),
                &["FQDN", "IPv4", "IPv6"],
            )],
        }
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, col("AddressType"), col("Ports"), col("Endpoints"), AGE]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let ports: Vec<String> = arr(obj, "/ports").iter().map(|p| i(p, "/port").to_string()).collect();
        let addrs: Vec<&str> = arr(obj, "/endpoints")
            .iter()
            .flat_map(|e| arr(e, "/addresses"))
            .filter_map(Value::as_str)
            .collect();
        let shown = if addrs.len() > 3 {
            format!("{} + {} more...", addrs[..3].join(","), addrs.len() - 3)
        } else {
            addrs.join(",")
        };
        vec![
            name_cell(obj),
            json!(s(obj, "/addressType")),
            or_none(ports.join(",")),
            or_none(shown),
            age_cell(obj),
        ]
    }
}

/// Priority classes.
pub struct PriorityClassStrategy;

impl Strategy for PriorityClassStrategy {
    fn default(&self, obj: &mut Value) {
        if obj.get("preemptionPolicy").is_none() {
            obj["preemptionPolicy"] = json!("PreemptLowerPriority");
        }
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        if !obj.get("value").is_some_and(Value::is_i64) {
            causes.push(Cause::required("value"));
        }
        if old.is_some_and(|o| o.get("value") != obj.get("value")) {
            causes.push(Cause::immutable("value"));
        }
        causes
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, col("Value"), col("Global-Default"), AGE, col("PreemptionPolicy")]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let global = obj.get("globalDefault").and_then(Value::as_bool).unwrap_or(false);
        vec![
            name_cell(obj),
            json!(i(obj, "/value")),
            json!(global),
            age_cell(obj),
            json!(s(obj, "/preemptionPolicy")),
        ]
    }
}

/// Pod disruption budgets.
pub struct PodDisruptionBudgetStrategy;

impl Strategy for PodDisruptionBudgetStrategy {
    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        if spec.get("minAvailable").is_some() && spec.get("maxUnavailable").is_some() {
            return vec![Cause::invalid(
                "spec",
                spec,
                "minAvailable and maxUnavailable cannot be both set",
            )];
        }
        Vec::new()
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Min Available"),
            col("Max Unavailable"),
            col("Allowed Disruptions"),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let show = |p: &str| match obj.pointer(p) {
            Some(Value::String(v)) => json!(v),
            Some(Value::Number(n)) => json!(n.to_string()),
            _ => json!("N/A"),
        };
        vec![
            name_cell(obj),
            show("/spec/minAvailable"),
            show("/spec/maxUnavailable"),
            json!(i(obj, "/status/disruptionsAllowed")),
            age_cell(obj),
        ]
    }
}
