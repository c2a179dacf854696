//! Authentication: client certificates and bearer tokens are accepted, anonymous requests get
//! 401 except on the public health and version endpoints.

use kate_e2e::Cluster;

/// A kube-rs client that trusts the cluster CA but presents the given credentials (or none).
async fn client_with(c: &Cluster, token: Option<String>) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&c.kubeconfig)?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    config.auth_info = Default::default();
    if let Some(token) = token {
        config.auth_info.token = Some(token.into());
    }
    Ok(kube::Client::try_from(config)?)
}

async fn status_of(client: &kube::Client, path: &str) -> anyhow::Result<u16> {
    let req = http::Request::get(path).body(Vec::new())?;
    Ok(client.send(req.map(kube::client::Body::from)).await?.status().as_u16())
}

#[tokio::test]
async fn anonymous_token_and_certificate() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let anonymous = client_with(&c, None).await?;
    for public in ["/version", "/healthz", "/livez", "/readyz"] {
        assert_eq!(status_of(&anonymous, public).await?, 200, "{public}");
    }
    for private in ["/api", "/apis", "/api/v1/namespaces", "/openapi/v3"] {
        assert_eq!(status_of(&anonymous, private).await?, 401, "{private}");
    }
    let wrong = client_with(&c, Some("not-the-token".into())).await?;
    assert_eq!(status_of(&wrong, "/api/v1/namespaces").await?, 401);
    let token = std::fs::read_to_string(c.dir.path().join("pki/admin.token"))?;
    let bearer = client_with(&c, Some(token.trim().to_string())).await?;
    assert_eq!(status_of(&bearer, "/api/v1/namespaces").await?, 200);
    let cert = c.client().await?;
    assert_eq!(status_of(&cert, "/api/v1/namespaces").await?, 200);
    let unauthorized = c.kubectl_cmd(&["get", "ns", "--token=bogus"]).output()?;
    let stderr = String::from_utf8_lossy(&unauthorized.stderr);
    assert!(
        stderr.contains("Unauthorized") || stderr.contains("provide credentials"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn kubeconfig_command_prints_the_admin_kubeconfig() -> anyhow::Result<()> {
    let c = Cluster::start()?;
    let out = std::process::Command::new(kate_e2e::kate_bin())
        .args(["kubeconfig", "--data-dir"])
        .arg(c.dir.path())
        .output()?;
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(&c.kubeconfig)?
    );
    Ok(())
}
