//! API discovery: aggregated (`apidiscovery.k8s.io/v2`) and the legacy per-group-version lists.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::{AppState, json_response};
use crate::catalog::{Catalog, ResourceDef};
use crate::error::ApiError;

const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const AGGREGATED_V2BETA1: &str = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Which aggregated version the client accepts, if any (it decides the response format).
fn wants_aggregated(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let offers = |v: &str| {
        accept
            .split(',')
            .any(|a| a.contains("as=APIGroupDiscoveryList") && a.contains(&format!("v={v}")))
    };
    if offers("v2") {
        Some(AGGREGATED_V2)
    } else if offers("v2beta1") {
        Some(AGGREGATED_V2BETA1)
    } else {
        None
    }
}

fn aggregated(content_type: &'static str, items: Vec<Value>) -> Response {
    let api_version = if content_type == AGGREGATED_V2 {
        "apidiscovery.k8s.io/v2"
    } else {
        "apidiscovery.k8s.io/v2beta1"
    };
    let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items});
    let mut resp = json_response(StatusCode::OK, &body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

fn aggregated_resource(def: &ResourceDef) -> Value {
    let subresources: Vec<Value> = def
        .subresources
        .iter()
        .map(|s| {
            let (group, version, kind) = s.response_kind(def.group, def.version, def.kind);
            json!({"subresource": s.name(), "responseKind": {"group": group, "version": version, "kind": kind}, "verbs": s.verbs()})
        })
        .collect();
    let mut r = json!({
        "resource": def.plural,
        "responseKind": {"group": def.group, "version": def.version, "kind": def.kind},
        "scope": if def.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": def.singular,
        "verbs": VERBS,
    });
    if !def.short_names.is_empty() {
        r["shortNames"] = json!(def.short_names);
    }
    if !def.categories.is_empty() {
        r["categories"] = json!(def.categories);
    }
    if !subresources.is_empty() {
        r["subresources"] = json!(subresources);
    }
    r
}

fn aggregated_group(catalog: &Catalog, group: &str) -> Value {
    let versions: Vec<Value> = catalog
        .group_versions()
        .into_iter()
        .filter(|(g, _, _)| *g == group)
        .map(|(_, v, defs)| json!({"version": v, "resources": defs.iter().map(|d| aggregated_resource(d)).collect::<Vec<_>>(), "freshness": "Current"}))
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

fn group_names(catalog: &Catalog) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for (g, _, _) in catalog.group_versions() {
        if !g.is_empty() && !names.contains(&g) {
            names.push(g);
        }
    }
    names
}

fn legacy_group(catalog: &Catalog, group: &str) -> Value {
    let versions: Vec<Value> = catalog
        .group_versions()
        .into_iter()
        .filter(|(g, _, _)| *g == group)
        .map(|(g, v, _)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

/// `GET /api`.
pub async fn core(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match wants_aggregated(&headers) {
        Some(ct) => aggregated(ct, vec![aggregated_group(&state.registry.catalog, "")]),
        None => json_response(
            StatusCode::OK,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}),
        ),
    }
}

/// `GET /apis`.
pub async fn groups(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let catalog = &state.registry.catalog;
    match wants_aggregated(&headers) {
        Some(ct) => aggregated(
            ct,
            group_names(catalog)
                .into_iter()
                .map(|g| aggregated_group(catalog, g))
                .collect(),
        ),
        None => {
            let groups: Vec<Value> = group_names(catalog)
                .into_iter()
                .map(|g| legacy_group(catalog, g))
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            )
        }
    }
}

/// `GET /apis/{group}`.
pub async fn group(State(state): State<Arc<AppState>>, Path(group): Path<String>) -> Response {
    let catalog = &state.registry.catalog;
    if !group_names(catalog).contains(&group.as_str()) {
        return ApiError::no_route().into_response();
    }
    let mut body = legacy_group(catalog, &group);
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    json_response(StatusCode::OK, &body)
}

fn resource_list(catalog: &Catalog, group: &str, version: &str) -> Option<Value> {
    let defs: Vec<_> = catalog
        .all()
        .iter()
        .filter(|d| d.group == group && d.version == version)
        .collect();
    if defs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for d in defs {
        let mut r = json!({"name": d.plural, "singularName": d.singular, "namespaced": d.namespaced, "kind": d.kind, "verbs": VERBS});
        if !d.short_names.is_empty() {
            r["shortNames"] = json!(d.short_names);
        }
        if !d.categories.is_empty() {
            r["categories"] = json!(d.categories);
        }
        resources.push(r);
        for s in d.subresources {
            let (group, version, kind) = s.response_kind(d.group, d.version, d.kind);
            let mut sub = json!({"name": format!("{}/{}", d.plural, s.name()), "singularName": "", "namespaced": d.namespaced, "kind": kind, "verbs": s.verbs()});
            if group != d.group {
                sub["group"] = json!(group);
                sub["version"] = json!(version);
            }
            resources.push(sub);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// `GET /api/{version}`.
pub async fn core_version(State(state): State<Arc<AppState>>, Path(version): Path<String>) -> Response {
    match resource_list(&state.registry.catalog, "", &version) {
        Some(body) => json_response(StatusCode::OK, &body),
        None => ApiError::no_route().into_response(),
    }
}

/// `GET /apis/{group}/{version}`.
pub async fn group_version(
    State(state): State<Arc<AppState>>,
    Path((group, version)): Path<(String, String)>,
) -> Response {
    match resource_list(&state.registry.catalog, &group, &version) {
        Some(body) => json_response(StatusCode::OK, &body),
        None => ApiError::no_route().into_response(),
    }
}
