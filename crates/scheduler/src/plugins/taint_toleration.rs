//! TaintToleration: NoSchedule and NoExecute taints keep out pods that do not tolerate them;
//! untolerated PreferNoSchedule taints lower a node's score.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::{Cycle, CycleState, Plugin, Rejection, default_normalize};
use crate::node::NodeInfo;

/// The TaintToleration plugin.
pub struct TaintToleration;

/// Whether one toleration tolerates one taint, as upstream's `ToleratesTaint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Whether any of the tolerations tolerates the taint.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first NoSchedule or NoExecute taint of `taints` not tolerated, if any.
pub fn first_untolerated<'t>(taints: &'t [Taint], tolerations: &[Toleration]) -> Option<&'t Taint> {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerated(tolerations, t))
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, cycle: &Cycle<'_>, _: &CycleState<'_>, node: &NodeInfo) -> Result<(), Rejection> {
        match first_untolerated(&node.taints, &cycle.pod.tolerations) {
            None => Ok(()),
            Some(t) => Err(Rejection::unresolvable(
                self.name(),
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    t.key,
                    t.value.as_deref().unwrap_or("")
                ),
            )),
        }
    }

    fn score(&self, cycle: &Cycle<'_>, _: &CycleState<'_>, node: &NodeInfo) -> i64 {
        let soft: Vec<&Toleration> = cycle
            .pod
            .tolerations
            .iter()
            .filter(|t| matches!(t.effect.as_deref(), None | Some("") | Some("PreferNoSchedule")))
            .collect();
        node.taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|t| !soft.iter().any(|tol| tolerates(tol, t)))
            .count() as i64
    }

    fn normalize(&self, _: &CycleState<'_>, _: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tests::{filter, node, pod, scores};
    use serde_json::json;

    fn tainted(name: &str, key: &str, value: &str, effect: &str) -> NodeInfo {
        node(json!({"metadata": {"name": name}, "spec": {"taints": [{"key": key, "value": value, "effect": effect}]}}))
    }

    #[test]
    fn untolerated_taints_reject_with_upstream_text() {
        let n = tainted("n", "node-role.kubernetes.io/control-plane", "", "NoSchedule");
        let err = filter(&TaintToleration, &pod(json!({"metadata": {"name": "p"}})), &n).unwrap_err();
        assert_eq!(
            err.reasons,
            vec!["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"]
        );
        let tolerant = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}],
            "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}}),
        );
        assert!(filter(&TaintToleration, &tolerant, &n).is_ok());
    }

    #[test]
    fn equal_needs_the_value_and_effects_must_agree() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let t = |v: serde_json::Value| -> Toleration { serde_json::from_value(v).unwrap() };
        assert!(tolerates(
            &t(json!({"key": "k", "operator": "Equal", "value": "v"})),
            &taint
        ));
        assert!(!tolerates(&t(json!({"key": "k", "value": "w"})), &taint));
        assert!(!tolerates(
            &t(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})),
            &taint
        ));
        assert!(tolerates(&t(json!({"operator": "Exists"})), &taint));
    }

    #[test]
    fn prefer_no_schedule_lowers_the_score() {
        let nodes = [
            tainted("a", "k", "v", "PreferNoSchedule"),
            node(json!({"metadata": {"name": "b"}})),
        ];
        let s = scores(&TaintToleration, &pod(json!({"metadata": {"name": "p"}})), &nodes);
        assert_eq!(s, vec![0, 100]);
        // PreferNoSchedule taints never reject.
        assert!(filter(&TaintToleration, &pod(json!({"metadata": {"name": "p"}})), &nodes[0]).is_ok());
    }
}
