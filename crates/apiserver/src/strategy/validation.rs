//! Validation shared by every kind: object names, labels, and immutable fields.

use serde_json::Value;

use crate::error::Cause;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// Whether `s` is an RFC 1123 label (at most 63 characters).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `s` is an RFC 1123 subdomain (at most 253 characters).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// How a kind's object names are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most kinds).
    Subdomain,
    /// RFC 1123 label (namespaces, services).
    Label,
    /// Any path segment (events, for example, embed dots and colons).
    PathSegment,
}

/// Checks `metadata.name` against `rule`.
pub fn validate_name(name: &str, rule: NameRule) -> Vec<Cause> {
    let value = Value::String(name.to_string());
    if name.is_empty() {
        return vec![Cause::required("metadata.name")];
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('%') {
        return vec![Cause::invalid(
            "metadata.name",
            &value,
            "may not contain '/' or '%' and may not be '.' or '..'",
        )];
    }
    let ok = match rule {
        NameRule::Subdomain => is_dns1123_subdomain(name),
        NameRule::Label => is_dns1123_label(name),
        NameRule::PathSegment => true,
    };
    if ok {
        return Vec::new();
    }
    let msg = if rule == NameRule::Label {
        DNS1123_LABEL_MSG
    } else {
        DNS1123_SUBDOMAIN_MSG
    };
    vec![Cause::invalid("metadata.name", &value, msg)]
}

/// Checks label keys and values under `metadata.labels`.
pub fn validate_labels(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) else {
        return causes;
    };
    for (key, value) in labels {
        if !is_qualified_name(key) {
            causes.push(Cause::invalid(
                "metadata.labels",
                &Value::String(key.clone()),
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            ));
        }
        let v = value.as_str().unwrap_or("");
        if !is_label_value(v) {
            causes.push(Cause::invalid(
                "metadata.labels",
                value,
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            ));
        }
    }
    causes
}

fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Whether `s` is a qualified name like `app` or `example.com/app`.
pub fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns1123_subdomain(prefix) && is_name_part(name),
        None => is_name_part(s),
    }
}

/// Whether `s` is a valid label value.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_name_part(s)
}

/// A cause if the value at `pointer` differs between `new` and `old`.
pub fn immutable(new: &Value, old: &Value, pointer: &str, field: &str) -> Option<Cause> {
    (new.pointer(pointer) != old.pointer(pointer)).then(|| Cause::immutable(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("web-1", NameRule::Label).is_empty());
        assert!(validate_name("a.b", NameRule::Subdomain).is_empty());
        assert_eq!(validate_name("a.b", NameRule::Label).len(), 1);
        assert_eq!(validate_name("Web", NameRule::Subdomain).len(), 1);
        assert_eq!(validate_name("", NameRule::Subdomain)[0].reason, "FieldValueRequired");
        assert!(!is_dns1123_label(&"a".repeat(64)));
    }

    #[test]
    fn labels() {
        assert!(is_qualified_name("app.kubernetes.io/name"));
        assert!(!is_qualified_name("-bad"));
        assert!(is_label_value(""));
        assert!(!is_label_value("no spaces"));
    }
}
