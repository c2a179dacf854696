//! A Deployment's ReplicaSets as its history: the pod-template-hash naming each template,
//! which ReplicaSet is the new one, revision numbers and the annotations `kubectl rollout
//! history` and `kubectl rollout undo` read, and which old ReplicaSets may be deleted.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::{desired, math, replicas};

/// The label telling apart the pods (and ReplicaSets) of each template of a Deployment.
pub(super) const HASH_LABEL: &str = "pod-template-hash";
/// A ReplicaSet's revision, and on the Deployment that of its current template.
pub(super) const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet had before a rollback made it current again.
pub(super) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last sized.
pub(super) const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas plus surge when the ReplicaSet was last sized.
pub(super) const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The longest revision-history annotation kept, as upstream's default.
const REVISION_HISTORY_CHARS: usize = 2000;
/// Annotations of the Deployment that are not copied to its ReplicaSets.
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// The characters a hash is spelled with: no vowels, and no digits or letters that look
/// alike, so a hash never reads as a word.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// 32-bit FNV-1a.
fn fnv32a(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0x811c_9dc5, |hash, b| (hash ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// The pod-template-hash of a template: FNV-1a over its JSON form and the collision count,
/// its decimal digits spelled in the safe alphabet, as upstream spells its hashes.
pub(super) fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(count) = collision_count {
        // Upstream appends the count as 8 bytes, of which a 32-bit little-endian value fills 4.
        bytes.extend_from_slice(&(count as u32).to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
    }
    fnv32a(&bytes)
        .to_string()
        .bytes()
        .map(|digit| char::from(SAFE_ALPHABET[usize::from(digit) % SAFE_ALPHABET.len()]))
        .collect()
}

/// Whether two templates are the same but for the pod-template-hash label.
pub(super) fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(meta) = t.metadata.as_mut()
            && let Some(labels) = meta.labels.as_mut()
        {
            labels.remove(HASH_LABEL);
            if labels.is_empty() {
                meta.labels = None;
            }
        }
        t
    };
    strip(a) == strip(b)
}

/// A ReplicaSet's revision: 0 without the annotation, `None` if it does not parse.
pub(super) fn revision(rs: &ReplicaSet) -> Option<i64> {
    match rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)) {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

/// The highest revision among `sets`, ignoring unreadable ones.
pub(super) fn max_revision<'a>(sets: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    sets.into_iter().filter_map(revision).max().unwrap_or(0)
}

/// An integer annotation of a ReplicaSet.
pub(super) fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

/// Oldest first; names break ties since creation times have whole seconds.
pub(super) fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// The ReplicaSet running the Deployment's current template: the oldest one whose template
/// matches, should there be several.
pub(super) fn find_new<'a>(d: &Deployment, sets: &'a [ReplicaSet]) -> Option<&'a ReplicaSet> {
    let template = &d.spec.as_ref()?.template;
    let mut matching: Vec<&ReplicaSet> = sets
        .iter()
        .filter(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, template))
        })
        .collect();
    matching.sort_by(|a, b| by_creation(a, b));
    matching.first().copied()
}

/// Copies the Deployment's annotations (all but the rollout bookkeeping) to a ReplicaSet, so
/// that e.g. `kubernetes.io/change-cause` shows in `kubectl rollout history`.
fn copy_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let mut changed = false;
    let target = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if NOT_COPIED.contains(&k.as_str()) || target.get(k) == Some(v) {
            continue;
        }
        target.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// Brings the new ReplicaSet's annotations up to date: the Deployment's annotations, the
/// revision `new_revision` (never lowered; a raised one moves the old number into the revision
/// history, as after a rollback), and for a ReplicaSet about to be created its sizes.
pub(super) fn set_new_rs_annotations(d: &Deployment, rs: &mut ReplicaSet, new_revision: i64, exists: bool) -> bool {
    let mut changed = copy_annotations(d, rs);
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let old = annotations.get(REVISION).cloned();
    let old_revision = match old.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(r)) => r,
        // An unreadable revision is left alone rather than guessed at.
        Some(Err(_)) => return changed,
    };
    if old_revision < new_revision {
        annotations.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = annotations.get(REVISION_HISTORY).cloned().unwrap_or_default();
            let mut kept: Vec<&str> = history.split(',').filter(|r| !r.is_empty()).collect();
            kept.push(&old);
            // Drop the oldest entries until the list fits.
            while kept.join(",").len() > REVISION_HISTORY_CHARS && kept.len() > 1 {
                kept.remove(0);
            }
            annotations.insert(REVISION_HISTORY.into(), kept.join(","));
        }
    }
    if !exists && set_replicas_annotations(rs, desired(d), desired(d) + math::max_surge(d)) {
        changed = true;
    }
    changed
}

/// Whether the size annotations differ from `desired` and `max`.
pub(super) fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    int_annotation(rs, DESIRED_REPLICAS) != Some(desired) || int_annotation(rs, MAX_REPLICAS) != Some(max)
}

/// Records the Deployment sizes a ReplicaSet was sized for; returns whether anything changed.
pub(super) fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    if !replicas_annotations_need_update(rs, desired, max) {
        return false;
    }
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(DESIRED_REPLICAS.into(), desired.to_string());
    annotations.insert(MAX_REPLICAS.into(), max.to_string());
    true
}

/// The old ReplicaSets beyond `limit` that may be deleted, oldest revision first: only those
/// scaled to zero, with no pods left and whose controller has seen their latest spec.
pub(super) fn to_clean_up(old: &[ReplicaSet], limit: i32) -> Vec<&ReplicaSet> {
    let mut alive: Vec<&ReplicaSet> = old
        .iter()
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .collect();
    let excess = alive.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
    alive.sort_by(|a, b| {
        revision(a)
            .unwrap_or(0)
            .cmp(&revision(b).unwrap_or(0))
            .then_with(|| by_creation(a, b))
    });
    alive
        .into_iter()
        .take(excess)
        .filter(|rs| {
            let status = rs.status.as_ref();
            status.map_or(0, |s| s.replicas) == 0
                && replicas(rs) == 0
                && rs.metadata.generation <= status.and_then(|s| s.observed_generation)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetSpec, ReplicaSetStatus};
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn hashes_are_stable_safe_and_template_specific() {
        let a = template_hash(&template("nginx:1"), None);
        assert_eq!(a, template_hash(&template("nginx:1"), None));
        assert_ne!(a, template_hash(&template("nginx:2"), None));
        assert_ne!(a, template_hash(&template("nginx:1"), Some(1)));
        assert!(!a.is_empty() && a.len() <= 10);
        assert!(a.bytes().all(|c| SAFE_ALPHABET.contains(&c)), "{a}");
    }

    #[test]
    fn the_hash_label_does_not_make_templates_differ() {
        let mut labeled = template("nginx:1");
        if let Some(labels) = labeled.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.insert(HASH_LABEL.into(), "abc".into());
        }
        assert!(equal_ignore_hash(&labeled, &template("nginx:1")));
        assert!(!equal_ignore_hash(&labeled, &template("nginx:2")));
    }

    fn rs(name: &str, revision: Option<&str>, replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                generation: Some(1),
                annotations: revision.map(|r| [(REVISION.to_string(), r.to_string())].into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                template: Some(template(name)),
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                observed_generation: Some(1),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn revisions_are_raised_and_remembered() {
        let d = Deployment {
            metadata: ObjectMeta {
                annotations: Some(
                    [
                        ("kubernetes.io/change-cause".to_string(), "v2".to_string()),
                        (REVISION.to_string(), "9".to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut fresh = rs("a", None, 0);
        assert!(set_new_rs_annotations(&d, &mut fresh, 1, false));
        let a = fresh.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(a.get(REVISION).map(String::as_str), Some("1"));
        assert_eq!(a.get("kubernetes.io/change-cause").map(String::as_str), Some("v2"));
        assert_eq!(a.get(DESIRED_REPLICAS).map(String::as_str), Some("3"));
        assert_eq!(a.get(MAX_REPLICAS).map(String::as_str), Some("3"));

        // Rolled back to: the old number moves into the history.
        let mut back = rs("b", Some("2"), 0);
        assert!(set_new_rs_annotations(&d, &mut back, 5, true));
        let a = back.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(a.get(REVISION).map(String::as_str), Some("5"));
        assert_eq!(a.get(REVISION_HISTORY).map(String::as_str), Some("2"));
        // Never lowered, and nothing changes the second time.
        assert!(!set_new_rs_annotations(&d, &mut back, 3, true));
    }

    #[test]
    fn cleanup_keeps_the_limit_and_busy_sets() {
        let old = vec![rs("r3", Some("3"), 0), rs("r1", Some("1"), 0), rs("r2", Some("2"), 1)];
        let names = |v: Vec<&ReplicaSet>| {
            v.iter()
                .map(|rs| rs.metadata.name.clone().unwrap_or_default())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(to_clean_up(&old, 1)), ["r1"]);
        assert_eq!(names(to_clean_up(&old, 0)), ["r1", "r3"]);
        assert!(to_clean_up(&old, 3).is_empty());
        assert_eq!(max_revision(&old), 3);
    }

    #[test]
    fn the_oldest_matching_set_is_the_new_one() {
        let d = Deployment {
            spec: Some(DeploymentSpec {
                template: template("b"),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sets = vec![rs("a", None, 1), rs("b", None, 1)];
        assert_eq!(
            find_new(&d, &sets).and_then(|rs| rs.metadata.name.as_deref()),
            Some("b")
        );
    }
}
