//! Running as a go-plugin plugin: the handshake with Terraform, the listener, TLS, and shutdown.
//!
//! # Modes
//!
//! - **Run by Terraform** (the normal case). Terraform sets `TF_PLUGIN_MAGIC_COOKIE`, `PLUGIN_PROTOCOL_VERSIONS`
//!   (which must offer 6) and `PLUGIN_CLIENT_CERT` (AutoMTLS, which every Terraform since 0.12 uses). The
//!   provider listens on a unix socket in a fresh private directory (mode 0700), serves gRPC over TLS that
//!   requires exactly that client certificate, and prints the handshake line
//!   `1|6|unix|<socket>|grpc|<server certificate, DER, base64 without padding>` on stdout. Stdout carries nothing
//!   else. SIGINT is ignored (Ctrl-C reaches Terraform, which calls `StopProvider`); the process exits on
//!   go-plugin's `Shutdown` call, on SIGTERM, or when its parent process goes away.
//! - **Without `PLUGIN_CLIENT_CERT`**: go-plugin would serve plaintext. This provider manages VMs as root, so it
//!   refuses instead (exit 1), except in `--debug` mode.
//! - **`--debug`**: for running the provider under a debugger. No cookie needed. It listens (plaintext: Terraform
//!   presents no certificate when it reattaches; the socket's directory is private to the user) and prints a
//!   `TF_REATTACH_PROVIDERS=...` line to paste into the shell that runs Terraform. It serves until Ctrl-C,
//!   ignoring go-plugin's `Shutdown` so that one provider process can serve several Terraform commands.
//! - **Run by hand without the cookie**: prints that it is a Terraform plugin and exits 1.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch, Notify};
use tonic::transport::server::Connected;
use tracing::{debug, error, info, warn};

use crate::framework::Provider;
use crate::logging;

use super::go_plugin as gp;
use super::server::{Controller, ProviderService, Stdio};
use super::tfplugin6 as pb;
use super::tls::{self, ServerIdentity};

/// The environment variable go-plugin checks to tell a plugin run by Terraform from one run by hand.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
/// Terraform's magic cookie value.
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// go-plugin's core protocol version (the first field of the handshake line).
pub const CORE_PROTOCOL_VERSION: u32 = 1;
/// The plugin protocol version this provider speaks (tfplugin6).
pub const PROTOCOL_VERSION: u32 = 6;
/// The largest gRPC message accepted or sent: 64 MiB, the cap Terraform's plugin client sets for the largest reply
/// it expects from a provider (`GetProviderSchema`, `maxRecvSize = 64 << 20`). A request carries at most four
/// values of [`crate::framework::MAX_VALUE_BYTES`] each (prior state, proposed state, configuration, planned
/// state), so this is no tighter than the per-value limit.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How the binary presents itself.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The provider's source address, e.g. `registry.terraform.io/hyperscaler/hsw` (used in `--debug` output).
    pub address: String,
    /// The binary's name, for messages.
    pub binary: String,
    /// The version, for `--version`.
    pub version: String,
}

impl ServeOptions {
    /// Options for the provider at `address` (`HOST/NAMESPACE/TYPE`); the binary name is derived from its type.
    pub fn new(address: impl Into<String>, version: impl Into<String>) -> ServeOptions {
        let address = address.into();
        let ty = address.rsplit('/').next().unwrap_or("provider").to_owned();
        ServeOptions {
            binary: format!("terraform-provider-{ty}"),
            address,
            version: version.into(),
        }
    }
}

/// What to do, from the command line and environment.
#[derive(Debug)]
enum Mode {
    Terraform {
        client_cert: rustls::pki_types::CertificateDer<'static>,
    },
    Debug,
}

/// Runs the provider as Terraform expects: reads the command line (`--debug`, `--help`, `--version`) and the
/// environment, then serves until told to stop. Returns the process exit code. See the module documentation.
pub fn serve<P: Provider>(provider: P, opts: &ServeOptions) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => match mode_from_env(opts) {
            Ok(m) => m,
            Err(code) => return code,
        },
        ["--debug"] => Mode::Debug,
        ["--version" | "-v"] => {
            println!("{} {}", opts.binary, opts.version);
            return ExitCode::SUCCESS;
        }
        ["--help" | "-h"] => {
            println!("{}", usage(opts));
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{}", usage(opts));
            return ExitCode::from(2);
        }
    };
    let default_level = matches!(mode, Mode::Debug).then_some(tracing::Level::INFO);
    logging::init(logging::level_from_env(default_level));

    // Two workers whatever the host: the work between libvirt calls (which run on the blocking pool) is small, and
    // one worker per core (tokio's default) would start dozens of threads on a workstation for each of the
    // several provider processes a Terraform command runs.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("provider")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}: cannot start the async runtime: {e}", opts.binary);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(Arc::new(provider), mode, opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "provider failed");
            eprintln!("{}: {e}", opts.binary);
            ExitCode::FAILURE
        }
    }
}

fn usage(opts: &ServeOptions) -> String {
    format!(
        "{bin} {ver}: the Terraform provider {addr}.\n\n\
         Terraform runs this program; it is not meant to be run by hand.\n\n\
         Usage:\n  {bin}            (run by Terraform)\n  {bin} --debug    serve for a debugger and print TF_REATTACH_PROVIDERS\n  {bin} --version\n",
        bin = opts.binary,
        ver = opts.version,
        addr = opts.address
    )
}

/// Checks the environment Terraform provides; on failure prints why and returns the exit code.
fn mode_from_env(opts: &ServeOptions) -> Result<Mode, ExitCode> {
    if std::env::var(MAGIC_COOKIE_KEY).ok().as_deref() != Some(MAGIC_COOKIE_VALUE) {
        eprintln!(
            "This binary is a Terraform plugin: {bin} is the provider {addr}, run by Terraform, and is not meant \
             to be executed directly.\nUse it from a Terraform configuration, or run `{bin} --debug` to attach \
             Terraform to it.",
            bin = opts.binary,
            addr = opts.address
        );
        return Err(ExitCode::FAILURE);
    }
    if let Ok(versions) = std::env::var("PLUGIN_PROTOCOL_VERSIONS") {
        let six = PROTOCOL_VERSION.to_string();
        if !versions.split(',').any(|v| v.trim() == six) {
            eprintln!(
                "{}: Terraform offered plugin protocol versions {versions:?}, but this provider speaks only \
                 version {six}. Use Terraform 1.0 or later.",
                opts.binary
            );
            return Err(ExitCode::FAILURE);
        }
    }
    let Some(pem) = std::env::var("PLUGIN_CLIENT_CERT")
        .ok()
        .filter(|s| !s.trim().is_empty())
    else {
        eprintln!(
            "{}: PLUGIN_CLIENT_CERT is not set. This provider only serves Terraform over mutually authenticated \
             TLS (go-plugin AutoMTLS, which every Terraform since 0.12 uses) and refuses plaintext. To debug, run \
             it with --debug.",
            opts.binary
        );
        return Err(ExitCode::FAILURE);
    };
    match tls::parse_client_cert(&pem) {
        Ok(client_cert) => Ok(Mode::Terraform { client_cert }),
        Err(e) => {
            eprintln!("{}: {e}.", opts.binary);
            Err(ExitCode::FAILURE)
        }
    }
}

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The socket directory or socket could not be made.
    #[error("cannot listen on a unix socket in {dir}: {source}")]
    Listen {
        /// Where.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Writing the handshake line failed.
    #[error("cannot write the handshake to stdout: {0}")]
    Handshake(#[source] std::io::Error),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// A private directory with the socket in it; removed when dropped.
struct SocketDir {
    dir: tempfile::TempDir,
    socket: PathBuf,
}

fn socket_dir() -> Result<SocketDir, ServeError> {
    use std::os::unix::fs::PermissionsExt as _;
    // go-plugin's PLUGIN_UNIX_SOCKET_DIR lets Terraform choose where plugins put their sockets.
    let base =
        std::env::var_os("PLUGIN_UNIX_SOCKET_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let err = |source| ServeError::Listen {
        dir: base.clone(),
        source,
    };
    let dir = tempfile::Builder::new()
        .prefix("terraform-provider-hsw-")
        .tempdir_in(&base)
        .map_err(err)?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    let socket = dir.path().join("plugin.sock");
    Ok(SocketDir { dir, socket })
}

fn bind(dir: &SocketDir) -> Result<UnixListener, ServeError> {
    use std::os::unix::fs::PermissionsExt as _;
    let err = |source| ServeError::Listen {
        dir: dir.dir.path().to_owned(),
        source,
    };
    let listener = UnixListener::bind(&dir.socket).map_err(err)?;
    std::fs::set_permissions(&dir.socket, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// A TLS connection over a unix socket, as tonic wants it.
struct TlsConn(tokio_rustls::server::TlsStream<UnixStream>);

impl Connected for TlsConn {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// Accepts connections and completes TLS handshakes off the accept loop; refused handshakes are logged.
fn tls_incoming(
    listener: UnixListener,
    config: rustls::ServerConfig,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsConn>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        debug!("TLS client accepted");
                        let _ = tx.send(Ok(TlsConn(tls))).await;
                    }
                    Ok(Err(e)) => warn!(error = %e, "refused a connection: TLS handshake failed"),
                    Err(_) => warn!("refused a connection: TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The base64 form of the server certificate in the handshake line (go-plugin decodes it with
/// `base64.RawStdEncoding`: standard alphabet, no padding).
pub fn handshake_line(socket: &Path, cert_der: &[u8]) -> String {
    let cert = base64::engine::general_purpose::STANDARD_NO_PAD.encode(cert_der);
    format!(
        "{CORE_PROTOCOL_VERSION}|{PROTOCOL_VERSION}|unix|{}|grpc|{cert}\n",
        socket.display()
    )
}

/// The `TF_REATTACH_PROVIDERS` value for a provider listening on `socket`.
pub fn reattach_json(address: &str, socket: &Path, pid: u32) -> String {
    serde_json::json!({
        address: {
            "Protocol": "grpc",
            "ProtocolVersion": PROTOCOL_VERSION,
            "Pid": pid,
            "Test": true,
            "Addr": {"Network": "unix", "String": socket.display().to_string()},
        }
    })
    .to_string()
}

async fn run(
    provider: Arc<dyn Provider>,
    mode: Mode,
    opts: &ServeOptions,
) -> Result<(), ServeError> {
    let dir = socket_dir()?;
    let listener = bind(&dir)?;

    let shutdown = Arc::new(Notify::new());
    let (closed_tx, closed_rx) = watch::channel(false);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("plugin", tonic_health::ServingStatus::Serving)
        .await;
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;

    let service = pb::provider_server::ProviderServer::new(ProviderService::new(provider))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let router = tonic::transport::Server::builder()
        .add_service(service)
        .add_service(gp::grpc_controller_server::GrpcControllerServer::new(
            Controller::new(shutdown.clone()),
        ))
        .add_service(gp::grpc_stdio_server::GrpcStdioServer::new(Stdio::new(
            closed_rx.clone(),
        )))
        .add_service(health);

    let mut stop_rx = closed_rx.clone();
    let stop = async move {
        let _ = stop_rx.wait_for(|c| *c).await;
    };
    let debug_mode = matches!(mode, Mode::Debug);
    let server = match mode {
        Mode::Terraform { client_cert } => {
            let identity = ServerIdentity::generate()?;
            let incoming = tls_incoming(listener, identity.server_config(client_cert)?);
            let line = handshake_line(&dir.socket, &identity.cert);
            let mut out = std::io::stdout().lock();
            out.write_all(line.as_bytes())
                .and_then(|()| out.flush())
                .map_err(ServeError::Handshake)?;
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop))
        }
        Mode::Debug => {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            let reattach = reattach_json(&opts.address, &dir.socket, std::process::id());
            println!(
                "{bin} is serving in debug mode. To attach Terraform, run it in a shell with:\n\n\
                 \tTF_REATTACH_PROVIDERS='{reattach}'\n\n\
                 Press Ctrl-C to stop.",
                bin = opts.binary
            );
            let _ = std::io::stdout().flush();
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop))
        }
    };
    info!(socket = %dir.socket.display(), debug_mode, "serving");

    let mut server = server;
    tokio::select! {
        result = &mut server => {
            // The server ended on its own: an error.
            return match result {
                Ok(r) => r.map_err(ServeError::from),
                Err(e) => Err(ServeError::Listen { dir: dir.dir.path().to_owned(), source: std::io::Error::other(e) }),
            };
        }
        why = wait_for_exit(debug_mode, shutdown) => info!(reason = why, "shutting down"),
    }
    closed_tx.send_replace(true);
    if tokio::time::timeout(Duration::from_secs(2), &mut server)
        .await
        .is_err()
    {
        debug!("connections still open after 2 s; exiting anyway");
        server.abort();
    }
    drop(dir);
    Ok(())
}

/// Completes when the provider should exit; returns why.
async fn wait_for_exit(debug: bool, shutdown: Arc<Notify>) -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let parent = std::os::unix::process::parent_id();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            () = shutdown.notified() => {
                if !debug {
                    return "Terraform called Shutdown";
                }
                info!("ignoring Shutdown in debug mode; press Ctrl-C to stop");
            }
            Some(()) = recv(&mut term) => return "SIGTERM",
            Some(()) = recv(&mut int) => {
                if debug {
                    return "Ctrl-C";
                }
                // Ctrl-C in a terminal reaches the whole process group; Terraform handles it (StopProvider).
                debug!("ignoring SIGINT: Terraform stops the provider");
            }
            _ = tick.tick(), if !debug => {
                if std::os::unix::process::parent_id() != parent {
                    return "Terraform exited";
                }
            }
        }
    }
}

async fn recv(sig: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match sig {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_and_reattach_formats() {
        let line = handshake_line(Path::new("/tmp/x/plugin.sock"), &[0xff, 0xfe]);
        assert_eq!(line, "1|6|unix|/tmp/x/plugin.sock|grpc|//4\n");
        let r: serde_json::Value = serde_json::from_str(&reattach_json(
            "registry.terraform.io/hyperscaler/hsw",
            Path::new("/s"),
            7,
        ))
        .unwrap();
        let p = &r["registry.terraform.io/hyperscaler/hsw"];
        assert_eq!(p["ProtocolVersion"], 6);
        assert_eq!(p["Addr"]["Network"], "unix");
        assert_eq!(p["Addr"]["String"], "/s");
        assert_eq!(p["Pid"], 7);
    }

    #[test]
    fn options_derive_the_binary_name() {
        let o = ServeOptions::new("registry.terraform.io/hyperscaler/hsw", "0.1.0");
        assert_eq!(o.binary, "terraform-provider-hsw");
    }
}
