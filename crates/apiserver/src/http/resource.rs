//! The resource endpoint: dispatches each verb on any served kind to the generic registry.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use tracing::Instrument;

use super::body;
use super::encode::{self, Format, Include};
use super::proxy;
use super::query::Query;
use super::target::{self, Target};
use super::watch::{self, WatchRequest};
use super::{AppState, json_response};
use crate::catalog::Subresource;
use crate::error::ApiError;
use crate::loopback::InProcess;
use crate::registry::{DeleteOptions, PatchType, Registry, scale_of};
use crate::watchcache::Cached;

/// Handles every request below `/api/v1` and `/apis/{group}/{version}` that names a resource.
pub async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let target = match target::parse(&state.registry.catalog, parts.uri.path()) {
        Ok(Some(t)) => t,
        Ok(None) => return ApiError::no_route().into_response(),
        Err(e) => return e.into_response(),
    };
    if let Some(kind) = proxy::Streaming::of(&target) {
        let span = tracing::debug_span!("stream", kind = ?kind, namespace = target.namespace.as_deref().unwrap_or(""), name = target.name.as_deref().unwrap_or(""));
        let result = proxy::handle(&state.registry, state.kubelet.as_ref(), kind, parts, target)
            .instrument(span)
            .await;
        return result.unwrap_or_else(|e| {
            tracing::debug!(code = e.code, reason = e.reason, message = %e.message, "streaming request refused");
            e.into_response()
        });
    }
    let span = tracing::debug_span!("request", verb = %parts.method, resource = target.def.plural, namespace = target.namespace.as_deref().unwrap_or(""), name = target.name.as_deref().unwrap_or(""));
    let registry = state.registry.clone();
    let result = async {
        let query = Query::parse(parts.uri.query())?;
        let format = encode::negotiate(&parts.headers)?;
        let body = match parts.method {
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE => body::read(body).await?,
            _ => bytes::Bytes::new(),
        };
        dispatch(registry, &parts, target, query, format, body).await
    };
    match result.instrument(span).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(code = e.code, reason = e.reason, message = %e.message, "request refused");
            e.into_response()
        }
    }
}

fn sub_of(target: &Target) -> Result<Option<Subresource>, ApiError> {
    let def = &target.def;
    match target.subresource.as_deref() {
        None => Ok(None),
        Some("status") if def.has(Subresource::Status) => Ok(Some(Subresource::Status)),
        Some("scale") if def.has(Subresource::Scale) => Ok(Some(Subresource::Scale)),
        Some("finalize") if def.has(Subresource::Finalize) => Ok(Some(Subresource::Finalize)),
        Some("binding") if def.has(Subresource::Binding) => Ok(Some(Subresource::Binding)),
        Some(_) => Err(ApiError::no_route()),
    }
}

async fn dispatch(
    registry: Arc<Registry>,
    parts: &http::request::Parts,
    target: Target,
    query: Query,
    format: Format,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let def = target.def.clone();
    let ns = target.namespace.as_deref();
    let sub = sub_of(&target)?;
    let include = Include::parse(query.include_object.as_deref());
    let headers = &parts.headers;
    let media = body::media_type(headers);
    match (parts.method.clone(), target.name.as_deref()) {
        (Method::GET, None) => {
            let list = query.list_options(def.strategy.field_labels())?;
            if query.is_watch() {
                let req = WatchRequest {
                    def: def.clone(),
                    namespace: target.namespace.clone(),
                    list,
                    format,
                    include,
                    bookmarks: query.bookmarks(),
                    initial_events: query.initial_events(),
                    timeout: query.timeout().map(Duration::from_secs),
                    managed_fields: parts.extensions.get::<InProcess>().is_none(),
                };
                return Ok(watch::serve(registry, req).await);
            }
            let result = registry.list(&def, ns, &list).await?;
            Ok(encode::list_response(&def, &result, format, include))
        }
        (Method::GET, Some(name)) => {
            let obj = registry.get(&def, ns, name).await?;
            if sub == Some(Subresource::Scale) {
                return Ok(json_response(StatusCode::OK, &scale_of(&obj)));
            }
            Ok(encode::single_response(
                &def,
                &obj,
                format,
                include,
                StatusCode::OK,
                &[],
            ))
        }
        (Method::POST, Some(name)) if sub == Some(Subresource::Binding) => {
            let binding = body::decode(&media, &body)?;
            registry.bind(&def, ns, name, &binding, query.dry_run()?).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        (Method::POST, None) => {
            let obj = body::decode(&media, &body)?;
            let written = registry
                .create(&def, ns, obj, &query.write_options(user_agent(headers))?)
                .await?;
            Ok(encode::single_response(
                &def,
                &written.object,
                format,
                include,
                StatusCode::CREATED,
                &written.warnings,
            ))
        }
        (Method::PUT, Some(name)) => {
            let obj = body::decode(&media, &body)?;
            let opts = query.write_options(user_agent(headers))?;
            if sub == Some(Subresource::Scale) {
                let scale = registry.write_scale(&def, ns, name, &obj, None, &opts).await?;
                return Ok(json_response(StatusCode::OK, &scale));
            }
            let written = registry.update(&def, ns, name, obj, sub, &opts).await?;
            Ok(encode::single_response(
                &def,
                &written.object,
                format,
                include,
                StatusCode::OK,
                &written.warnings,
            ))
        }
        (Method::PATCH, Some(name)) => {
            let ty = PatchType::from_content_type(&media).ok_or_else(|| ApiError::unsupported_media_type(&media))?;
            if ty == PatchType::Apply && query.field_manager.as_deref().is_none_or(str::is_empty) {
                return Err(ApiError::bad_request(
                    "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests",
                ));
            }
            let patch = body::decode(&media, &body)?;
            let opts = query.write_options(user_agent(headers))?;
            if sub == Some(Subresource::Scale) {
                let scale = registry.write_scale(&def, ns, name, &patch, Some(ty), &opts).await?;
                return Ok(json_response(StatusCode::OK, &scale));
            }
            let written = registry.patch(&def, ns, name, ty, &patch, sub, &opts).await?;
            let code = if written.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(encode::single_response(
                &def,
                &written.object,
                format,
                include,
                code,
                &written.warnings,
            ))
        }
        (Method::DELETE, Some(name)) if sub.is_none() => {
            let opts = delete_options(&query, &media, &body)?;
            let obj = registry.delete(&def, ns, name, &opts).await?;
            Ok(encode::single_response(
                &def,
                &Cached::new(obj),
                format,
                include,
                StatusCode::OK,
                &[],
            ))
        }
        (Method::DELETE, None) => {
            let opts = delete_options(&query, &media, &body)?;
            let mut list = query.list_options(def.strategy.field_labels())?;
            list.limit = 0;
            let result = registry.list(&def, ns, &list).await?;
            let mut deleted = Vec::new();
            for obj in &result.items {
                let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
                let obj_ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
                match registry.delete(&def, obj_ns, name, &opts).await {
                    Ok(gone) => deleted.push(gone),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let body = json!({"kind": format!("{}List", def.kind), "apiVersion": def.api_version(), "metadata": {}, "items": deleted});
            Ok(json_response(StatusCode::OK, &body))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {})",
            parts.method,
            def.qualified()
        ))),
    }
}

fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok())
}

/// DeleteOptions from the body (JSON) and the query, the body winning as upstream does.
fn delete_options(query: &Query, media: &str, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let parsed = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        body::decode(media, body)?
    };
    let mut opts = DeleteOptions {
        grace_period: query.grace_period_seconds.as_deref().and_then(|g| g.parse().ok()),
        propagation: query.propagation_policy.clone(),
        dry_run: query.dry_run()?,
        ..Default::default()
    };
    if query.orphan_dependents.as_deref() == Some("true") && opts.propagation.is_none() {
        opts.propagation = Some("Orphan".into());
    }
    if let Some(g) = parsed.get("gracePeriodSeconds").and_then(Value::as_i64) {
        opts.grace_period = Some(g);
    }
    if let Some(p) = parsed.get("propagationPolicy").and_then(Value::as_str) {
        opts.propagation = Some(p.to_string());
    } else if parsed.get("orphanDependents") == Some(&json!(true)) {
        opts.propagation = Some("Orphan".into());
    }
    if parsed
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|d| d.iter().any(|v| v == "All"))
    {
        opts.dry_run = true;
    }
    opts.precondition_uid = parsed
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        .map(String::from);
    opts.precondition_rv = parsed
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .map(String::from);
    Ok(opts)
}
