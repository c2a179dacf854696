//! Label and field selectors from list and watch queries (`-l`, `--field-selector`).

use serde_json::Value;

use crate::error::ApiError;
use crate::watchcache::Cached;

/// One label requirement.
#[derive(Debug, Clone, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; all requirements must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<LabelReq>);

impl LabelSelector {
    /// Parses upstream's selector syntax: `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(text: &str) -> Result<LabelSelector, ApiError> {
        let mut reqs = Vec::new();
        for term in split_terms(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            reqs.push(parse_term(term).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unable to parse requirement: found '{term}', expected: identifier"
                ))
            })?);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether the selector has no requirements.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `labels` (an object's `metadata.labels`, possibly absent) satisfies the selector.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Splits on commas that are not inside parentheses.
fn split_terms(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (n, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..n]);
                start = n + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

fn parse_term(term: &str) -> Option<LabelReq> {
    if let Some(key) = term.strip_prefix('!') {
        return valid_key(key.trim()).then(|| LabelReq::NotExists(key.trim().into()));
    }
    for (op, ctor) in [
        ("!=", LabelReq::NotEq as fn(String, String) -> LabelReq),
        ("==", LabelReq::Eq),
        ("=", LabelReq::Eq),
    ] {
        if let Some((k, v)) = term.split_once(op) {
            let (k, v) = (k.trim(), v.trim());
            return valid_key(k).then(|| ctor(k.into(), v.into()));
        }
    }
    for (op, set) in [(" notin ", false), (" in ", true)] {
        if let Some((k, rest)) = term.split_once(op) {
            let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
            let values: Vec<String> = inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            let k = k.trim();
            if !valid_key(k) {
                return None;
            }
            return Some(if set {
                LabelReq::In(k.into(), values)
            } else {
                LabelReq::NotIn(k.into(), values)
            });
        }
    }
    valid_key(term).then(|| LabelReq::Exists(term.into()))
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// A parsed field selector: `field=value` / `field!=value` terms, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<FieldTerm>);

/// One `field=value` or `field!=value` term.
#[derive(Debug, Clone, PartialEq)]
struct FieldTerm {
    /// The field's path in the object (`spec.nodeName` is `["spec", "nodeName"]`), split once
    /// here because every watched event is matched.
    path: Vec<String>,
    /// `=` rather than `!=`.
    equal: bool,
    want: String,
}

impl FieldTerm {
    fn holds(&self, obj: &Cached) -> bool {
        let got = obj.at(&self.path);
        let same = match got.as_deref() {
            Some(Value::String(s)) => *s == self.want,
            Some(Value::Bool(b)) => self.want == if *b { "true" } else { "false" },
            Some(Value::Number(n)) => n.to_string() == self.want,
            _ => self.want.is_empty(),
        };
        same == self.equal
    }
}

impl FieldSelector {
    /// Parses `metadata.name=x,status.phase!=Failed`, accepting only `allowed` fields besides
    /// `metadata.name` and `metadata.namespace` (upstream refuses others with 400).
    pub fn parse(text: &str, allowed: &[&str]) -> Result<FieldSelector, ApiError> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            if !matches!(field, "metadata.name" | "metadata.namespace") && !allowed.contains(&field) {
                return Err(ApiError::bad_request(format!("field label not supported: {field}")));
            }
            terms.push(FieldTerm {
                path: field.split('.').map(str::to_string).collect(),
                equal,
                want: value.trim().to_string(),
            });
        }
        Ok(FieldSelector(terms))
    }

    /// Whether the selector has no terms.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of `metadata.name=` if the selector pins one name (used to narrow lookups).
    pub fn pinned_name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|t| t.path == ["metadata", "name"] && t.equal)
            .map(|t| t.want.as_str())
    }

    /// Whether `obj` satisfies every term; missing fields read as the empty string.
    pub fn matches(&self, obj: &Cached) -> bool {
        self.0.iter().all(|term| term.holds(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let labels = json!({"app": "web", "tier": "front"});
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(Some(&labels));
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("tier in (front, back)"));
        assert!(!m("tier notin (front)"));
        assert!(m("!missing"));
        assert!(!m("missing"));
        assert!(m(""));
        assert!(
            LabelSelector::parse("a in (x").is_err()
                || !LabelSelector::parse("a in (x").unwrap().matches(Some(&labels))
        );
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "p1", "namespace": "default"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let allowed = ["spec.nodeName", "status.phase"];
        let sel = FieldSelector::parse("spec.nodeName=n1,status.phase!=Succeeded", &allowed).unwrap();
        let pod = Cached::new(pod);
        assert!(sel.matches(&pod));
        assert!(
            !FieldSelector::parse("metadata.name=p2", &allowed)
                .unwrap()
                .matches(&pod)
        );
        assert_eq!(
            FieldSelector::parse("metadata.name=p1", &[]).unwrap().pinned_name(),
            Some("p1")
        );
        assert_eq!(FieldSelector::parse("spec.bogus=1", &allowed).unwrap_err().code, 400);
    }

    #[test]
    fn field_selectors_read_scalars_as_strings_and_missing_fields_as_empty() {
        let pod = json!({"spec": {"nodeName": "", "hostNetwork": true, "priority": 7, "tolerations": []}});
        let allowed = [
            "spec.nodeName",
            "spec.hostNetwork",
            "spec.priority",
            "spec.tolerations",
            "status.phase",
        ];
        let pod = Cached::new(pod);
        let m = |s: &str| FieldSelector::parse(s, &allowed).unwrap().matches(&pod);
        assert!(m("spec.hostNetwork=true") && !m("spec.hostNetwork=false"));
        assert!(m("spec.priority=7") && m("spec.priority!=8"));
        assert!(m("spec.nodeName=") && !m("spec.nodeName!="));
        assert!(m("status.phase=") && !m("status.phase!="));
        assert!(m("spec.tolerations="), "a non-scalar field reads as empty");
    }
}
