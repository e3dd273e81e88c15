//! A client of the real `terraform-provider-hsw` process, as Terraform is: the go-plugin handshake with
//! AutoMTLS, a gRPC channel over the unix socket, GetProviderSchema. Shared by `tests/process.rs` and
//! `benches/handshake.rs` (included with `#[path]`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use terraform_provider_hsw::protocol::tfplugin6 as pb;
use terraform_provider_hsw::protocol::tfplugin6::provider_client::ProviderClient;
use tonic::transport::{Channel, Endpoint};

pub const BIN: &str = env!("CARGO_BIN_EXE_terraform-provider-hsw");
pub const COOKIE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// A client identity like the one go-plugin makes: self-signed ECDSA P-521, CA flag, SAN localhost.
pub struct ClientId {
    pub pem: String,
    pub der: CertificateDer<'static>,
    pub key: PrivatePkcs8KeyDer<'static>,
}

/// The client identity (fixed files: `certs/client-a.*.pem`, made once with
/// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-521 -nodes -days 36500 -subj /CN=localhost
/// -addext subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:TRUE
/// -addext extendedKeyUsage=clientAuth,serverAuth -addext keyUsage=critical,digitalSignature,keyCertSign`;
/// the provider's own crypto backend, ring, cannot make P-521 keys).
pub fn client_id() -> ClientId {
    fixed_id(
        include_str!("certs/client-a.crt.pem"),
        include_str!("certs/client-a.key.pem"),
    )
}

/// Another identity of the same shape (`certs/client-b.*.pem`).
pub fn other_client_id() -> ClientId {
    fixed_id(
        include_str!("certs/client-b.crt.pem"),
        include_str!("certs/client-b.key.pem"),
    )
}

fn fixed_id(cert_pem: &str, key_pem: &str) -> ClientId {
    use rustls::pki_types::pem::PemObject as _;
    ClientId {
        pem: cert_pem.to_owned(),
        der: CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap(),
        key: PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
    }
}

/// A provider process; killed when dropped.
pub struct Plugin {
    pub child: Child,
    pub socket: PathBuf,
    pub server_cert: CertificateDer<'static>,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(client_pem: &str) -> Plugin {
    start_bin(BIN, client_pem)
}

/// [`start`] for another build of the provider (the benchmark compares builds).
pub fn start_bin(bin: &str, client_pem: &str) -> Plugin {
    let mut child = Command::new(bin)
        .env("TF_PLUGIN_MAGIC_COOKIE", COOKIE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
        .env("PLUGIN_CLIENT_CERT", client_pem)
        .env_remove("TF_LOG")
        .env_remove("TF_LOG_PROVIDER")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let parts: Vec<&str> = line.trim_end().split('|').collect();
    assert_eq!(parts.len(), 6, "handshake line: {line:?}");
    assert_eq!(&parts[..3], ["1", "6", "unix"]);
    assert_eq!(parts[4], "grpc");
    assert!(!parts[5].ends_with('='), "no base64 padding");
    let der = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(parts[5])
        .unwrap();
    Plugin {
        child,
        socket: PathBuf::from(parts[3]),
        server_cert: CertificateDer::from(der),
    }
}

pub fn tls_config(
    server_cert: &CertificateDer<'static>,
    client: Option<&ClientId>,
) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_cert.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match client {
        Some(c) => builder
            .with_client_auth_cert(vec![c.der.clone()], PrivateKeyDer::Pkcs8(c.key.clone_key()))
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    cfg
}

pub async fn channel(
    socket: &Path,
    tls: Option<rustls::ClientConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_owned();
    let tls = tls.map(|c| tokio_rustls::TlsConnector::from(Arc::new(c)));
    Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_| {
            let (socket, tls) = (socket.clone(), tls.clone());
            async move {
                let unix = tokio::net::UnixStream::connect(&socket).await?;
                let io: Box<dyn IoStream> = match tls {
                    Some(tls) => Box::new(
                        tls.connect(ServerName::try_from("localhost").unwrap(), unix)
                            .await?,
                    ),
                    None => Box::new(unix),
                };
                Ok::<_, std::io::Error>(TokioIo::new(io))
            }
        }))
        .await
}

pub trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> IoStream for T {}

pub async fn get_schema(
    socket: &Path,
    tls: Option<rustls::ClientConfig>,
) -> Result<pb::get_provider_schema::Response, String> {
    let ch = channel(socket, tls)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let mut client = ProviderClient::new(ch);
    let call = client.get_provider_schema(pb::get_provider_schema::Request {});
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(status)) => Err(format!("rpc: {status}")),
        Err(_) => Err("timed out".into()),
    }
}
