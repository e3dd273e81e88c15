//! go-plugin AutoMTLS: an ephemeral server certificate, and a server TLS configuration that requires the one
//! client certificate Terraform handed over in `PLUGIN_CLIENT_CERT`.
//!
//! Terraform (go-plugin) generates a fresh self-signed client certificate for each plugin it starts (ECDSA
//! P-521, flagged as a CA, SAN `localhost`) and passes it PEM-encoded in the environment; it pins the server
//! certificate that the plugin prints in the handshake line (as root, with server name `localhost`).
//!
//! The client certificate is checked by exact comparison of its DER bytes with the expected one (plus proof of
//! possession of its key, the TLS CertificateVerify signature). Ordinary WebPKI path validation does not fit:
//! the certificate is its own issuer and carries the CA flag, which WebPKI refuses for an end entity.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `PLUGIN_CLIENT_CERT` is not a PEM certificate.
    #[error("PLUGIN_CLIENT_CERT does not hold a PEM certificate")]
    ClientCertPem(#[source] rustls::pki_types::pem::Error),
    /// The server certificate could not be generated.
    #[error("cannot generate the server certificate")]
    Generate(#[source] rcgen::Error),
    /// rustls refused the configuration.
    #[error("cannot configure TLS")]
    Config(#[source] rustls::Error),
}

/// The crypto provider: ring for everything that needs randomness (key exchange, the server's signatures, the
/// TLS randoms), with aws-lc-rs's signature verification algorithms, which (unlike ring's) verify the ECDSA P-521
/// signatures of Terraform's client certificate.
///
/// Why not aws-lc-rs throughout: its random number generator seeds itself from CPU jitter entropy the first time
/// it is used in a process, which costs about 30 ms of CPU: more than everything else a provider process does
/// before it answers Terraform's first call. ring takes its randomness from `getrandom`. Verifying a signature
/// needs no randomness, so aws-lc-rs's generator is never started.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        signature_verification_algorithms: rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms,
        ..rustls::crypto::ring::default_provider()
    })
}

/// Reads the first certificate of a PEM text (the value of `PLUGIN_CLIENT_CERT`).
pub fn parse_client_cert(pem: &str) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(TlsError::ClientCertPem)
}

/// A freshly generated server certificate (self-signed, ECDSA P-256, SAN `localhost`) and its key.
#[derive(Debug)]
pub struct ServerIdentity {
    /// The certificate, DER.
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl ServerIdentity {
    /// Generates a new identity, valid from one minute ago for 30 days (a provider process lives for one
    /// Terraform command; TLS checks validity only at the handshake).
    pub fn generate() -> Result<ServerIdentity, TlsError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(TlsError::Generate)?;
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .map_err(TlsError::Generate)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "terraform-provider-hsw");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(60)).into();
        params.not_after = (now + std::time::Duration::from_secs(30 * 24 * 3600)).into();
        let cert = params.self_signed(&key).map_err(TlsError::Generate)?;
        Ok(ServerIdentity {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// A server configuration with this identity that requires exactly `client_cert` from clients, and offers
    /// ALPN `h2` (gRPC-Go clients since 1.67 refuse a server that negotiates no ALPN).
    pub fn server_config(
        &self,
        client_cert: CertificateDer<'static>,
    ) -> Result<ServerConfig, TlsError> {
        let provider = crypto_provider();
        let verifier = Arc::new(PinnedClientCert {
            expected: client_cert,
            algs: provider.signature_verification_algorithms,
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .map_err(TlsError::Config)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// Accepts exactly one client certificate.
#[derive(Debug)]
struct PinnedClientCert {
    expected: CertificateDer<'static>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a Go client then sends its one certificate whatever its issuer.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.expected.as_ref() {
            Ok(ClientCertVerified::assertion())
        } else {
            tracing::warn!(
                "refused a TLS client: its certificate is not the one Terraform announced"
            );
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_config_builds_and_pem_parses() {
        let id = ServerIdentity::generate().unwrap();
        // (P-521 client certificates, as Terraform makes them, are covered by tests/process.rs.)
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let client = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = parse_client_cert(&client.pem()).unwrap();
        assert_eq!(der.as_ref(), client.der().as_ref());
        let cfg = id.server_config(der).unwrap();
        assert_eq!(cfg.alpn_protocols, vec![b"h2".to_vec()]);
        assert!(parse_client_cert("not a cert").is_err());
    }

    #[test]
    fn verifies_p521_signatures() {
        use rustls::SignatureScheme::ECDSA_NISTP521_SHA512;
        assert!(crypto_provider()
            .signature_verification_algorithms
            .supported_schemes()
            .contains(&ECDSA_NISTP521_SHA512));
    }
}
