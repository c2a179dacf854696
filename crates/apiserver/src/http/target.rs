//! Turns a resource URL (`/api/v1/namespaces/default/pods/web/status`) into what it names.

use std::sync::Arc;

use crate::catalog::{Catalog, ResourceDef};
use crate::error::ApiError;

/// The resource, namespace, name and subresource a request addresses.
pub struct Target {
    /// The resource.
    pub def: Arc<ResourceDef>,
    /// The namespace (None: cluster-scoped, or a list across all namespaces).
    pub namespace: Option<String>,
    /// The object name (None: the collection).
    pub name: Option<String>,
    /// The subresource, e.g. `status`, `scale`.
    pub subresource: Option<String>,
}

/// Parses a path below `/api` or `/apis`; `None` when it is not a resource path at all.
pub fn parse(catalog: &Catalog, path: &str) -> Result<Option<Target>, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Ok(None),
    };
    if rest.is_empty() {
        return Ok(None);
    }
    let find = |plural: &str| {
        catalog
            .find(group, version, plural)
            .cloned()
            .ok_or_else(ApiError::no_route)
    };
    let target = match rest {
        ["namespaces", ns, plural, tail @ ..] if catalog.find(group, version, plural).is_some_and(|d| d.namespaced) => {
            let def = find(plural)?;
            let (name, subresource) = name_and_sub(tail)?;
            Target {
                def,
                namespace: Some(ns.to_string()),
                name,
                subresource,
            }
        }
        [plural, tail @ ..] => {
            let def = find(plural)?;
            let (name, subresource) = name_and_sub(tail)?;
            if def.namespaced && name.is_some() {
                return Err(ApiError::no_route());
            }
            Target {
                def,
                namespace: None,
                name,
                subresource,
            }
        }
        [] => return Ok(None),
    };
    for part in [&target.namespace, &target.name].into_iter().flatten() {
        if part.is_empty() {
            return Err(ApiError::no_route());
        }
    }
    Ok(Some(target))
}

fn name_and_sub(tail: &[&str]) -> Result<(Option<String>, Option<String>), ApiError> {
    match tail {
        [] => Ok((None, None)),
        [name] => Ok((Some(name.to_string()), None)),
        [name, sub] => Ok((Some(name.to_string()), Some(sub.to_string()))),
        _ => Err(ApiError::no_route()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let c = Catalog::builtin();
        let t = parse(&c, "/api/v1/namespaces/default/pods/web/status")
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                t.def.plural,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            ("pods", Some("default"), Some("web"), Some("status"))
        );
        let t = parse(&c, "/api/v1/namespaces/kube-system").unwrap().unwrap();
        assert_eq!((t.def.plural, t.name.as_deref()), ("namespaces", Some("kube-system")));
        let t = parse(&c, "/api/v1/namespaces/kube-system/finalize").unwrap().unwrap();
        assert_eq!(t.subresource.as_deref(), Some("finalize"));
        let t = parse(&c, "/apis/apps/v1/deployments").unwrap().unwrap();
        assert_eq!((t.def.plural, t.namespace), ("deployments", None));
        assert!(parse(&c, "/api/v1/bogus").is_err());
        assert!(parse(&c, "/api/v1/pods/x").is_err());
        assert!(parse(&c, "/api/v1").unwrap().is_none());
    }
}
