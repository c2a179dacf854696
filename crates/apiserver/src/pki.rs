//! The cluster's certificates: a CA made on first start, the serving certificate, the admin
//! client certificate, and the admin kubeconfig that carries them.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Errors while creating or loading certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Generating or parsing a certificate or key failed.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
}

/// The PEM material the server needs, loaded from (or created in) `DIR/pki`.
pub struct Pki {
    /// The CA certificate, PEM.
    pub ca_cert_pem: String,
    /// The serving certificate chain, PEM.
    pub server_cert_pem: String,
    /// The serving key, PEM.
    pub server_key_pem: String,
    /// The admin's bearer token.
    pub admin_token: String,
    /// The certificate the API server shows kubelets (logs, exec, port-forward), PEM.
    pub kubelet_client_cert_pem: String,
    /// Its key, PEM.
    pub kubelet_client_key_pem: String,
    ca_key: KeyPair,
    dir: PathBuf,
}

/// The name the admin client certificate and token authenticate as.
pub const ADMIN_USER: &str = "kubernetes-admin";
/// The group that authorizes everything (as upstream's `system:masters`).
pub const MASTERS_GROUP: &str = "system:masters";
/// The name the API server authenticates as to kubelets (as upstream's kubeadm names it).
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

impl Pki {
    /// Loads the CA from `dir` (creating it on first start) and issues a fresh serving
    /// certificate for `hosts`, so that a changed bind address never leaves a stale SAN.
    pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<Pki, PkiError> {
        create_dir(dir)?;
        let ca_key_path = dir.join("ca.key");
        let ca_cert_path = dir.join("ca.crt");
        let (ca_key, ca_cert_pem) = if ca_key_path.exists() && ca_cert_path.exists() {
            (KeyPair::from_pem(&read(&ca_key_path)?)?, read(&ca_cert_path)?)
        } else {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name = name("kate-ca", None);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            params.not_after = rcgen::date_time_ymd(2125, 1, 1);
            let cert = params.self_signed(&key)?;
            write_private(&ca_key_path, &key.serialize_pem())?;
            write(&ca_cert_path, &cert.pem())?;
            (key, cert.pem())
        };
        let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, &ca_key)?;

        let server_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name("kate-apiserver", None);
        params.subject_alt_names = server_sans(hosts);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_after = rcgen::date_time_ymd(2125, 1, 1);
        let server_cert = params.signed_by(&server_key, &issuer)?;

        let token_path = dir.join("admin.token");
        let admin_token = if token_path.exists() {
            read(&token_path)?.trim().to_string()
        } else {
            let token = uuid::Uuid::new_v4().simple().to_string();
            write_private(&token_path, &token)?;
            token
        };
        let mut pki = Pki {
            ca_cert_pem,
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            admin_token,
            kubelet_client_cert_pem: String::new(),
            kubelet_client_key_pem: String::new(),
            ca_key,
            dir: dir.to_path_buf(),
        };
        let (cert, key) = pki.issue_client_cert(KUBELET_CLIENT_USER, Some(MASTERS_GROUP))?;
        pki.kubelet_client_cert_pem = cert;
        pki.kubelet_client_key_pem = key;
        Ok(pki)
    }

    /// Issues the serving certificate of the kubelet of node `node_name`, reached at `node_ip`
    /// (the API server connects to its InternalIP and checks the certificate against the CA).
    pub fn issue_kubelet_serving_cert(&self, node_ip: IpAddr, node_name: &str) -> Result<(String, String), PkiError> {
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, &self.ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name(&format!("system:node:{node_name}"), Some("system:nodes"));
        params.subject_alt_names = vec![SanType::IpAddress(node_ip)];
        if let Ok(dns) = node_name.to_string().try_into() {
            params.subject_alt_names.push(SanType::DnsName(dns));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_after = rcgen::date_time_ymd(2125, 1, 1);
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issues a client certificate for `user`, optionally in `group`, signed by the cluster CA.
    pub fn issue_client_cert(&self, user: &str, group: Option<&str>) -> Result<(String, String), PkiError> {
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, &self.ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name(user, group);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_after = rcgen::date_time_ymd(2125, 1, 1);
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Writes an admin kubeconfig for `server_url` to `path`, reusing the admin client
    /// certificate kept in the PKI directory (issued on first use).
    pub fn write_admin_kubeconfig(&self, path: &Path, server_url: &str) -> Result<(), PkiError> {
        let cert_path = self.dir.join("admin.crt");
        let key_path = self.dir.join("admin.key");
        let (cert, key) = if cert_path.exists() && key_path.exists() {
            (read(&cert_path)?, read(&key_path)?)
        } else {
            let (cert, key) = self.issue_client_cert(ADMIN_USER, Some(MASTERS_GROUP))?;
            write(&cert_path, &cert)?;
            write_private(&key_path, &key)?;
            (cert, key)
        };
        write_private(path, &kubeconfig(server_url, &self.ca_cert_pem, &cert, &key))
    }
}

fn server_sans(hosts: &[String]) -> Vec<SanType> {
    let mut names: Vec<String> = vec![
        "localhost".into(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
        "127.0.0.1".into(),
    ];
    names.extend(hosts.iter().cloned());
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| match n.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => None,
            Ok(ip) => Some(SanType::IpAddress(ip)),
            Err(_) => n.try_into().ok().map(SanType::DnsName),
        })
        .collect()
}

/// A subject with one organization at most: rcgen keeps one value per attribute type, so a
/// certificate carries a single group (as kubelet and admin certificates need).
fn name(common_name: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = org {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}

/// Renders a kubeconfig with embedded credentials for one cluster, user and context.
pub fn kubeconfig(server_url: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kate\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {}\nusers:\n- name: kate-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: kate\n  context:\n    cluster: kate\n    user: kate-admin\n    namespace: default\ncurrent-context: kate\npreferences: {{}}\n",
        b64(ca_pem),
        b64(cert_pem),
        b64(key_pem)
    )
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.into(),
        source,
    })
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.into(),
        source,
    })
}

fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    fs::write(path, contents).map_err(|source| PkiError::Io {
        path: path.into(),
        source,
    })
}

/// Writes a secret readable by its owner only, replacing the file atomically so a crash never
/// leaves half a key behind.
fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io {
        path: path.into(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_persists_and_server_cert_is_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pki::load_or_create(dir.path(), &["10.0.0.1".into()]).unwrap();
        let b = Pki::load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_eq!(a.admin_token, b.admin_token);
        assert_ne!(a.server_cert_pem, b.server_cert_pem);
    }

    #[test]
    fn kubelet_certificates_name_the_node_and_the_api_server() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let (cert, _key) = pki.issue_kubelet_serving_cert(ip, "node-a").unwrap();
        let der = rustls_pemfile::certs(&mut cert.as_bytes()).next().unwrap().unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        let sans = parsed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .clone();
        use x509_parser::extensions::GeneralName;
        assert!(sans.contains(&GeneralName::IPAddress(&[192, 0, 2, 7])), "{sans:?}");
        assert!(sans.contains(&GeneralName::DNSName("node-a")), "{sans:?}");
        let der = rustls_pemfile::certs(&mut pki.kubelet_client_cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let user = crate::auth::user_from_certificate(&der).unwrap();
        assert_eq!(user.name, KUBELET_CLIENT_USER);
        assert_eq!(user.groups, [MASTERS_GROUP]);
    }

    #[test]
    fn kubeconfig_embeds_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        let path = dir.path().join("kubeconfig.yaml");
        pki.write_admin_kubeconfig(&path, "https://127.0.0.1:6443").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("server: https://127.0.0.1:6443"));
        assert!(text.contains("client-key-data: "));
    }
}
