//! The hosts' rules (`hsw_core::config::hosts_rules`): one test per rule, on the embedded default made into a
//! two-host config, and a generated 16-host config that validates.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hsw_core::config::{validate_str, DEFAULT_CONFIG};
use hsw_core::diag::{Diagnostic, Severity};

/// The default's `host` block as `hosts` with a local `ws1` and a remote `ws2`, everything placed on ws1
/// (the GPU too), except the compute nodes spread over both. `extra` replaces text after that.
fn two_hosts(extra: &[(&str, &str)]) -> String {
    let mut s = DEFAULT_CONFIG.to_owned();
    for (from, to) in [
        (
            "host:\n  libvirt_uri: qemu:///system\n  pool_dir: /var/lib/hsw/images\n  accelerator: auto\n  gpu_backend: simulated\n",
            "hosts:\n  ws1:\n    libvirt_uri: qemu:///system\n    gpu_backend: simulated\n  ws2:\n    libvirt_uri: qemu+ssh://root@10.9.0.2/system?known_hosts=/etc/hsw/ws2.known_hosts\n    gpu_backend: simulated\n",
        ),
        ("        mig_capable: true\n", "        mig_capable: true\n        host: ws1\n"),
        ("      ip_address: 192.168.100.10\n", "      ip_address: 192.168.100.10\n      host: ws1\n"),
        ("      ip_range: 192.168.100.11-12\n", "      ip_range: 192.168.100.11-12\n      hosts: [ws1]\n"),
        ("      ip_address: 192.168.200.10\n", "      ip_address: 192.168.200.10\n      host: ws2\n"),
        ("        ip_range: 192.168.200.11\n", "        ip_range: 192.168.200.11\n        hosts: [ws1]\n"),
    ]
    .iter()
    .chain(extra)
    {
        assert!(s.contains(from), "no {from:?} in:\n{s}");
        s = s.replacen(from, to, 1);
    }
    s
}

fn findings(src: &str) -> Vec<Diagnostic> {
    validate_str(src).report.diagnostics
}

#[track_caller]
fn expect_error(src: &str, rule: &str, path: &str) -> Diagnostic {
    let all = findings(src);
    let d = all
        .iter()
        .find(|d| d.rule == rule && d.path == path)
        .unwrap_or_else(|| panic!("expected {rule} at {path}, got:\n{all:#?}"));
    assert_eq!(d.severity, Severity::Error, "{d:?}");
    assert!(d.line.is_some(), "no position: {d:?}");
    assert!(d.hint.is_some(), "no fix: {d:?}");
    d.clone()
}

#[test]
fn two_placed_hosts_are_valid_and_one_entry_is_the_single_host() {
    let all = findings(&two_hosts(&[]));
    assert!(all.is_empty(), "{all:#?}");
    let one = DEFAULT_CONFIG.replacen("host:\n  libvirt_uri", "hosts:\n  ws1:\n    libvirt_uri", 1);
    let one = one.replacen(
        "\n  pool_dir: /var/lib/hsw/images\n  accelerator: auto\n  gpu_backend: simulated\n",
        "\n    pool_dir: /srv/pool\n    accelerator: auto\n    gpu_backend: simulated\n",
        1,
    );
    let v = validate_str(&one);
    assert!(
        v.report.diagnostics.is_empty(),
        "{:#?}",
        v.report.diagnostics
    );
    let c = v.config.unwrap();
    assert_eq!(c.pool_dir(), "/srv/pool");
    assert_eq!(c.libvirt_uri(), "qemu:///system");
}

#[test]
fn host_and_hosts_not_both() {
    let src = two_hosts(&[("global:\n", "host:\n  accelerator: tcg\nglobal:\n")]);
    expect_error(&src, "hosts.both", "/hosts");
}

#[test]
fn host_names_are_dns_labels() {
    let src = two_hosts(&[
        ("  ws2:\n", "  WS_2:\n"),
        ("      host: ws2\n", "      host: WS_2\n"),
    ]);
    expect_error(&src, "hosts.name", "/hosts/WS_2");
}

#[test]
fn host_uris_are_checked() {
    let src = two_hosts(&[(
        "qemu+ssh://root@10.9.0.2/system?known_hosts=/etc/hsw/ws2.known_hosts",
        "qemu+ext:///system?command=/bin/sh",
    )]);
    expect_error(&src, "hosts.libvirt-uri", "/hosts/ws2/libvirt_uri");
}

#[test]
fn ssh_hosts_pin_their_known_hosts() {
    let src = two_hosts(&[(
        "?known_hosts=/etc/hsw/ws2.known_hosts",
        "?keyfile=/root/.ssh/id_ed25519",
    )]);
    let d = expect_error(&src, "hosts.known-hosts", "/hosts/ws2/libvirt_uri");
    assert!(d.message.contains("without a pinned host key"), "{d:?}");
}

#[test]
fn two_hosts_are_not_one_libvirt() {
    let src = two_hosts(&[(
        "qemu+ssh://root@10.9.0.2/system?known_hosts=/etc/hsw/ws2.known_hosts",
        "qemu:///system",
    )]);
    expect_error(&src, "hosts.same-uri", "/hosts/ws2/libvirt_uri");
}

#[test]
fn a_placement_needs_hosts() {
    let src = DEFAULT_CONFIG.replacen(
        "      ip_address: 192.168.100.10\n",
        "      ip_address: 192.168.100.10\n      host: ws1\n",
        1,
    );
    expect_error(&src, "placement.no-hosts", "/clusters/hpc/controller/host");
}

#[test]
fn a_placement_names_a_known_host_once() {
    let src = two_hosts(&[("      host: ws2\n", "      host: ws3\n")]);
    let d = expect_error(
        &src,
        "placement.unknown-host",
        "/clusters/cloud/control_plane/host",
    );
    assert!(d.hint.unwrap().contains("ws1, ws2"));
    let src = two_hosts(&[("      hosts: [ws1]\n", "      hosts: [ws1, ws1]\n")]);
    expect_error(
        &src,
        "placement.duplicate",
        "/clusters/hpc/compute_nodes/hosts",
    );
}

#[test]
fn with_two_hosts_everything_is_placed() {
    let src = two_hosts(&[(
        "      ip_address: 192.168.100.10\n      host: ws1\n",
        "      ip_address: 192.168.100.10\n",
    )]);
    expect_error(&src, "placement.missing", "/clusters/hpc/controller/host");
    let src = two_hosts(&[(
        "        mig_capable: true\n        host: ws1\n",
        "        mig_capable: true\n",
    )]);
    expect_error(
        &src,
        "placement.missing",
        "/global/gpu_allocation/devices/0/host",
    );
}

#[test]
fn gpu_units_go_to_vms_on_the_gpus_host() {
    // Compute node 2 of 2 goes on ws2 (the list in turn); the GPU is in ws1.
    let src = two_hosts(&[("      hosts: [ws1]\n", "      hosts: [ws1, ws2]\n")]);
    let d = expect_error(
        &src,
        "placement.gpu-host",
        "/clusters/hpc/compute_nodes/hosts",
    );
    assert!(d.message.contains("go on host `ws2`"), "{d:?}");
    // GPUs in two hosts are not planned yet.
    let src = two_hosts(&[(
        "        allowed_mig_profiles:",
        "        allowed_mig_profiles: [\"1g.10gb\", \"2g.20gb\", \"3g.40gb\"]\n      - id: GPU-1\n        pci_address: \"0000:66:00.0\"\n        model: NVIDIA A100-SXM4-80GB\n        mig_capable: true\n        host: ws2\n        allowed_mig_profiles:",
    )]);
    expect_error(
        &src,
        "placement.gpu-hosts",
        "/global/gpu_allocation/devices",
    );
}

/// 16 hosts, 32 compute nodes spread over all of them (the GPU and the GPU worker on ws1): valid, quickly.
fn sixteen_hosts() -> String {
    let mut hosts = String::from("hosts:\n");
    let mut names = Vec::new();
    for i in 1..=16 {
        let uri = if i == 1 {
            "qemu:///system".to_owned()
        } else {
            format!("qemu+ssh://root@10.9.0.{i}/system?known_hosts=/etc/hsw/known_hosts")
        };
        hosts.push_str(&format!(
            "  ws{i}:\n    libvirt_uri: {uri}\n    gpu_backend: simulated\n"
        ));
        names.push(format!("ws{i}"));
    }
    let base = two_hosts(&[]);
    let old_hosts = &base[base.find("hosts:\n").unwrap()..base.find("global:").unwrap()];
    let mut s = base.replacen(old_hosts, &format!("{hosts}\n"), 1);
    for (from, to) in [
        (
            "      gpu_enabled: true\n      ip_range: 192.168.100.11-12\n      hosts: [ws1]\n".to_owned(),
            format!("      ip_range: 192.168.100.11-42\n      hosts: [{}]\n", names.join(", ")),
        ),
        ("      count: 2\n".into(), "      count: 32\n".into()),
        ("      hpc: 2\n".into(), String::new()),
        (
            "        - name: gpu\n          nodes: [gpu]\n          default_time: \"1:00:00\"\n          max_time: \"24:00:00\"\n".into(),
            String::new(),
        ),
        ("      default_partition: gpu\n".into(), "      default_partition: debug\n".into()),
        ("        max_gpus_per_user: 1\n".into(), String::new()),
    ] {
        assert!(s.contains(&from), "no {from:?}");
        s = s.replacen(&from, &to, 1);
    }
    s
}

#[test]
fn sixteen_hosts_validate() {
    let src = sixteen_hosts();
    let t = std::time::Instant::now();
    let all = findings(&src);
    let took = t.elapsed();
    assert!(all.is_empty(), "{all:#?}\n{src}");
    assert!(took.as_secs() < 1, "validating 16 hosts took {took:?}");
}

/// What is validated is not generated yet: `generate` (and `up`, before any step) refuse two or more hosts,
/// naming them; one entry in `hosts` renders like `host`.
#[test]
fn several_hosts_are_not_rendered_yet() {
    use hsw_core::render::terraform::{render, Options, RenderError};
    let src = two_hosts(&[]);
    let cfg = validate_str(&src).config.unwrap();
    let plan = hsw_core::config::gpu::plan(&cfg).unwrap();
    let options = Options::new(&cfg, "cluster.yaml", &src, "../modules", "../.hsw/ssh");
    let e = render(&cfg, &plan, &options).unwrap_err();
    assert!(
        matches!(&e, RenderError::SeveralHosts(h) if h == &["ws1", "ws2"]),
        "{e}"
    );
    assert!(e.to_string().contains("names 2 hosts (ws1, ws2)"), "{e}");
}
