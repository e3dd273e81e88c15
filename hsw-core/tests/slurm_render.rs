//! slurm.conf, gres.conf and cgroup.conf rendered from the examples and the Terraform output fixtures:
//! golden files (`tests/fixtures/terraform-output/expected/<case>/`) for the default config with simulated
//! MIG on its 2 compute nodes, the production-like config on NVML, and the CPU-only config; the choices the
//! module documents (NodeAddr always, the memory reserve, placeholder devices and the `simulated_gpu` feature
//! only for simulated GPUs, /dev/nvidia<i> on real ones); and an
//! optional smoke test with a real `slurmctld` when one is installed.
//! Regenerate the expectations with `UPDATE_EXPECT=1 cargo test -p hsw-core --test slurm_render`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use hsw_core::ansible::hosts::{self, Deployment};
use hsw_core::config::{self, ClusterConfig};
use hsw_core::slurm::{self, RenderedFiles};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load(example: &str, tf_output: &str) -> (ClusterConfig, Deployment) {
    let source = std::fs::read_to_string(repo().join(format!("examples/{example}.yaml"))).unwrap();
    let cfg = config::validate_str(&source)
        .valid_config()
        .unwrap_or_else(|| panic!("{example} is not valid"))
        .clone();
    let plan = config::gpu::plan(&cfg).unwrap();
    let text = std::fs::read_to_string(
        repo().join(format!("tests/fixtures/terraform-output/{tf_output}.json")),
    )
    .unwrap();
    let parsed = hosts::parse_terraform_output_str(&text).unwrap();
    let deployment = hosts::resolve(&cfg, &plan, parsed).unwrap();
    (cfg, deployment)
}

fn render(example: &str, tf_output: &str) -> RenderedFiles {
    let (cfg, deployment) = load(example, tf_output);
    slurm::render(&cfg, &deployment).unwrap_or_else(|e| panic!("{e}"))
}

fn golden(case: &str, files: &RenderedFiles) {
    let dir = repo()
        .join("tests/fixtures/terraform-output/expected")
        .join(case);
    for (name, text) in [
        ("slurm.conf", &files.slurm_conf),
        ("gres.conf", &files.gres_conf),
        ("cgroup.conf", &files.cgroup_conf),
        ("slurmdbd.conf", &files.slurmdbd_conf),
    ] {
        testkit::golden::check(dir.join(name), text);
    }
}

/// Accounting through slurmdbd on the controller (MariaDB, GPUs counted, cgroup usage), multifactor priority
/// with fairshare, and partitions with the node sets they name: the default's `gpu` partition has its own
/// DefaultTime, `debug` (a plain 1.0 name) every node and `max_job_time`.
#[test]
fn accounting_priority_and_partitions() {
    let files = render("minimal-dev", "minimal-dev");
    for line in [
        "AccountingStorageType=accounting_storage/slurmdbd\n",
        "AccountingStorageHost=192.168.100.10\n",
        "AccountingStoragePort=6819\n",
        "AccountingStorageTRES=gres/gpu\n",
        "AccountingStorageEnforce=associations,limits,qos\n",
        "JobAcctGatherType=jobacct_gather/cgroup\n",
        "PriorityType=priority/multifactor\n",
        "PriorityWeightFairshare=10000\n",
        "ReturnToService=2\n",
        "StateSaveLocation=/var/lib/slurm/slurmctld\n",
    ] {
        assert!(files.slurm_conf.contains(line), "{line}");
    }
    assert!(files.slurm_conf.contains(
        "PartitionName=gpu Nodes=hsw-dev-compute-1,hsw-dev-compute-2 Default=YES DefaultTime=1:00:00 MaxTime=24:00:00 State=UP\n"
    ));
    assert!(files.slurm_conf.contains(
        "PartitionName=debug Nodes=hsw-dev-compute-1,hsw-dev-compute-2 Default=NO MaxTime=24:00:00 State=UP\n"
    ));
    for line in [
        "StorageType=accounting_storage/mysql\n",
        "StorageUser=slurm\n",
        "StorageLoc=slurm_acct_db\n",
        "DbdHost=localhost\n",
    ] {
        assert!(files.slurmdbd_conf.contains(line), "{line}");
    }
    // The password never is in hsw's text: the playbook appends it on the controller.
    assert!(!files.slurmdbd_conf.contains("StoragePass="));
    assert!(
        hsw_core::slurm::check::check_slurmdbd_text("StoragePass=x\n")
            .iter()
            .any(|p| p.contains("StoragePass"))
    );
}

#[test]
fn default_config_with_simulated_mig_matches_golden_files() {
    let files = render("minimal-dev", "minimal-dev");
    golden("minimal-dev", &files);
    // Both compute nodes carry their simulated MIG slice, on a placeholder device (Slurm drops file-less GPUs).
    for n in ["hsw-dev-compute-1", "hsw-dev-compute-2"] {
        assert!(files
            .slurm_conf
            .contains(&format!("NodeName={n} NodeAddr=192.168.100.1")));
        assert!(files.gres_conf.contains(&format!(
            "NodeName={n} Name=gpu Type=2g.20gb File=/dev/hsw-sim-gpu0\n"
        )));
    }
    assert!(!files
        .gres_conf
        .lines()
        .any(|l| !l.starts_with('#') && (l.contains("Count=") || l.contains("/dev/nvidia"))));
    assert!(files.cgroup_conf.contains("ConstrainDevices=no\n"));
    assert!(files.gres_conf.contains("SIMULATED"));
    assert!(files.slurm_conf.contains("\nGresTypes=gpu\n"));
    assert!(files
        .slurm_conf
        .contains("Gres=gpu:2g.20gb:1 Features=simulated_gpu State=UNKNOWN"));
    assert!(files
        .slurm_conf
        .contains("SlurmctldHost=hsw-dev-controller-1(192.168.100.10)\n"));
    assert!(files.cgroup_conf.contains("ConstrainDevices=no\n"));
}

#[test]
fn production_like_on_nvml_matches_golden_files() {
    let files = render("production-like", "production-like");
    golden("production-like", &files);
    assert!(files.gres_conf.contains(
        "NodeName=hyperscaler-emulation-compute-1 Name=gpu Type=2g.20gb File=/dev/nvidia0\n"
    ));
    assert!(files.slurm_conf.contains("CPUs=8 RealMemory=15308 "));
    assert!(files.slurm_conf.contains(
        "PartitionName=gpu Nodes=hyperscaler-emulation-compute-1,hyperscaler-emulation-compute-2,\
         hyperscaler-emulation-compute-3,hyperscaler-emulation-compute-4 Default=YES MaxTime=24:00:00 State=UP\n"
    ));
    assert!(files
        .slurm_conf
        .contains(" Default=NO MaxTime=24:00:00 State=UP\n"));
    assert!(files.cgroup_conf.contains("ConstrainDevices=yes\n"));
}

#[test]
fn cpu_only_matches_golden_files() {
    let files = render("cpu-only", "cpu-only");
    golden("cpu-only", &files);
    assert!(!files.slurm_conf.contains("GresTypes"));
    assert!(!files.slurm_conf.contains("Gres="));
    assert!(!files.gres_conf.contains("NodeName="));
    assert!(files.slurm_conf.contains("ClusterName=cpu_only\n"));
    assert!(files.slurm_conf.contains(" MaxTime=08:00:00 "));
}

#[test]
fn required_settings_are_always_there() {
    for (example, tf) in [
        ("minimal-dev", "minimal-dev"),
        ("production-like", "production-like"),
        ("cpu-only", "cpu-only"),
    ] {
        let files = render(example, tf);
        for line in [
            "AuthType=auth/munge",
            "SlurmUser=slurm",
            "StateSaveLocation=/var/lib/slurm/slurmctld",
            "SlurmdSpoolDir=/var/lib/slurm/slurmd",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "ProctrackType=proctrack/cgroup",
            "TaskPlugin=task/cgroup",
        ] {
            assert!(
                files.slurm_conf.lines().any(|l| l == line),
                "{example}: {line}"
            );
        }
        // Every node line has its address.
        for l in files
            .slurm_conf
            .lines()
            .filter(|l| l.starts_with("NodeName="))
        {
            assert!(l.contains(" NodeAddr="), "{l}");
        }
        assert!(slurm::check::check_text(&files.slurm_conf).is_empty());
        assert!(slurm::check::check_gres_text(&files.gres_conf).is_empty());
    }
}

#[test]
fn units_left_out_of_the_output_come_from_the_plan() {
    let (_, given) = load("minimal-dev", "minimal-dev");
    let (_, filled) = load("minimal-dev", "minimal-dev-no-units");
    assert_eq!(given.hosts, filled.hosts);
}

#[test]
fn memory_reserve_is_documented_and_applied() {
    assert_eq!(slurm::real_memory_mib(1), 716);
    assert_eq!(slurm::real_memory_mib(4), 3635);
    assert_eq!(slurm::real_memory_mib(16), 15308);
    let files = render("cpu-only", "cpu-only");
    assert!(files.slurm_conf.contains("CPUs=2 RealMemory=3635 "));
}

#[test]
fn real_gpus_never_get_a_placeholder_device() {
    // On NVML every unit names the device the guest driver creates, whether or not Terraform reported its
    // vGPU yet: a placeholder would let Slurm schedule `--gres=gpu` jobs onto no GPU.
    let (cfg, mut deployment) = load("production-like", "production-like");
    for h in &mut deployment.hosts {
        for u in &mut h.gpu_units {
            u.mdev_uuid = None;
        }
    }
    let files = slurm::render(&cfg, &deployment).unwrap();
    assert!(files.gres_conf.contains(
        "NodeName=hyperscaler-emulation-compute-2 Name=gpu Type=1g.10gb File=/dev/nvidia0\n"
    ));
    assert!(!files.gres_conf.contains(slurm::SIM_GPU_DEVICE_PREFIX));
    assert!(!files.gres_conf.contains("SIMULATED"));
    assert!(!files.slurm_conf.contains("Features="));
    assert!(files.cgroup_conf.contains("ConstrainDevices=yes\n"));
}

#[test]
fn simulated_gpus_say_so_in_gres_conf_and_node_features() {
    let files = render("minimal-dev", "minimal-dev");
    for n in ["hsw-dev-compute-1", "hsw-dev-compute-2"] {
        let line = files
            .slurm_conf
            .lines()
            .find(|l| l.starts_with(&format!("NodeName={n} ")))
            .unwrap();
        assert!(
            line.contains(&format!(" Features={} ", slurm::SIM_GPU_FEATURE)),
            "{line}"
        );
    }
    assert!(files
        .gres_conf
        .contains(&format!("Features={}", slurm::SIM_GPU_FEATURE)));
    // A controller without GPUs carries no feature.
    let cpu = render("cpu-only", "cpu-only");
    assert!(!cpu.slurm_conf.contains("Features="));
}

#[test]
fn whole_gpus_are_typed_by_model() {
    let (cfg, deployment) = load("production-like", "production-like");
    let worker = deployment
        .host("hyperscaler-emulation-gpu-worker-3")
        .unwrap();
    assert_eq!(slurm::gres_type(&cfg, &worker.gpu_units[0]), "rtx_6000");
    let mig = deployment.host("hyperscaler-emulation-compute-2").unwrap();
    assert_eq!(slurm::gres_type(&cfg, &mig.gpu_units[0]), "1g.10gb");
}

#[test]
fn no_hpc_cluster_is_an_error() {
    let (mut cfg, deployment) = load("cpu-only", "cpu-only");
    cfg.clusters.hpc = None;
    let e = slurm::render(&cfg, &deployment).unwrap_err();
    assert!(e.to_string().contains("no hpc cluster"), "{e}");
}

/// With a real `slurmctld` on PATH (not installed by default; never installed by the tests), start it in the
/// foreground on the rendered slurm.conf, moved into a throwaway directory (this host as the controller, the
/// current user as SlurmUser), and fail only when it rejects the configuration.
#[test]
fn slurmctld_accepts_the_rendered_config_when_installed() {
    let Some(slurmctld) = find_on_path("slurmctld") else {
        eprintln!("slurmctld is not installed: smoke test skipped");
        return;
    };
    let files = render("minimal-dev", "minimal-dev");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let host = std::process::Command::new("hostname")
        .arg("-s")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let conf: String = files
        .slurm_conf
        .lines()
        .map(|l| match l.split_once('=').map(|(k, _)| k) {
            Some("SlurmctldHost") => format!("SlurmctldHost={host}(127.0.0.1)"),
            Some("SlurmUser") => format!("SlurmUser={user}"),
            Some("StateSaveLocation") => format!("StateSaveLocation={d}/state"),
            Some("SlurmdSpoolDir") => format!("SlurmdSpoolDir={d}/spool"),
            Some("SlurmctldPidFile") => format!("SlurmctldPidFile={d}/slurmctld.pid"),
            Some("SlurmctldLogFile") => format!("SlurmctldLogFile={d}/slurmctld.log"),
            _ => l.to_owned(),
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    std::fs::write(dir.path().join("slurm.conf"), conf).unwrap();
    std::fs::write(dir.path().join("gres.conf"), &files.gres_conf).unwrap();
    std::fs::write(dir.path().join("cgroup.conf"), &files.cgroup_conf).unwrap();
    let out = std::process::Command::new("timeout")
        .arg("10")
        .arg(slurmctld)
        .args(["-D", "-f"])
        .arg(dir.path().join("slurm.conf"))
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("slurmctld.log")).unwrap_or_default();
    let text = format!(
        "{}{}{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.code() == Some(124) {
        return; // still running after 10 s: the configuration was accepted
    }
    for bad in [
        "Parse error",
        "parse_",
        "Invalid",
        "Unable to process configuration file",
    ] {
        assert!(
            !text.contains(bad),
            "slurmctld rejected the configuration:\n{text}"
        );
    }
    eprintln!("slurmctld stopped for a reason other than the configuration (munge?):\n{text}");
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}
