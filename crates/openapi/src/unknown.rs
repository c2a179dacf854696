//! Finding the fields of an object that its kind's schema does not declare, for
//! `fieldValidation=Strict` (reject) and `Warn` (warning headers).

use serde_json::Value;

use crate::SchemaRef;

/// Paths of fields in `obj` that the kind's schema does not declare, formatted like upstream's
/// `unknown field "…"` messages: `spec.foo`, `spec.template.spec.containers[0].bogus`.
///
/// Only objects with declared `properties` are closed. Maps (`additionalProperties`), objects marked
/// `x-kubernetes-preserve-unknown-fields`, and schemas without properties (IntOrString, Quantity,
/// Time, RawExtension, FieldsV1) accept anything below them.
pub fn unknown_fields(schema: &SchemaRef, obj: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let mut path = String::new();
    walk(schema, schema.node(), obj, &mut path, &mut found);
    found
}

fn walk(schema: &SchemaRef, node: &Value, value: &Value, path: &mut String, found: &mut Vec<String>) {
    let node = schema.resolve(node);
    match value {
        Value::Object(fields) => {
            let props = node.get("properties").and_then(Value::as_object);
            let values = node.get("additionalProperties").filter(|a| a.is_object());
            let open = props.is_none()
                || node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
                || node.get("additionalProperties") == Some(&Value::Bool(true));
            for (key, child) in fields {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match props.and_then(|p| p.get(key)).or(values) {
                    Some(sub) => walk(schema, sub, child, path, found),
                    None if !open => found.push(path.clone()),
                    None => {}
                }
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = node.get("items") {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(schema, item_schema, item, path, found);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::OpenApi;
    use crate::testing::resources;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "nginx",
                        "image": "nginx:1.27",
                        "ports": [{"containerPort": 80}],
                        "env": [{"name": "A", "value": "1"}],
                        "resources": {"limits": {"cpu": "500m", "memory": 128}},
                    }]},
                },
            },
            "status": {"replicas": 2},
        })
    }

    #[test]
    fn valid_deployment_has_no_unknown_fields() {
        let api = OpenApi::new(resources());
        let schema = api.kind_schema("apps", "v1", "Deployment").expect("schema");
        assert!(unknown_fields(&schema, &deployment()).is_empty());
    }

    #[test]
    fn unknown_fields_are_reported_with_their_paths() {
        let api = OpenApi::new(resources());
        let schema = api.kind_schema("apps", "v1", "Deployment").expect("schema");
        let mut obj = deployment();
        obj["spec"]["foo"] = json!(1);
        obj["spec"]["template"]["spec"]["containers"][0]["bogus"] = json!({"x": 1});
        obj["metadata"]["nope"] = json!(true);
        obj["top"] = json!(null);
        assert_eq!(
            unknown_fields(&schema, &obj),
            // Document order, as upstream's strict decoder reports them.
            [
                "metadata.nope",
                "spec.template.spec.containers[0].bogus",
                "spec.foo",
                "top"
            ]
        );
    }

    #[test]
    fn open_schemas_accept_anything() {
        let api = OpenApi::new(resources());
        let config_map = api.kind_schema("", "v1", "ConfigMap").expect("schema");
        let obj = json!({"metadata": {"name": "c"}, "data": {"any": "thing"}, "binaryData": {}});
        assert!(unknown_fields(&config_map, &obj).is_empty());
        let widget = api.kind_schema("example.com", "v1", "Widget").expect("schema");
        let obj = json!({"metadata": {"name": "w", "bad": 1}, "spec": {"size": 3}});
        assert_eq!(unknown_fields(&widget, &obj), ["metadata.bad"]);
    }
}
