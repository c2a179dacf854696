//! The rollout arithmetic: maxSurge and maxUnavailable as absolute numbers, how far the new
//! ReplicaSet may grow, and how a resize is shared among ReplicaSets during a rollout.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{desired, replicas};
use crate::Error;

/// An absolute value or a percentage of `total`, rounded up or down.
pub(super) fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, Error> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .ok_or_else(|| Error::Invalid(format!("invalid value for IntOrString: {s:?} is not a percentage")))?
                .parse()
                .map_err(|_| Error::Invalid(format!("invalid value for IntOrString: {s:?}")))?;
            let scaled = percent * i64::from(total);
            let value = if round_up {
                scaled.div_euclid(100) + i64::from(scaled.rem_euclid(100) != 0)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(value).map_err(|_| Error::Invalid(format!("{s} of {total} is out of range")))
        }
    }
}

/// maxSurge (rounded up) and maxUnavailable (rounded down) for `desired` replicas. Both may
/// not be zero, or a rollout could never start: if rounding made them so, one pod may be
/// unavailable.
pub(super) fn resolve_fenceposts(
    surge: Option<&IntOrString>,
    unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), Error> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(surge.unwrap_or(&zero), desired, true)?;
    let unavailable = scaled_value(unavailable.unwrap_or(&zero), desired, false)?;
    Ok(if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    })
}

/// Whether the Deployment rolls out gradually (the default) rather than by recreating.
pub(super) fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        != Some("Recreate")
}

fn fenceposts(d: &Deployment) -> Result<(i32, i32), Error> {
    let rolling = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    resolve_fenceposts(
        rolling.and_then(|r| r.max_surge.as_ref()),
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        desired(d),
    )
}

/// How many pods above the desired count a rolling update may run (0 for Recreate).
pub(super) fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).map_or(0, |(surge, _)| surge)
}

/// How many desired pods a rolling update may leave unavailable (0 for Recreate), at most all.
pub(super) fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || desired(d) == 0 {
        return 0;
    }
    fenceposts(d).map_or(0, |(_, unavailable)| unavailable.min(desired(d)))
}

/// The size the new ReplicaSet may grow to now: everything at once for Recreate; for a rolling
/// update, as far as the surge allows given what all ReplicaSets hold.
pub(super) fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new: &ReplicaSet) -> Result<i32, Error> {
    if !is_rolling(d) {
        return Ok(desired(d));
    }
    let (surge, _) = fenceposts(d)?;
    let current: i32 = all.iter().map(|rs| replicas(rs)).sum();
    let max_total = desired(d) + surge;
    if current >= max_total {
        return Ok(replicas(new));
    }
    let up = (max_total - current).min(desired(d) - replicas(new));
    Ok(replicas(new) + up)
}

/// How many replicas `rs` gains (or loses, when negative) when a resize of `to_add` is shared
/// among the ReplicaSets in proportion to their size, `added` having been handed out already.
pub(super) fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// The change `rs` would need to keep its share when the Deployment resizes: its size scaled
/// by the new total over the total it was sized for (its max-replicas annotation).
fn fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if desired(d) == 0 {
        return -replicas(rs);
    }
    let total = desired(d) + max_surge(d);
    let sized_for = super::history::int_annotation(rs, super::history::MAX_REPLICAS)
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if sized_for == 0 {
        return 0;
    }
    let scaled = f64::from(replicas(rs)) * f64::from(total) / f64::from(sized_for);
    // Half away from zero, as upstream rounds.
    scaled.round() as i32 - replicas(rs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn percentages_round_as_upstream() {
        assert_eq!(scaled_value(&pct("25%"), 10, true).ok(), Some(3));
        assert_eq!(scaled_value(&pct("25%"), 10, false).ok(), Some(2));
        assert_eq!(scaled_value(&pct("25%"), 4, true).ok(), Some(1));
        assert_eq!(scaled_value(&pct("0%"), 4, true).ok(), Some(0));
        assert_eq!(scaled_value(&IntOrString::Int(7), 4, false).ok(), Some(7));
        assert!(scaled_value(&pct("25"), 4, false).is_err());
        assert!(scaled_value(&pct("x%"), 4, false).is_err());
    }

    #[test]
    fn fenceposts_never_both_zero() {
        // 25% of 3: surge rounds up to 1, unavailable down to 0.
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 3).ok(),
            Some((1, 0))
        );
        assert_eq!(
            resolve_fenceposts(Some(&pct("10%")), Some(&pct("10%")), 0).ok(),
            Some((0, 1))
        );
        assert_eq!(resolve_fenceposts(None, None, 5).ok(), Some((0, 1)));
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(2)), Some(&IntOrString::Int(1)), 5).ok(),
            Some((2, 1))
        );
    }

    fn deployment(replicas: i32, surge: i32, unavailable: i32) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(IntOrString::Int(surge)),
                        max_unavailable: Some(IntOrString::Int(unavailable)),
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn rs(replicas: i32, max_replicas: Option<i32>) -> ReplicaSet {
        let mut rs = ReplicaSet::default();
        rs.spec.get_or_insert_default().replicas = Some(replicas);
        if let Some(max) = max_replicas {
            rs.metadata.annotations = Some([(super::super::history::MAX_REPLICAS.to_string(), max.to_string())].into());
        }
        rs
    }

    #[test]
    fn max_unavailable_is_capped_by_replicas() {
        assert_eq!(max_unavailable(&deployment(2, 1, 5)), 2);
        assert_eq!(max_unavailable(&deployment(0, 1, 5)), 0);
        assert_eq!(max_surge(&deployment(4, 1, 1)), 1);
        let mut recreate = deployment(4, 1, 1);
        if let Some(s) = recreate.spec.as_mut().and_then(|s| s.strategy.as_mut()) {
            s.type_ = Some("Recreate".into());
        }
        assert_eq!((max_surge(&recreate), max_unavailable(&recreate)), (0, 0));
    }

    #[test]
    fn new_replica_set_grows_within_the_surge() {
        let d = deployment(4, 1, 1);
        let old = rs(4, None);
        let new = rs(0, None);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new).ok(), Some(1));
        let old = rs(3, None);
        let new = rs(1, None);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new).ok(), Some(2));
        let old = rs(0, None);
        let new = rs(4, None);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new).ok(), Some(4));
    }

    #[test]
    fn resizes_are_shared_in_proportion() {
        // Mid-rollout at 10 replicas + 3 surge (sized for 13): 8 old, 5 new; scaled to 20 (+5 surge).
        let d = deployment(20, 5, 0);
        let old = rs(8, Some(13));
        let new = rs(5, Some(13));
        let to_add = 25 - 13;
        let old_share = proportion(&old, &d, to_add, 0);
        let new_share = proportion(&new, &d, to_add, old_share);
        assert_eq!((old_share, new_share), (7, 5));
        assert_eq!(proportion(&rs(0, Some(13)), &d, to_add, 0), 0);
    }
}
