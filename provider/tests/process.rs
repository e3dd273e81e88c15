//! The real `terraform-provider-hsw` binary as a process: the magic cookie, the handshake line, AutoMTLS (no
//! client certificate and a wrong one refused, the right one served), health, `Shutdown`, and `--debug`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use terraform_provider_hsw::protocol::tfplugin6 as pb;
use terraform_provider_hsw::protocol::tfplugin6::provider_client::ProviderClient;
use tonic::transport::{Channel, Endpoint};

const BIN: &str = env!("CARGO_BIN_EXE_terraform-provider-hsw");
const COOKIE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// A client identity like the one go-plugin makes: self-signed ECDSA P-521, CA flag, SAN localhost.
struct ClientId {
    pem: String,
    der: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

fn client_id() -> ClientId {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let cert = params.self_signed(&key).unwrap();
    ClientId {
        pem: cert.pem(),
        der: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
    }
}

/// A provider process; killed when dropped.
struct Plugin {
    child: Child,
    socket: PathBuf,
    server_cert: CertificateDer<'static>,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(client_pem: &str) -> Plugin {
    let mut child = Command::new(BIN)
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

fn tls_config(
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

async fn channel(
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

trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> IoStream for T {}

async fn get_schema(
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

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn without_the_cookie_it_says_it_is_a_plugin() {
    let out = Command::new(BIN)
        .env_remove("TF_PLUGIN_MAGIC_COOKIE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Terraform plugin") && err.contains("run by Terraform"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn without_a_client_certificate_or_protocol_6_it_refuses() {
    let out = Command::new(BIN)
        .env("TF_PLUGIN_MAGIC_COOKIE", COOKIE)
        .env_remove("PLUGIN_CLIENT_CERT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PLUGIN_CLIENT_CERT"));
    assert!(out.stdout.is_empty(), "no handshake line");

    let out = Command::new(BIN)
        .env("TF_PLUGIN_MAGIC_COOKIE", COOKIE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "4,5")
        .env("PLUGIN_CLIENT_CERT", client_id().pem)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Terraform 1.0 or later"));
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_requires_exactly_the_announced_certificate() {
    let me = client_id();
    let mut plugin = start(&me.pem);

    // The socket is in a private directory.
    let dir_mode = std::fs::metadata(plugin.socket.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);

    // No client certificate: refused.
    let err = get_schema(&plugin.socket, Some(tls_config(&plugin.server_cert, None)))
        .await
        .unwrap_err();
    // The client sees a TLS alert or a broken pipe, depending on timing; `tls_refusals_are_server_side` checks
    // the server's reasons.
    println!("without a certificate: {err}");
    // Another certificate of the same shape: refused.
    let other = client_id();
    let err = get_schema(
        &plugin.socket,
        Some(tls_config(&plugin.server_cert, Some(&other))),
    )
    .await
    .unwrap_err();
    println!("with another certificate: {err}");
    // Plaintext: refused.
    assert!(get_schema(&plugin.socket, None).await.is_err());
    // The announced certificate: served.
    let schema = get_schema(
        &plugin.socket,
        Some(tls_config(&plugin.server_cert, Some(&me))),
    )
    .await
    .unwrap();
    assert!(schema.provider.is_some());

    // Health, as go-plugin checks it.
    let ch = channel(
        &plugin.socket,
        Some(tls_config(&plugin.server_cert, Some(&me))),
    )
    .await
    .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "plugin".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        status.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Shutdown ends the process and removes the socket directory.
    let mut ctl = terraform_provider_hsw::protocol::go_plugin::grpc_controller_client::GrpcControllerClient::new(ch);
    ctl.shutdown(terraform_provider_hsw::protocol::go_plugin::Empty {})
        .await
        .unwrap();
    let status =
        wait_exit(&mut plugin.child, Duration::from_secs(5)).expect("exits after Shutdown");
    assert!(status.success());
    assert!(!plugin.socket.parent().unwrap().exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn debug_mode_prints_reattach_and_serves_plaintext() {
    let mut child = Command::new(BIN)
        .arg("--debug")
        .env_remove("TF_PLUGIN_MAGIC_COOKIE")
        .env("TF_LOG_PROVIDER", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut reattach = None;
    for _ in 0..20 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(rest) = line.trim().strip_prefix("TF_REATTACH_PROVIDERS='") {
            reattach = Some(rest.trim_end_matches('\'').to_owned());
            break;
        }
    }
    let reattach: serde_json::Value =
        serde_json::from_str(&reattach.expect("a TF_REATTACH_PROVIDERS line")).unwrap();
    let p = &reattach["registry.terraform.io/hyperscaler/hsw"];
    assert_eq!(p["Protocol"], "grpc");
    assert_eq!(p["ProtocolVersion"], 6);
    assert_eq!(p["Pid"], child.id());
    assert_eq!(p["Addr"]["Network"], "unix");
    let socket = PathBuf::from(p["Addr"]["String"].as_str().unwrap());
    let schema = get_schema(&socket, None).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(schema.unwrap().provider.is_some());
}

/// The TLS layer in-process, to see the server's reason for each refusal (the client only sees an alert or a
/// closed connection, depending on timing).
#[tokio::test]
async fn tls_refusals_are_server_side() {
    use terraform_provider_hsw::protocol::tls::ServerIdentity;
    let id = ServerIdentity::generate().unwrap();
    let me = client_id();
    let acceptor =
        tokio_rustls::TlsAcceptor::from(Arc::new(id.server_config(me.der.clone()).unwrap()));

    async fn handshake(
        acceptor: &tokio_rustls::TlsAcceptor,
        client: rustls::ClientConfig,
    ) -> Result<(), String> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let server = async {
            use tokio::io::AsyncWriteExt as _;
            let mut s = acceptor.accept(a).await.map_err(|e| e.to_string())?;
            s.write_all(b"ok").await.map_err(|e| e.to_string())?;
            s.flush().await.map_err(|e| e.to_string())
        };
        let client = async {
            use tokio::io::AsyncReadExt as _;
            if let Ok(mut c) = connector
                .connect(ServerName::try_from("localhost").unwrap(), b)
                .await
            {
                let mut buf = [0u8; 2];
                let _ = c.read_exact(&mut buf).await;
            }
        };
        let (server, ()) = tokio::join!(server, client);
        server
    }

    let err = handshake(&acceptor, tls_config(&id.cert, None))
        .await
        .unwrap_err();
    assert!(err.contains("no certificates"), "{err}");
    let err = handshake(&acceptor, tls_config(&id.cert, Some(&client_id())))
        .await
        .unwrap_err();
    assert!(err.contains("ApplicationVerificationFailure"), "{err}");
    handshake(&acceptor, tls_config(&id.cert, Some(&me)))
        .await
        .unwrap();
}
