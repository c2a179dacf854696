//! Registry credentials from a pod's imagePullSecrets (`kubernetes.io/dockerconfigjson` and
//! the older `kubernetes.io/dockercfg`).

use base64::Engine;
use kate_runtime::Credentials;
use serde_json::Value;

use crate::env::{ConfigError, Sources};

/// The first credentials among the pod's pull secrets that name the image's registry.
pub async fn credentials(
    secrets: &[String],
    registry: &str,
    sources: &mut Sources,
) -> Result<Option<Credentials>, ConfigError> {
    for name in secrets {
        // A missing pull secret is skipped, as upstream does (the pull may still work anonymously).
        let Some(data) = sources.secret(name).await? else {
            continue;
        };
        let doc = data
            .get(".dockerconfigjson")
            .or_else(|| data.get(".dockercfg"))
            .and_then(|raw| serde_json::from_slice::<Value>(raw).ok());
        if let Some(creds) = doc.and_then(|doc| lookup(&doc, registry)) {
            return Ok(Some(creds));
        }
    }
    Ok(None)
}

/// Finds `registry` in a docker config (`{"auths": {HOST: …}}` or the bare map of dockercfg).
fn lookup(doc: &Value, registry: &str) -> Option<Credentials> {
    let auths = doc.get("auths").unwrap_or(doc).as_object()?;
    let matches = |key: &str| {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        host == registry || (registry == "docker.io" && host == "index.docker.io")
    };
    let entry = auths.iter().find(|(k, _)| matches(k))?.1;
    let field = |name: &str| entry.get(name).and_then(Value::as_str).map(str::to_string);
    if let (Some(username), Some(password)) = (field("username"), field("password")) {
        return Some(Credentials { username, password });
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(field("auth")?).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (username, password) = text.split_once(':')?;
    Some(Credentials {
        username: username.into(),
        password: password.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_credentials_by_registry() {
        let doc = json!({"auths": {
            "registry.local:5000": {"auth": base64::engine::general_purpose::STANDARD.encode("alice:s3cret")},
            "https://index.docker.io/v1/": {"username": "bob", "password": "pw"},
        }});
        let c = lookup(&doc, "registry.local:5000").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("alice", "s3cret"));
        assert_eq!(lookup(&doc, "docker.io").unwrap().username, "bob");
        assert!(lookup(&doc, "elsewhere.io").is_none());
    }
}
