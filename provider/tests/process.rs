//! The real `terraform-provider-hsw` binary as a process: the magic cookie, the handshake line, AutoMTLS (no
//! client certificate and a wrong one refused, the right one served), health, `Shutdown`, and `--debug`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/plugin.rs"]
mod plugin;

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugin::{channel, client_id, get_schema, other_client_id, start, tls_config, BIN, COOKIE};
use rustls::pki_types::ServerName;

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
    let other = other_client_id();
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
    let err = handshake(&acceptor, tls_config(&id.cert, Some(&other_client_id())))
        .await
        .unwrap_err();
    assert!(err.contains("ApplicationVerificationFailure"), "{err}");
    handshake(&acceptor, tls_config(&id.cert, Some(&me)))
        .await
        .unwrap();
}
