//! Joining nodes: `kate token create` adds a join token, and `kate agent` presents it to
//! `POST /kate/v1/join` to get the node's client and kubelet serving certificates. A token is
//! `K10<sha256 of the CA certificate, hex>::<secret>`: the hash lets the agent check the CA it
//! fetches from the public `GET /cacerts` before it trusts the server with the secret.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pki::{Pki, PkiError};

/// The group of node identities, as upstream's `system:nodes`.
pub const NODES_GROUP: &str = "system:nodes";

/// What an agent asks for (the secret travels in the body: a bearer token the API server does
/// not know would be refused before the join handler sees it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    /// The secret part of the join token.
    pub secret: String,
    /// The node's name.
    pub node_name: String,
    /// The address the API server reaches the node's kubelet at.
    pub node_ip: IpAddr,
}

/// What a joined agent gets: the CA, its client certificate (`system:node:<name>`) and its
/// kubelet's serving certificate, all PEM.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    /// The cluster CA.
    pub ca: String,
    /// The node's client certificate.
    pub client_cert: String,
    /// Its key.
    pub client_key: String,
    /// The kubelet's serving certificate.
    pub serving_cert: String,
    /// Its key.
    pub serving_key: String,
}

/// The hex SHA-256 of a CA certificate in PEM, as join tokens carry it.
pub fn ca_hash(ca_pem: &str) -> String {
    Sha256::digest(ca_pem.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Splits a join token into the CA hash and the secret.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let (hash, secret) = token.trim().strip_prefix("K10")?.split_once("::")?;
    (hash.len() == 64 && !secret.is_empty()).then_some((hash, secret))
}

/// The join tokens of a server, one secret per line in `DIR/pki/join-tokens`.
#[derive(Debug, Clone)]
pub struct JoinTokens {
    path: PathBuf,
}

impl JoinTokens {
    /// The tokens kept in the PKI directory `pki_dir`.
    pub fn new(pki_dir: &Path) -> JoinTokens {
        JoinTokens {
            path: pki_dir.join("join-tokens"),
        }
    }

    /// Adds a token and returns it in full (with the CA hash).
    pub fn create(&self, ca_pem: &str) -> Result<String, PkiError> {
        use std::os::unix::fs::OpenOptionsExt;
        let secret = uuid::Uuid::new_v4().simple().to_string();
        let io = |source| PkiError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(io)?;
        writeln!(file, "{secret}").map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(format!("K10{}::{secret}", ca_hash(ca_pem)))
    }

    /// Whether `secret` is one of the tokens (read afresh, so new tokens work at once).
    pub fn accepts(&self, secret: &str) -> bool {
        let Ok(text) = fs::read_to_string(&self.path) else {
            return false;
        };
        !secret.is_empty()
            && text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .fold(false, |found, known| {
                    found | crate::auth::constant_time_eq(known.as_bytes(), secret.as_bytes())
                })
    }
}

/// Issues the certificates of a joining node.
pub fn issue(pki: &Pki, request: &JoinRequest) -> Result<JoinResponse, PkiError> {
    let (client_cert, client_key) =
        pki.issue_client_cert(&format!("system:node:{}", request.node_name), Some(NODES_GROUP))?;
    let (serving_cert, serving_key) = pki.issue_kubelet_serving_cert(request.node_ip, &request.node_name)?;
    Ok(JoinResponse {
        ca: pki.ca_cert_pem.clone(),
        client_cert,
        client_key,
        serving_cert,
        serving_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_created_checked_and_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = JoinTokens::new(dir.path());
        assert!(!tokens.accepts("anything"));
        let token = tokens.create("CA PEM").unwrap();
        let (hash, secret) = parse_token(&token).unwrap();
        assert_eq!(hash, ca_hash("CA PEM"));
        assert!(tokens.accepts(secret));
        assert!(!tokens.accepts(""));
        assert!(!tokens.accepts("wrong"));
        let second = tokens.create("CA PEM").unwrap();
        assert!(tokens.accepts(parse_token(&second).unwrap().1));
        assert!(tokens.accepts(secret), "older tokens stay valid");
        assert!(parse_token("K10abc::x").is_none());
        assert!(parse_token("nonsense").is_none());
    }

    #[test]
    fn joining_nodes_get_their_identity() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        let request = JoinRequest {
            secret: String::new(),
            node_name: "worker-1".into(),
            node_ip: "192.0.2.9".parse().unwrap(),
        };
        let response = issue(&pki, &request).unwrap();
        let der = rustls_pemfile::certs(&mut response.client_cert.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let user = crate::auth::user_from_certificate(&der).unwrap();
        assert_eq!(user.name, "system:node:worker-1");
        assert_eq!(user.groups, [NODES_GROUP]);
        assert_eq!(response.ca, pki.ca_cert_pem);
    }
}
