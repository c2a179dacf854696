//! Bad requests get a Kubernetes `Status` with the upstream code and reason, and change nothing.

use kate_e2e::Cluster;
use serde_json::Value;

/// Sends a raw request; returns (status code, parsed body, Warning headers).
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> anyhow::Result<(u16, Value, Vec<String>)> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body)?;
    let resp = client.send(req.map(kube::client::Body::from)).await?;
    let code = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(String::from)
        .collect();
    let bytes = http_body_util::BodyExt::collect(resp.into_body()).await?.to_bytes();
    Ok((code, serde_json::from_slice(&bytes).unwrap_or(Value::Null), warnings))
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn bad_requests_get_statuses() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let client = c.client().await?;
    type Case = (&'static str, String, &'static str, Vec<u8>, u16, &'static str);
    let cases: Vec<Case> = vec![
        (
            "POST",
            CMS.into(),
            "application/json",
            b"{not json".to_vec(),
            400,
            "BadRequest",
        ),
        (
            "POST",
            CMS.into(),
            "application/yaml",
            b"a: [unclosed".to_vec(),
            400,
            "BadRequest",
        ),
        (
            "POST",
            CMS.into(),
            "application/json",
            br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#.to_vec(),
            400,
            "BadRequest",
        ),
        (
            "POST",
            CMS.into(),
            "application/json",
            br#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}"#.to_vec(),
            400,
            "BadRequest",
        ),
        (
            "POST",
            CMS.into(),
            "application/json",
            br#"{"metadata":{"name":"Not_Valid"}}"#.to_vec(),
            422,
            "Invalid",
        ),
        (
            "POST",
            CMS.into(),
            "application/json",
            br#"{"metadata":{"name":"x"},"data":{"k":7}}"#.to_vec(),
            400,
            "BadRequest",
        ),
        (
            "POST",
            format!("{CMS}?fieldValidation=Strict"),
            "application/json",
            br#"{"metadata":{"name":"x"},"bogus":1}"#.to_vec(),
            400,
            "BadRequest",
        ),
        (
            "POST",
            CMS.into(),
            "text/plain",
            b"hello".to_vec(),
            415,
            "UnsupportedMediaType",
        ),
        (
            "POST",
            CMS.into(),
            "application/json",
            vec![b' '; 3 * 1024 * 1024 + 10],
            413,
            "RequestEntityTooLarge",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/widgets".into(),
            "application/json",
            vec![],
            404,
            "NotFound",
        ),
        (
            "POST",
            "/api/v1/namespaces/missing/configmaps".into(),
            "application/json",
            br#"{"metadata":{"name":"x"}}"#.to_vec(),
            404,
            "NotFound",
        ),
        (
            "PUT",
            format!("{CMS}/nope"),
            "application/json",
            br#"{"metadata":{"name":"nope"}}"#.to_vec(),
            404,
            "NotFound",
        ),
        (
            "PATCH",
            format!("{CMS}/nope"),
            "application/merge-patch+json",
            b"{}".to_vec(),
            404,
            "NotFound",
        ),
        (
            "GET",
            format!("{CMS}?watch=true&resourceVersion=abc"),
            "application/json",
            vec![],
            200,
            "",
        ),
        (
            "GET",
            format!("{CMS}?labelSelector=a%20in%20(x"),
            "application/json",
            vec![],
            400,
            "BadRequest",
        ),
        (
            "GET",
            format!("{CMS}?fieldSelector=spec.bogus%3D1"),
            "application/json",
            vec![],
            400,
            "BadRequest",
        ),
    ];
    for (method, path, ct, body, code, reason) in cases {
        let (got, status, _) = send(&client, method, &path, ct, body).await?;
        assert_eq!(got, code, "{method} {path} ({ct}): {status}");
        if code >= 400 {
            assert_eq!(status["kind"], "Status", "{method} {path}: {status}");
            assert_eq!(status["reason"], reason, "{method} {path}: {status}");
            assert_eq!(status["code"], code);
        }
    }
    let (_, list, _) = send(&client, "GET", CMS, "application/json", vec![]).await?;
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(0),
        "no bad request may store anything: {list}"
    );
    Ok(())
}

#[tokio::test]
async fn stale_updates_and_warnings() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let client = c.client().await?;
    let (code, created, warnings) = send(
        &client,
        "POST",
        CMS,
        "application/json",
        br#"{"metadata":{"name":"w"},"extra":true}"#.to_vec(),
    )
    .await?;
    assert_eq!(code, 201);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("unknown field \\\"extra\\\"") || w.contains("unknown field \"extra\"")),
        "{warnings:?}"
    );
    let rv: i64 = created["metadata"]["resourceVersion"].as_str().unwrap_or("0").parse()?;
    let stale = format!(
        r#"{{"metadata":{{"name":"w","resourceVersion":"{}"}},"data":{{"a":"b"}}}}"#,
        rv - 1
    );
    let (code, status, _) = send(
        &client,
        "PUT",
        &format!("{CMS}/w"),
        "application/json",
        stale.into_bytes(),
    )
    .await?;
    assert_eq!((code, status["reason"].as_str()), (409, Some("Conflict")), "{status}");
    let (code, status, _) = send(
        &client,
        "PUT",
        &format!("{CMS}/other"),
        "application/json",
        br#"{"metadata":{"name":"w"}}"#.to_vec(),
    )
    .await?;
    assert_eq!(code, 400, "{status}");
    let (code, status, _) = send(
        &client,
        "PATCH",
        &format!("{CMS}/w"),
        "application/json-patch+json",
        br#"[{"op":"test","path":"/data/a","value":"zzz"}]"#.to_vec(),
    )
    .await?;
    assert!(code == 422 || code == 400, "{status}");
    Ok(())
}
