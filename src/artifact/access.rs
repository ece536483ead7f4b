//! Credentials and trust for artifact repositories, read from the Application's Secret:
//! `username` + `password`, and a CA to trust in `ca.crt` (or `caFile`, Argo CD's and Flux's
//! key names). Never printed: `Debug` shows only whether each part is there.

use std::{collections::BTreeMap, fmt, sync::Arc};

use k8s_openapi::ByteString;

use super::helm_repo::fingerprint;

/// How to reach one repository: optional basic credentials and an optional extra CA.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ArtifactAccess {
    basic: Option<(String, String)>,
    ca_pem: Option<Vec<u8>>,
}

/// A CA that is not a PEM certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the Secret's CA is not a PEM certificate")]
    BadCa,
    #[error("the Secret's CA cannot be trusted: {0}")]
    Rejected(String),
}

/// The Secret's data lacks what its keys promise.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("the Secret has username but no password (or password but no username)")]
    HalfCredentials,
    #[error("the Secret's {key} is not UTF-8")]
    NotUtf8 { key: &'static str },
}

impl ArtifactAccess {
    /// Anonymous, the system's trust roots.
    pub fn anonymous() -> ArtifactAccess {
        ArtifactAccess::default()
    }

    pub fn basic(username: &str, password: &str) -> ArtifactAccess {
        ArtifactAccess { basic: Some((username.to_string(), password.to_string())), ca_pem: None }
    }

    /// From a Secret's data (see the module doc).
    pub fn from_secret_data(data: &BTreeMap<String, ByteString>) -> Result<ArtifactAccess, AccessError> {
        let text = |key: &'static str| -> Result<Option<String>, AccessError> {
            data.get(key)
                .map(|v| String::from_utf8(v.0.clone()).map_err(|_| AccessError::NotUtf8 { key }))
                .transpose()
        };
        let basic = match (text("username")?, text("password")?) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => return Err(AccessError::HalfCredentials),
        };
        let ca_pem = data.get("ca.crt").or_else(|| data.get("caFile")).map(|v| v.0.clone());
        Ok(ArtifactAccess { basic, ca_pem })
    }

    /// The same trust, no credentials (for a host other than the repository's).
    pub fn without_credentials(&self) -> ArtifactAccess {
        ArtifactAccess { basic: None, ca_pem: self.ca_pem.clone() }
    }

    pub fn username(&self) -> Option<&str> {
        self.basic.as_ref().map(|(u, _)| u.as_str())
    }

    pub fn password(&self) -> Option<&str> {
        self.basic.as_ref().map(|(_, p)| p.as_str())
    }

    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    /// `Basic <base64>` for the Authorization header.
    pub(crate) fn basic_auth_header(&self) -> Option<String> {
        use base64::Engine;
        let (u, p) = self.basic.as_ref()?;
        Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))))
    }

    /// Identifies the credentials and CA together (cache keys: one tenant's credentials never
    /// serve another's request). A hash, so no key holds a password.
    pub fn fingerprint(&self) -> u64 {
        let (u, p) = self.basic.as_ref().map_or(("", ""), |(u, p)| (u.as_str(), p.as_str()));
        fingerprint(&[u.as_bytes(), b"\0", p.as_bytes(), b"\0", self.ca_pem.as_deref().unwrap_or_default()])
    }

    /// Identifies the trust configuration alone (HTTP clients are shared per trust).
    pub(crate) fn tls_fingerprint(&self) -> u64 {
        fingerprint(&[self.ca_pem.as_deref().unwrap_or_default()])
    }

    /// The system's roots, plus the access's CA.
    pub(crate) fn tls_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(pem) = &self.ca_pem {
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().map_err(|_| TlsError::BadCa)?;
            if certs.is_empty() {
                return Err(TlsError::BadCa);
            }
            for cert in certs {
                roots.add(cert).map_err(|e| TlsError::Rejected(e.to_string()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rejected(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

impl fmt::Debug for ArtifactAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactAccess")
            .field("username", &self.username())
            .field("password", &self.basic.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca_pem.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()
    }

    #[test]
    fn credentials_never_show_and_distinct_credentials_never_share_a_key() {
        let a =
            ArtifactAccess::from_secret_data(&data(&[("username", "u"), ("password", "hunter2")])).unwrap();
        assert!(!format!("{a:?}").contains("hunter2"));
        let b = ArtifactAccess::from_secret_data(&data(&[("username", "u"), ("password", "other")])).unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), ArtifactAccess::anonymous().fingerprint());
        assert_eq!(a.tls_fingerprint(), ArtifactAccess::anonymous().tls_fingerprint());
        assert!(matches!(
            ArtifactAccess::from_secret_data(&data(&[("username", "u")])),
            Err(AccessError::HalfCredentials)
        ));
    }

    #[test]
    fn a_ca_that_is_not_pem_is_refused() {
        let a = ArtifactAccess::from_secret_data(&data(&[("ca.crt", "not a certificate")])).unwrap();
        assert!(matches!(a.tls_config(), Err(TlsError::BadCa)));
    }
}
