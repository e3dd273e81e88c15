//! The Terraform root module renderer: golden files for two examples (production-like: MIG + a whole GPU on
//! NVML; cpu-only: no GPUs), determinism, headers, and the GPU unit assignment rule.
//! Regenerate the expectations with `UPDATE_EXPECT=1 cargo test -p hsw-core --test render_terraform`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use hsw_core::config::{self, ClusterConfig};
use hsw_core::gpu::GpuPlan;
use hsw_core::layout::Layout;
use hsw_core::render::terraform::{self, Options, HEADER_PREFIX};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load(example: &str) -> (String, ClusterConfig, GpuPlan) {
    let name = format!("examples/{example}.yaml");
    let source = std::fs::read_to_string(repo().join(&name)).unwrap();
    let validated = config::validate_str(&source);
    let cfg = validated
        .valid_config()
        .unwrap_or_else(|| panic!("{name} is not valid"))
        .clone();
    let plan = config::gpu::plan(&cfg).unwrap();
    (source, cfg, plan)
}

fn render(example: &str) -> Vec<terraform::File> {
    let (source, cfg, plan) = load(example);
    let options = Options::new(
        &cfg,
        &format!("examples/{example}.yaml"),
        &source,
        "../modules",
        "../.hsw/ssh",
    );
    terraform::render(&cfg, &plan, &options).unwrap()
}

fn golden(example: &str) {
    let files = render(example);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/render_expected")
        .join(example);
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|f| (f.name.as_str(), f.contents.as_str()))
        .collect();
    testkit::golden::check_dir(&dir, &files);
}

#[test]
fn production_like_matches_golden_files() {
    golden("production-like");
}

#[test]
fn cpu_only_matches_golden_files() {
    golden("cpu-only");
}

#[test]
fn rendering_is_deterministic_and_every_file_has_the_header() {
    for example in [
        "minimal-dev",
        "production-like",
        "cpu-only",
        "h100-all-mig",
        "whole-gpu",
    ] {
        let a = render(example);
        let b = render(example);
        assert_eq!(a, b, "{example}: two renderings differ");
        let (source, _, _) = load(example);
        let sha = terraform::sha256_hex(&source);
        for f in &a {
            let (first, rest) = f.contents.split_once('\n').unwrap_or_default();
            assert_eq!(
                first,
                format!(
                    "{HEADER_PREFIX}examples/{example}.yaml (sha256 {sha}); body sha256 {}; do not edit",
                    terraform::sha256_hex(rest)
                ),
                "{example}/{}",
                f.name
            );
            assert_eq!(
                terraform::provenance(f.contents.as_bytes()),
                terraform::Provenance::Generated
            );
            assert!(!f.contents.contains("null_resource") && !f.contents.contains("local-exec"));
        }
    }
}

#[test]
fn units_are_dealt_to_gpu_nodes_in_order_mig_before_whole() {
    let (_, cfg, plan) = load("production-like");
    let nodes = Layout::checked(&cfg, &plan).unwrap().vms;
    let units = |name: &str| -> Vec<String> {
        nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
            .gpu_units
            .iter()
            .map(|u| u.id())
            .collect()
    };
    // HPC: 4 MIG slices to 4 compute nodes, in plan order.
    let hpc_mig: Vec<String> = plan
        .instances_of("hpc")
        .map(|i| format!("{}-mig-{}", i.device, i.placement_start))
        .collect();
    for (i, id) in hpc_mig.iter().enumerate() {
        assert_eq!(
            units(&format!("hyperscaler-emulation-compute-{}", i + 1)),
            vec![id.clone()]
        );
    }
    // Cloud: 2 MIG slices, then the whole RTX 6000, to the 3 GPU workers; the CPU worker gets nothing.
    assert_eq!(
        units("hyperscaler-emulation-gpu-worker-3"),
        vec!["GPU-1-whole".to_owned()]
    );
    assert!(units("hyperscaler-emulation-gpu-worker-1")[0].starts_with("GPU-0-mig-"));
    assert!(units("hyperscaler-emulation-cpu-worker-1").is_empty());
    assert!(units("hyperscaler-emulation-controller-1").is_empty());
    assert_eq!(nodes.len(), 1 + 4 + 1 + 1 + 3);
}

#[test]
fn a_network_both_clusters_use_is_created_once() {
    let (source, mut cfg, _) = load("cpu-only");
    cfg.clusters.cloud.as_mut().unwrap().network = Some("hpc_network".into());
    let cloud = cfg.clusters.cloud.as_mut().unwrap();
    cloud.control_plane.ip_address = "192.168.120.50".into();
    cloud.worker_nodes.cpu_workers.as_mut().unwrap().ip_range = "192.168.120.51-52".into();
    let plan = config::gpu::plan(&cfg).unwrap();
    let options = Options::new(&cfg, "shared", &source, "../modules", "../.hsw/ssh");
    let files = terraform::render(&cfg, &plan, &options).unwrap();
    let main = &files.iter().find(|f| f.name == "main.tf").unwrap().contents;
    assert_eq!(
        main.matches("subnet       = \"192.168.120.0/24\"").count(),
        1,
        "{main}"
    );
    assert!(main.contains("create_network = false"), "{main}");
    assert!(
        main.contains("network_name   = module.hpc.network.name"),
        "{main}"
    );
}

/// How each backend attaches: NVML's vGPU types and q35/UEFI as they are (golden above), behind the NVML test on
/// `auto`, nothing with the simulation (VMs stay pc + BIOS).
#[test]
fn units_reach_vms_only_on_real_backends() {
    let (source, mut cfg, plan) = load("production-like");
    let main_of = |cfg: &ClusterConfig| {
        let options = Options::new(cfg, "p", &source, "../modules", "../.hsw/ssh");
        let files = terraform::render(cfg, &plan, &options).unwrap();
        files
            .into_iter()
            .find(|f| f.name == "main.tf")
            .unwrap()
            .contents
    };
    let set = |cfg: &mut ClusterConfig, b: config::model::GpuBackend| {
        cfg.host.as_mut().unwrap().gpu_backend = Some(b);
    };
    set(&mut cfg, config::model::GpuBackend::Auto);
    let auto = main_of(&cfg);
    for want in [
        r#"vgpu_type = data.hsw_gpus.this.backend == "nvml" ? "A100DX-1-10C" : null"#,
        r#"compute = data.hsw_gpus.this.backend == "nvml" ? { machine = "q35", firmware = "efi", mmio64_gib = 64 } : { machine = "pc", firmware = "bios", mmio64_gib = null }"#,
        r#"mmio64_gib = 256 }"#,
    ] {
        assert!(auto.contains(want), "{want}\n{auto}");
    }
    set(&mut cfg, config::model::GpuBackend::Simulated);
    let sim = main_of(&cfg);
    assert!(
        !sim.contains("machines") && !sim.contains("A100DX"),
        "{sim}"
    );
    assert!(sim.contains("nothing reaches a domain"), "{sim}");
}
