//! Authentication: who is calling, from the verified client certificate or a bearer token.

use x509_parser::prelude::*;

use crate::pki::{ADMIN_USER, MASTERS_GROUP};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name (certificate CN, or the token's user).
    pub name: String,
    /// Groups (certificate O fields, or the token's groups).
    pub groups: Vec<String>,
}

/// The client certificate a connection presented, already verified against the cluster CA by
/// the TLS layer; attached to every request on that connection.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Option<User>);

/// Reads the user out of a verified client certificate.
pub fn user_from_certificate(der: &[u8]) -> Option<User> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(String::from)
        .collect();
    Some(User { name, groups })
}

/// The static bearer tokens the server accepts.
pub struct Tokens {
    admin: String,
}

impl Tokens {
    /// Accepts the admin token.
    pub fn new(admin: String) -> Tokens {
        Tokens { admin }
    }

    /// The user a bearer token authenticates, if it is valid.
    pub fn authenticate(&self, token: &str) -> Option<User> {
        (!token.is_empty() && constant_time_eq(token.as_bytes(), self.admin.as_bytes())).then(|| User {
            name: ADMIN_USER.into(),
            groups: vec![MASTERS_GROUP.into(), "system:authenticated".into()],
        })
    }
}

/// Compares secrets without leaking where they differ through timing.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Paths anyone may read without credentials, as upstream's default `system:public-info-viewer`.
pub fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/version" | "/version/" | "/healthz" | "/livez" | "/readyz" | "/cacerts" | "/kate/v1/join"
    ) || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = Tokens::new("secret".into());
        assert_eq!(t.authenticate("secret").unwrap().name, ADMIN_USER);
        assert!(t.authenticate("secreT").is_none());
        assert!(t.authenticate("").is_none());
    }

    #[test]
    fn certificate_subject_becomes_user() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::Pki::load_or_create(dir.path(), &[]).unwrap();
        let (cert_pem, _) = pki.issue_client_cert("alice", Some("dev")).unwrap();
        let der = rustls_pemfile::certs(&mut cert_pem.as_bytes()).next().unwrap().unwrap();
        let user = user_from_certificate(&der).unwrap();
        assert_eq!(
            user,
            User {
                name: "alice".into(),
                groups: vec!["dev".into()]
            }
        );
    }

    #[test]
    fn public_paths() {
        assert!(is_public("/version"));
        assert!(is_public("/readyz/ping"));
        assert!(!is_public("/api"));
    }
}
