//! Request bodies: size limit and decoding by Content-Type.

use axum::body::Body;
use http::{HeaderMap, header};
use serde_json::Value;

use crate::error::ApiError;

/// Upstream's limit on a request body.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// The Content-Type's media type, lowercased without parameters (JSON when absent, as
/// `kubectl scale --current-replicas` sends no Content-Type at all).
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .filter(|ct| !ct.is_empty())
        .unwrap_or_else(|| "application/json".into())
}

/// Reads the whole body, refusing more than [`MAX_BODY`] bytes with 413.
pub async fn read(body: Body) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::too_large(format!("the request body exceeds the limit of {MAX_BODY} bytes")))
}

/// Decodes a JSON or YAML document into a value.
pub fn decode(media_type: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    match media_type {
        "application/json"
        | "application/merge-patch+json"
        | "application/json-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/apply-patch+json" => serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}"))),
        "application/yaml" | "application/apply-patch+yaml" => {
            let text = std::str::from_utf8(bytes).map_err(|_| ApiError::bad_request("the YAML body is not UTF-8"))?;
            serde_saphyr::from_str::<Value>(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        }
        kate_protobuf::CONTENT_TYPE => match kate_protobuf::decode(bytes) {
            Ok(decoded) => Ok(decoded.object),
            Err(kate_protobuf::DecodeError::UnknownKind { api_version, kind }) => Err(
                ApiError::unsupported_media_type(&format!("{media_type} for {api_version}/{kind}")),
            ),
            Err(e) => Err(ApiError::bad_request(format!("error decoding protobuf body: {e}"))),
        },
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_json_and_yaml() {
        assert_eq!(decode("application/json", br#"{"a":1}"#).unwrap()["a"], 1);
        assert_eq!(
            decode("application/apply-patch+yaml", b"a: 1\nb: [x]\n").unwrap()["b"][0],
            "x"
        );
        assert_eq!(decode("application/json", b"{bad").unwrap_err().code, 400);
        assert_eq!(decode("text/plain", b"x").unwrap_err().code, 415);
    }
}
