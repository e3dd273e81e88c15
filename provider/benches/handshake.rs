//! Whole-process benchmark of what Terraform pays to use the provider: start the binary, the
//! go-plugin handshake with AutoMTLS, a gRPC connection and GetProviderSchema — plus the provider's
//! peak memory (VmHWM) after answering. Goals: ≤ 20 ms and ≤ 20 MB.
//!
//! Baselines measured in the same run, so the figures are ratios:
//! - time: the same binary started without the magic cookie (it prints a message and exits), i.e. the
//!   bare cost of starting this process;
//! - memory: an idle Go process, `terraform console` in an empty directory (HashiCorp's trivial Go
//!   provider idles at about 15 MB).
//!
//! Run: `cargo bench -p terraform-provider-hsw --bench handshake`. `HSW_BENCH_PROVIDER=/path/to/binary` measures
//! another build of the provider instead of this one (to compare builds in the same conditions).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/plugin.rs"]
mod plugin;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 40;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing else useful: one quick run there.
    let runs = if std::env::args().any(|a| a == "--bench") {
        RUNS
    } else {
        3
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let id = plugin::client_id();
    let bin = std::env::var("HSW_BENCH_PROVIDER").unwrap_or_else(|_| plugin::BIN.to_owned());

    // Bare start and full handshake alternate, so that a change in the machine's load hits both alike.
    let mut bare = Vec::new();
    let mut full = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let status = Command::new(&bin)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        bare.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(status.code(), Some(1));

        let t = Instant::now();
        let p = plugin::start_bin(&bin, &id.pem);
        let tls = plugin::tls_config(&p.server_cert, Some(&id));
        let schema = rt
            .block_on(plugin::get_schema(&p.socket, Some(tls)))
            .unwrap();
        full.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(!schema.resource_schemas.is_empty());
        rss.push(vm_hwm_kib(p.child.id()).unwrap_or(0) as f64 / 1024.0);
        drop(p);
    }

    let go_idle = go_idle_mib();

    let (b, f, r) = (median(bare), median(full), median(rss));
    println!("handshake + GetProviderSchema: median {f:.2} ms over {runs} runs (goal <= 20 ms)");
    println!(
        "  baseline, the same binary started and exiting at once: median {b:.2} ms; ratio {:.2}x",
        f / b
    );
    println!("provider peak RSS after GetProviderSchema: median {r:.1} MiB (goal <= 20 MB)");
    match go_idle {
        Some(g) => println!(
            "  baseline, idle Go process (`terraform console`): {g:.1} MiB; ratio {:.2}x",
            r / g
        ),
        None => println!("  baseline skipped: no terraform on PATH"),
    }
    // Figures from a loaded machine are upper bounds: say how loaded it was.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        println!("load average (1, 5, 15 min): {}", load.join(", "));
    }
}

/// Peak RSS of an idle `terraform console` (a Go process doing nothing), in MiB.
fn go_idle_mib() -> Option<f64> {
    let dir = tempfile::tempdir().ok()?;
    let mut child = Command::new("terraform")
        .arg("console")
        .current_dir(dir.path())
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_CLI_CONFIG_FILE", dir.path().join("none.tfrc"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(1500));
    let kib = vm_hwm_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    kib.map(|k| k as f64 / 1024.0)
}
