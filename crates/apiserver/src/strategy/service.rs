//! Services: defaults for ports and policies, immutable cluster IPs, and the service row.

use serde_json::{Value, json};

use super::table::{AGE, Column, NAME, age_cell, arr, col, i, name_cell, or_none, s, wide};
use super::{NameRule, Strategy, validation};
use crate::error::Cause;

/// The service strategy.
pub struct ServiceStrategy;

impl Strategy for ServiceStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        spec.entry("type").or_insert(json!("ClusterIP"));
        spec.entry("sessionAffinity").or_insert(json!("None"));
        let external = spec.get("type").and_then(Value::as_str) != Some("ExternalName");
        if external {
            spec.entry("internalTrafficPolicy").or_insert(json!("Cluster"));
            spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
            spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
        }
        if matches!(
            spec.get("type").and_then(Value::as_str),
            Some("NodePort" | "LoadBalancer")
        ) {
            spec.entry("externalTrafficPolicy").or_insert(json!("Cluster"));
        }
        for port in spec
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(p) = port.as_object_mut() else {
                continue;
            };
            p.entry("protocol").or_insert(json!("TCP"));
            if let Some(number) = p.get("port").cloned() {
                p.entry("targetPort").or_insert(number);
            }
        }
    }

    fn prepare_create(&self, obj: &mut Value) {
        obj["status"] = json!({"loadBalancer": {}});
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        let ty = s(obj, "/spec/type");
        if !matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
            causes.push(Cause::not_supported(
                "spec.type",
                &obj["spec"]["type"],
                &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
            ));
        }
        let ports = arr(obj, "/spec/ports");
        if ports.is_empty() && ty != "ExternalName" && s(obj, "/spec/clusterIP") != "None" {
            causes.push(Cause::required("spec.ports"));
        }
        for (n, p) in ports.iter().enumerate() {
            let port = i(p, "/port");
            if !(1..=65535).contains(&port) {
                causes.push(Cause::invalid(
                    format!("spec.ports[{n}].port"),
                    &p["port"],
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if ports.len() > 1 && s(p, "/name").is_empty() {
                causes.push(Cause::required(format!("spec.ports[{n}].name")));
            }
            let name = s(p, "/name");
            if !name.is_empty() && !validation::is_dns1123_label(name) {
                causes.push(Cause::invalid(
                    format!("spec.ports[{n}].name"),
                    &p["name"],
                    "must be a DNS label",
                ));
            }
        }
        if let Some(old) = old {
            let old_ip = s(old, "/spec/clusterIP");
            if !old_ip.is_empty() && s(obj, "/spec/clusterIP") != old_ip && ty != "ExternalName" {
                causes.push(Cause {
                    reason: "FieldValueInvalid",
                    message: "Invalid value: field is immutable".into(),
                    field: "spec.clusterIPs[0]".into(),
                });
            }
        }
        causes
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Type"),
            col("Cluster-IP"),
            col("External-IP"),
            col("Port(s)"),
            AGE,
            wide("Selector"),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let ty = s(obj, "/spec/type");
        let ports: Vec<String> = arr(obj, "/spec/ports")
            .iter()
            .map(|p| match i(p, "/nodePort") {
                0 => format!("{}/{}", i(p, "/port"), s(p, "/protocol")),
                np => format!("{}:{np}/{}", i(p, "/port"), s(p, "/protocol")),
            })
            .collect();
        let selector = super::table::labels_string(obj.pointer("/spec/selector"));
        vec![
            name_cell(obj),
            json!(ty),
            or_none(s(obj, "/spec/clusterIP")),
            json!(external_ip(obj)),
            or_none(ports.join(",")),
            age_cell(obj),
            or_none(selector),
        ]
    }

    fn field_labels(&self) -> &'static [&'static str] {
        &["spec.clusterIP", "spec.type"]
    }
}

fn external_ip(svc: &Value) -> String {
    let mut ips: Vec<String> = arr(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect();
    match s(svc, "/spec/type") {
        "ExternalName" => return s(svc, "/spec/externalName").to_string(),
        "LoadBalancer" => {
            let ingress = arr(svc, "/status/loadBalancer/ingress");
            ips.extend(ingress.iter().map(|e| {
                if s(e, "/ip").is_empty() {
                    s(e, "/hostname")
                } else {
                    s(e, "/ip")
                }
                .to_string()
            }));
            if ips.is_empty() {
                return "<pending>".into();
            }
        }
        _ => {}
    }
    if ips.is_empty() { "<none>".into() } else { ips.join(",") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_row() {
        let mut svc = json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], "clusterIP": "10.43.0.10"}});
        ServiceStrategy.default(&mut svc);
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
        assert!(ServiceStrategy.validate(&svc, None).is_empty());
        let cells = ServiceStrategy.cells(&svc);
        assert_eq!(cells[1], "ClusterIP");
        assert_eq!(cells[3], "<none>");
        assert_eq!(cells[4], "80/TCP");
        assert_eq!(cells[6], "app=web");
    }
}
