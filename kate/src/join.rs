//! The agent's side of joining a cluster: check the server's CA against the join token, trade
//! the token for the node's certificates once, and keep them in the agent's data directory.

use std::path::Path;

use anyhow::{Context, bail};
use kate_apiserver::join::{JoinRequest, JoinResponse, ca_hash, parse_token};
use kube::config::Kubeconfig;

/// The node's credentials, saved after the first join.
const CREDENTIALS: &str = "agent-credentials.json";

/// The node's credentials: from `data_dir` when it joined before, else by joining `server`
/// with `token` (and saved).
pub async fn credentials(
    server: &str,
    token: &str,
    request: &JoinRequest,
    data_dir: &Path,
) -> anyhow::Result<JoinResponse> {
    let path = data_dir.join(CREDENTIALS);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()));
    }
    let (hash, secret) = parse_token(token).context("the join token is malformed (expected K10<hash>::<secret>)")?;
    let ca = fetch_ca(server).await?;
    if ca_hash(&ca) != hash {
        bail!("the server's CA does not match the join token: is {server} the right server?");
    }
    let client = client(server, &ca, None).await?;
    let request = JoinRequest {
        secret: secret.to_string(),
        ..request.clone()
    };
    let body = serde_json::to_vec(&request)?;
    let req = http::Request::post("/kate/v1/join")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)?;
    let text = client
        .request_text(req)
        .await
        .with_context(|| format!("joining {server} (is the token still valid?)"))?;
    let response: JoinResponse = serde_json::from_str(&text).context("reading the join response")?;
    write_private(&path, &serde_json::to_string(&response)?)?;
    Ok(response)
}

/// Fetches the CA certificate from the server without trusting it yet (it is checked against
/// the token's hash).
async fn fetch_ca(server: &str) -> anyhow::Result<String> {
    let mut config = kube::Config::new(server.parse().context("the server URL")?);
    config.accept_invalid_certs = true;
    let client = kube::Client::try_from(config)?;
    let req = http::Request::get("/cacerts").body(Vec::new())?;
    client
        .request_text(req)
        .await
        .with_context(|| format!("fetching the CA from {server}"))
}

/// A client of `server` trusting `ca`, with the node's client certificate when given.
pub async fn client(server: &str, ca: &str, cert: Option<(&str, &str)>) -> anyhow::Result<kube::Client> {
    let config = match cert {
        Some((cert, key)) => {
            let text = kate_apiserver::pki::kubeconfig(server, ca, cert, key);
            let kubeconfig = Kubeconfig::from_yaml(&text).context("the node's kubeconfig")?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => {
            let mut config = kube::Config::new(server.parse().context("the server URL")?);
            config.root_cert = Some(vec![pem_to_der(ca)?]);
            config
        }
    };
    Ok(kube::Client::try_from(config)?)
}

/// The DER bytes of the first certificate in a PEM text.
fn pem_to_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .context("the CA certificate is not valid PEM")
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
