//! Label selectors (pods) and node selector terms (nodes), parsed once per pod so that the
//! per-node checks are plain comparisons.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Requirement {
    /// The label is one of the values.
    In(String, Vec<String>),
    /// The label is absent or none of the values.
    NotIn(String, Vec<String>),
    /// The label is present.
    Exists(String),
    /// The label is absent.
    DoesNotExist(String),
    /// The label is an integer greater than this (node selectors only).
    Gt(String, i64),
    /// The label is an integer less than this (node selectors only).
    Lt(String, i64),
}

impl Requirement {
    /// Whether `labels` satisfy the requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
            Requirement::Gt(k, n) => labels
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            Requirement::Lt(k, n) => labels
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        }
    }

    fn parse(key: &str, operator: &str, values: &[String]) -> Option<Requirement> {
        let key = key.to_string();
        let one_int = || (values.len() == 1).then(|| values[0].parse::<i64>().ok()).flatten();
        Some(match operator {
            "In" if !values.is_empty() => Requirement::In(key, values.to_vec()),
            "NotIn" if !values.is_empty() => Requirement::NotIn(key, values.to_vec()),
            "Exists" if values.is_empty() => Requirement::Exists(key),
            "DoesNotExist" if values.is_empty() => Requirement::DoesNotExist(key),
            "Gt" => Requirement::Gt(key, one_int()?),
            "Lt" => Requirement::Lt(key, one_int()?),
            _ => return None,
        })
    }
}

/// A parsed label selector; a missing or invalid selector matches nothing, an empty one
/// everything, as upstream's conversion does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl Selector {
    /// The selector that matches no object.
    pub fn nothing() -> Selector {
        Selector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// The selector that matches every object.
    pub fn everything() -> Selector {
        Selector {
            requirements: Vec::new(),
            nothing: false,
        }
    }

    /// Parses a `metav1.LabelSelector` (`None` matches nothing).
    pub fn from_label_selector(selector: Option<&LabelSelector>) -> Selector {
        let Some(selector) = selector else {
            return Selector::nothing();
        };
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()]))
            .collect();
        for LabelSelectorRequirement { key, operator, values } in selector.match_expressions.iter().flatten() {
            // Gt and Lt are for node selectors only.
            if operator == "Gt" || operator == "Lt" {
                return Selector::nothing();
            }
            match Requirement::parse(key, operator, values.as_deref().unwrap_or_default()) {
                Some(r) => requirements.push(r),
                None => return Selector::nothing(),
            }
        }
        Selector {
            requirements,
            nothing: false,
        }
    }

    /// A selector made of `matchLabels` only (a service's or a workload's selector); empty
    /// matches nothing, as upstream treats an empty service selector.
    pub fn from_map(map: &Labels) -> Selector {
        if map.is_empty() {
            return Selector::nothing();
        }
        Selector {
            requirements: map
                .iter()
                .map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()]))
                .collect(),
            nothing: false,
        }
    }

    /// Adds a requirement (for `matchLabelKeys` and `mismatchLabelKeys`).
    pub fn and(&mut self, requirement: Requirement) {
        self.requirements.push(requirement);
    }

    /// Merges another selector's requirements into this one (both must hold).
    pub fn and_all(&mut self, other: &Selector) {
        self.nothing |= other.nothing;
        self.requirements.extend(other.requirements.iter().cloned());
    }

    /// Whether this selector matches `labels`.
    pub fn matches(&self, labels: &Labels) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether this selector can match nothing at all.
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }
}

/// A node selector term: its label expressions and `metadata.name` field expressions must all
/// hold; a term with neither matches no node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTerm {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
    valid: bool,
}

impl NodeTerm {
    /// Parses a `NodeSelectorTerm`.
    pub fn parse(term: &NodeSelectorTerm) -> NodeTerm {
        let mut valid = true;
        let mut convert = |reqs: Option<&Vec<NodeSelectorRequirement>>| -> Vec<Requirement> {
            reqs.into_iter()
                .flatten()
                .filter_map(|r| {
                    let parsed = Requirement::parse(&r.key, &r.operator, r.values.as_deref().unwrap_or_default());
                    valid &= parsed.is_some();
                    parsed
                })
                .collect()
        };
        let labels = convert(term.match_expressions.as_ref());
        let fields = convert(term.match_fields.as_ref());
        let valid = valid && !(labels.is_empty() && fields.is_empty());
        NodeTerm { labels, fields, valid }
    }

    /// Whether a node with this name and labels satisfies the term.
    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        if !self.valid || !self.labels.iter().all(|r| r.matches(labels)) {
            return false;
        }
        if self.fields.is_empty() {
            return true;
        }
        let fields = Labels::from([("metadata.name".to_string(), node_name.to_string())]);
        self.fields.iter().all(|r| r.matches(&fields))
    }
}

/// Required node affinity: any of the terms must match.
pub fn any_term_matches(terms: &[NodeTerm], node_name: &str, labels: &Labels) -> bool {
    terms.iter().any(|t| t.matches(node_name, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn label_selector_semantics() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]
        }))
        .unwrap();
        let s = Selector::from_label_selector(Some(&sel));
        assert!(s.matches(&labels(&[("app", "web")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!Selector::from_label_selector(None).matches(&labels(&[])));
        assert!(Selector::from_label_selector(Some(&LabelSelector::default())).matches(&labels(&[])));
    }

    #[test]
    fn node_terms() {
        let term: NodeSelectorTerm = serde_json::from_value(json!({
            "matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["2"]}],
            "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]
        }))
        .unwrap();
        let t = NodeTerm::parse(&term);
        assert!(t.matches("n1", &labels(&[("cores", "4")])));
        assert!(!t.matches("n2", &labels(&[("cores", "4")])));
        assert!(!t.matches("n1", &labels(&[("cores", "2")])));
        let empty = NodeTerm::parse(&NodeSelectorTerm::default());
        assert!(!empty.matches("n1", &labels(&[])));
    }
}
