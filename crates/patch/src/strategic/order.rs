//! Element order of merged lists, reproducing upstream's observable ordering: items named by
//! the patch (or by `$setElementOrder`) come in that order, items only the server had keep
//! their relative order, and the two runs are interleaved by their positions in the original.

use serde_json::Value;

use super::directives::{MARKER, invalid};
use super::path::Path;
use crate::PatchError;

/// What identifies a list item: its merge-key value for keyed lists, the item itself otherwise.
pub(crate) fn identity<'v>(item: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(key) => item.get(key),
        None => Some(item),
    }
}

/// Value equality that, like Go's float64 decoding upstream, treats `1` and `1.0` as equal.
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    a == b || matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

fn position(ids: &[&Value], id: Option<&Value>) -> Option<usize> {
    let id = id?;
    ids.iter().position(|candidate| same(candidate, id))
}

/// Orders `merged`: items whose identity is in `wanted` follow that order, the others follow
/// `server`, and both runs are interleaved the way upstream's `mergeSortedSlice` does.
pub(crate) fn normalize(merged: Vec<Value>, wanted: &[&Value], server: &[&Value], key: Option<&str>) -> Vec<Value> {
    let mut chosen = Vec::new();
    let mut rest = Vec::new();
    for item in merged {
        match position(wanted, identity(&item, key)) {
            Some(at) => chosen.push((at, item)),
            None => {
                // Items the server order does not know either go last, in their current order.
                let at = position(server, identity(&item, key)).unwrap_or(usize::MAX);
                rest.push((at, item));
            }
        }
    }
    chosen.sort_by_key(|(at, _)| *at);
    rest.sort_by_key(|(at, _)| *at);
    interleave(rest, chosen, server, key)
}

/// Upstream prefers the patch side unless both items are known to the server and the
/// server-only item came first there; this is why new items land before unnamed old ones.
fn interleave(
    server_only: Vec<(usize, Value)>,
    patched: Vec<(usize, Value)>,
    server: &[&Value],
    key: Option<&str>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(server_only.len() + patched.len());
    let mut left = server_only.into_iter().map(|(_, v)| v).peekable();
    let mut right = patched.into_iter().map(|(_, v)| v).peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => matches!(
                (position(server, identity(l, key)), position(server, identity(r, key))),
                (Some(a), Some(b)) if a < b
            ),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        out.extend(if take_left { left.next() } else { right.next() });
    }
    out
}

/// Checks that the items of the patch list appear in `$setElementOrder` in the same relative
/// order, so the directive cannot silently contradict the list it orders.
pub(crate) fn validate(
    patch_list: Option<&[Value]>,
    order: &[Value],
    key: Option<&str>,
    at: &Path<'_>,
) -> Result<(), PatchError> {
    let Some(patch_list) = patch_list else {
        return Ok(());
    };
    let mut remaining = order.iter().enumerate();
    for (i, item) in patch_list.iter().enumerate() {
        if item.get(MARKER).is_some() {
            continue;
        }
        let id = identity(item, key).ok_or_else(|| missing_key(&Path::Item(at, i), key))?;
        loop {
            let Some((j, candidate)) = remaining.next() else {
                return Err(invalid(
                    at,
                    "$setElementOrder",
                    "the order of the patch list does not match the $setElementOrder list".to_owned(),
                ));
            };
            if same(order_identity(candidate, j, key, at)?, id) {
                break;
            }
        }
    }
    Ok(())
}

/// Applies `$setElementOrder` to the merged list; `before` is the list prior to the patch.
pub(crate) fn apply(
    merged: Vec<Value>,
    order: &[Value],
    before: &[Value],
    key: Option<&str>,
    at: &Path<'_>,
) -> Result<Vec<Value>, PatchError> {
    let wanted = order
        .iter()
        .enumerate()
        .map(|(j, o)| order_identity(o, j, key, at))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(i) = merged.iter().position(|m| identity(m, key).is_none()) {
        return Err(missing_key(&Path::Item(at, i), key));
    }
    let server: Vec<&Value> = before.iter().filter_map(|b| identity(b, key)).collect();
    Ok(normalize(merged, &wanted, &server, key))
}

fn order_identity<'v>(
    entry: &'v Value,
    index: usize,
    key: Option<&str>,
    at: &Path<'_>,
) -> Result<&'v Value, PatchError> {
    identity(entry, key).ok_or_else(|| {
        invalid(
            at,
            "$setElementOrder",
            format!("entry {index} lacks the merge key {:?}", key.unwrap_or_default()),
        )
    })
}

/// Builds a `MissingMergeKey` error; only keyed lists can miss a key.
pub(crate) fn missing_key(at: &Path<'_>, key: Option<&str>) -> PatchError {
    PatchError::MissingMergeKey {
        path: at.to_string(),
        key: key.unwrap_or_default().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn ids(v: &Value) -> Vec<&Value> {
        v.as_array().unwrap().iter().collect()
    }

    #[test]
    fn new_items_go_before_unnamed_server_items() {
        let server = json!([1, 2]);
        let wanted = json!([3]);
        let merged = vec![json!(1), json!(2), json!(3)];
        let out = normalize(merged, &ids(&wanted), &ids(&server), None);
        assert_eq!(out, vec![json!(3), json!(1), json!(2)]);
    }

    #[test]
    fn server_items_keep_their_place_before_later_patch_items() {
        // Upstream's "preserve the order from the patch in a merging list 2".
        let server = json!([1, 2, 3]);
        let wanted = json!([3, 1]);
        let merged = vec![json!(1), json!(2), json!(3)];
        let out = normalize(merged, &ids(&wanted), &ids(&server), None);
        assert_eq!(out, vec![json!(2), json!(3), json!(1)]);
    }

    #[test]
    fn numbers_compare_like_go_floats() {
        assert!(same(&json!(8080), &json!(8080.0)));
        assert!(!same(&json!("1"), &json!(1)));
    }
}
