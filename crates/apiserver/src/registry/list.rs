//! Lists: served from the watch cache, paged with continue tokens that read the store at the
//! first page's revision so every page belongs to one consistent snapshot.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use kate_store::{RangeRequest, Revision};
use serde_json::{Value, json};

use super::Registry;
use crate::catalog::ResourceDef;
use crate::error::ApiError;
use crate::selector::{FieldSelector, LabelSelector};
use crate::watchcache::{Cached, decode};

/// What a list asks for.
#[derive(Debug, Default, Clone)]
pub struct ListOptions {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `limit` (0 = all).
    pub limit: usize,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
}

impl ListOptions {
    /// Whether `obj` is selected; a selector reads only the fields it names, so that objects
    /// nobody parsed yet are not parsed just to be selected.
    pub fn selects(&self, obj: &Cached) -> bool {
        (self.labels.is_empty() || self.labels.matches(obj.at(&["metadata", "labels"]).as_deref()))
            && self.fields.matches(obj)
    }
}

/// One page of a list.
pub struct ListResult {
    /// The matching objects.
    pub items: Vec<Arc<Cached>>,
    /// The revision the list reflects.
    pub revision: Revision,
    /// Token for the next page.
    pub continue_token: Option<String>,
    /// How many objects remain after this page (before selectors), when known.
    pub remaining: Option<i64>,
}

const TOO_OLD_CONTINUE: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

fn encode_token(revision: Revision, start_after: &str) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start_after}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_token(token: &str) -> Result<(Revision, String), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    match (v["rv"].as_i64(), v["start"].as_str()) {
        (Some(rv), Some(start)) if rv > 0 => Ok((rv, start.to_string())),
        _ => Err(bad()),
    }
}

fn parse_rv(text: &str) -> Result<Revision, ApiError> {
    text.parse::<Revision>().ok().filter(|r| *r >= 0).ok_or_else(|| {
        ApiError::bad_request(format!(
            "resourceVersion: Invalid value: \"{text}\": must be a non-negative integer"
        ))
    })
}

impl Registry {
    /// Lists objects of `def` in `ns` (all namespaces when None).
    pub async fn list(&self, def: &ResourceDef, ns: Option<&str>, opts: &ListOptions) -> Result<ListResult, ApiError> {
        let prefix = def.prefix_in(ns);
        let keep = |obj: &Cached| opts.selects(obj);
        if let Some(token) = &opts.continue_token {
            let (revision, start) = decode_token(token)?;
            if !start.starts_with(&prefix) && !start.is_empty() {
                return Err(ApiError::bad_request(
                    "continue key is not valid: it belongs to another list",
                ));
            }
            return self.list_from_store(def, &prefix, revision, &start, opts, &keep).await;
        }
        let exact = opts.resource_version_match.as_deref() == Some("Exact");
        match opts.resource_version.as_deref() {
            None | Some("") => {
                self.sync().await;
            }
            Some("0") => {}
            Some(text) => {
                let wanted = parse_rv(text)?;
                if exact && wanted < self.cache.revision() {
                    return self.list_from_store(def, &prefix, wanted, "", opts, &keep).await;
                }
                if tokio::time::timeout(Duration::from_secs(3), self.cache.wait_for(wanted))
                    .await
                    .is_err()
                {
                    return Err(ApiError::from(kate_store::Error::FutureRevision {
                        requested: wanted,
                        current: self.cache.revision(),
                    }));
                }
            }
        }
        let (all, revision) = self.cache.list(&prefix);
        let all: Vec<Arc<Cached>> = if def.view.is_some() {
            all.into_iter().map(|o| def.shown(o)).collect()
        } else {
            all
        };
        let mut items = Vec::new();
        let mut continue_token = None;
        let mut remaining = None;
        for (n, obj) in all.iter().enumerate() {
            if !keep(obj) {
                continue;
            }
            if opts.limit > 0 && items.len() == opts.limit {
                let last_key = def.key(ns_of(items.last()), name_of(items.last()));
                continue_token = Some(encode_token(revision, &last_key));
                remaining = Some((all.len() - n) as i64);
                break;
            }
            items.push(obj.clone());
        }
        Ok(ListResult {
            items,
            revision,
            continue_token,
            remaining,
        })
    }

    async fn list_from_store(
        &self,
        def: &ResourceDef,
        prefix: &str,
        revision: Revision,
        start_after: &str,
        opts: &ListOptions,
        keep: &(dyn Fn(&Cached) -> bool + Sync),
    ) -> Result<ListResult, ApiError> {
        let req = RangeRequest {
            prefix: prefix.into(),
            start_after: start_after.into(),
            revision,
            limit: opts.limit,
        };
        let page = self.store.range(req).await.map_err(|e| match e {
            kate_store::Error::Compacted { .. } if !start_after.is_empty() => ApiError::gone(TOO_OLD_CONTINUE),
            other => ApiError::from(other),
        })?;
        let continue_token = match page.kvs.last() {
            Some(last) if page.more => Some(encode_token(revision, &last.key)),
            _ => None,
        };
        let items = page
            .kvs
            .iter()
            .map(|kv| def.shown(Cached::new(decode(&kv.value, kv.mod_revision))))
            .filter(|o| keep(o))
            .collect();
        Ok(ListResult {
            items,
            revision,
            continue_token,
            remaining: None,
        })
    }
}

fn ns_of(obj: Option<&Arc<Cached>>) -> Option<&str> {
    obj.and_then(|o| o.pointer("/metadata/namespace"))
        .and_then(Value::as_str)
}

fn name_of(obj: Option<&Arc<Cached>>) -> &str {
    obj.and_then(|o| o.pointer("/metadata/name"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let t = encode_token(42, "/registry/configmaps/default/a");
        assert_eq!(
            decode_token(&t).unwrap(),
            (42, "/registry/configmaps/default/a".to_string())
        );
        assert_eq!(decode_token("garbage!").unwrap_err().code, 400);
    }
}
