//! Client certificates on the TLS listener. rustls verifies the chain against the configured
//! CAs; this wrapper also reads the verified certificate's identity (CN, O or SAN) and keeps it
//! under the certificate's SHA-256, which is all Pingora's session digest exposes of the peer.

use breakwater_auth::{CertIdentity, IdentitySource};
use pingora::tls::{
    CertificateDer, ClientCertVerified, ClientCertVerifier, DigitallySignedStruct, RootCertStore,
    RusTlsError, SignatureScheme, UnixTime, WebPkiClientVerifier,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::DistinguishedName;
use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::sync::Arc;

/// Identities of verified client certificates by the certificate's SHA-256.
pub struct ClientIdentities {
    source: IdentitySource,
    by_digest: moka::sync::Cache<Vec<u8>, Arc<str>>,
}

impl ClientIdentities {
    /// An empty map taking identities from `source`.
    pub fn new(source: IdentitySource) -> Self {
        ClientIdentities {
            source,
            by_digest: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(std::time::Duration::from_secs(24 * 3600))
                .build(),
        }
    }

    /// The identity of the verified certificate with this SHA-256, if it had one.
    pub fn identity_of(&self, digest: &[u8]) -> Option<String> {
        self.by_digest.get(digest).map(|s| s.to_string())
    }

    fn record(&self, der: &[u8]) {
        match CertIdentity::from_der(der) {
            Ok(id) => {
                if let Some(name) = id.identity(self.source) {
                    self.by_digest
                        .insert(Sha256::digest(der).to_vec(), Arc::from(name.as_str()));
                }
            }
            Err(e) => {
                tracing::warn!("client certificate verified but its identity is unreadable: {e}")
            }
        }
    }
}

/// The verifier installed on the TLS listener.
#[derive(Debug)]
pub struct RecordingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    ids: Arc<ClientIdentities>,
}

impl std::fmt::Debug for ClientIdentities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientIdentities({} known)",
            self.by_digest.entry_count()
        )
    }
}

impl RecordingVerifier {
    /// Verifies against the CAs in `ca_pem`; `required`: a client without a certificate fails
    /// the handshake, else it continues as a client without one.
    pub fn new(ca_pem: &Path, required: bool, ids: Arc<ClientIdentities>) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        pingora::tls::load_ca_file_into_store(ca_pem, &mut roots)
            .map_err(|e| format!("client CA {}: {e}", ca_pem.display()))?;
        let builder = WebPkiClientVerifier::builder(Arc::new(roots));
        let builder = if required {
            builder
        } else {
            builder.allow_unauthenticated()
        };
        let inner = builder
            .build()
            .map_err(|e| format!("client CA {}: {e}", ca_pem.display()))?;
        Ok(RecordingVerifier { inner, ids })
    }
}

impl ClientCertVerifier for RecordingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, RusTlsError> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.ids.record(end_entity.as_ref());
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RusTlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RusTlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
