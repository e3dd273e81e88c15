//! `hsw-cli gpu discover`, `gpu cleanup` and `gpu plan --write-map` as a user runs them, on the simulated GPU
//! backend (a temporary state directory seeded from `examples/minimal-dev.yaml`) and a copy of the fake sysfs
//! tree in `tests/fixtures/sysfs/a100-vgpu`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use hsw_gpu_backend::mdev::{MdevBackend, SysfsMdev, SysfsRoot};
use hsw_gpu_backend::mig::GpuBackend;
use hsw_gpu_backend::ops::{self, CreateRequest};
use hsw_gpu_backend::simulated::SimulatedBackend;

use testkit::repo;

const GPU: &str = "0000:65:00.0";

struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        testkit::copy_tree(
            &repo().join("tests/fixtures/sysfs/a100-vgpu"),
            &dir.path().join("sysfs"),
        );
        World { dir }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn sysfs(&self) -> PathBuf {
        self.dir.path().join("sysfs")
    }

    fn hsw(&self, args: &[&str]) -> Output {
        support::hsw()
            .command(args)
            .args(["--backend", "simulated", "--state-dir"])
            .arg(self.state())
            .arg("--sysfs-root")
            .arg(self.sysfs())
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    fn seed(&self) {
        let o = self.hsw(&[
            "gpu",
            "discover",
            "--config",
            repo().join("examples/minimal-dev.yaml").to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn discover_prints_the_inventory_and_the_backend() {
    let w = World::new();
    let cfg = repo().join("examples/minimal-dev.yaml");
    let o = w.hsw(&[
        "gpu",
        "discover",
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["backend"], "simulated");
    let d = &v["devices"][0];
    assert_eq!(d["pci_address"], GPU);
    assert_eq!(d["model"], "a100-80gb");
    assert_eq!(d["mig_current"], true);
    assert_eq!(d["profiles"].as_array().unwrap().len(), 7);
    let names: Vec<&str> = v["vgpu_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"GRID A100-2-10C") && names.contains(&"NVIDIA H200X-1-18C"));

    let o = w.hsw(&["gpu", "discover"]);
    let text = out(&o);
    assert!(text.starts_with("GPU backend: simulated"), "{text}");
    assert!(
        text.contains("profile 3g.40gb") && text.contains("placements 0:4,4:4"),
        "{text}"
    );

    // NVML is not on this machine: asked for explicitly, it fails with a clear message.
    if !Path::new("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1").exists() {
        let o = support::hsw()
            .command(&["gpu", "discover", "--backend", "nvml"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("libnvidia-ml.so.1"), "{err}");
    }
}

#[test]
fn the_mdev_map_names_the_vgpu_parent_where_sysfs_says_it() {
    let w = World::new();
    w.seed();
    let sim = SimulatedBackend::open(&w.state(), None).unwrap();
    // The same cluster on real GPUs: its MIG slices reach their VMs as vGPUs.
    let text = std::fs::read_to_string(repo().join("examples/minimal-dev.yaml")).unwrap();
    let cfg = w.dir.path().join("nvml.yaml");
    std::fs::write(
        &cfg,
        text.replace("gpu_backend: simulated", "gpu_backend: nvml"),
    )
    .unwrap();
    let map = w.dir.path().join("mdev_map.json");
    let write_map = || {
        let o = w.hsw(&[
            "gpu",
            "plan",
            "--config",
            cfg.to_str().unwrap(),
            "--write-map",
            map.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&map).unwrap()).unwrap()
    };
    let gi = ops::create(
        &sim,
        &w.state().join("locks"),
        &CreateRequest {
            gpu: GPU.into(),
            profile: "3g.40gb".into(),
            placement_start: Some(4),
            compute_slices: None,
        },
        std::time::Duration::ZERO,
    )
    .unwrap()
    .gi_id;
    // Two vendor-VFIO VFs; no VF names the GPU instance yet: the parent is apply's to find.
    let vfs = ["0000:65:00.4", "0000:65:00.5"];
    hsw_gpu_backend::vf::fake::add_vfs(&w.sysfs(), GPU, &vfs).unwrap();
    let tree = hsw_gpu_backend::mdev::fake::FakeTree::new(&w.sysfs()).unwrap();
    for vf in vfs {
        tree.add_vendor_vf(vf, &[(1414, "NVIDIA A100DX-3-40C")])
            .unwrap();
        std::fs::write(
            w.sysfs()
                .join("sys/bus/pci/devices")
                .join(vf)
                .join("nvidia/gpu_instance_id"),
            format!("{}\n", gi + 100),
        )
        .unwrap();
    }
    let v = write_map();
    let u = &v["units"][2];
    assert_eq!(u["attach"], "vgpu", "{u}");
    assert_eq!(u["gi_id"], gi, "{u}");
    assert!(u["vgpu_parent"].is_null(), "{u}");
    // The second VF names it: the map says so; a unit whose instance does not exist stays null.
    std::fs::write(
        w.sysfs()
            .join("sys/bus/pci/devices")
            .join(vfs[1])
            .join("nvidia/gpu_instance_id"),
        format!("{gi}\n"),
    )
    .unwrap();
    let v = write_map();
    assert_eq!(v["units"][2]["vgpu_parent"], vfs[1], "{}", v["units"][2]);
    assert!(v["units"][0]["gi_id"].is_null() && v["units"][0]["vgpu_parent"].is_null());
}

#[test]
fn plan_writes_the_mdev_map_with_metadata() {
    let w = World::new();
    w.seed();
    let sim = SimulatedBackend::open(&w.state(), None).unwrap();
    let cfg = repo().join("examples/minimal-dev.yaml");
    let map = w.dir.path().join("out/mdev_map.json");
    let write_map = || {
        let o = w.hsw(&[
            "gpu",
            "plan",
            "--config",
            cfg.to_str().unwrap(),
            "--write-map",
            map.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&map).unwrap()).unwrap()
    };
    let v = write_map();
    let m = &v["metadata"];
    assert_eq!(m["config_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(m["backend"], "simulated");
    assert!(m["generated_at"].as_str().unwrap().ends_with('Z'));
    let uuid = sim.devices().unwrap()[0].uuid.clone();
    assert_eq!(m["devices"][0]["uuid"], uuid.as_str());
    // One entry per unit, with its VM; what does not exist yet is null.
    let units = v["units"].as_array().unwrap();
    assert_eq!(units.len(), 3);
    let vms: Vec<&str> = units.iter().map(|u| u["vm"].as_str().unwrap()).collect();
    assert_eq!(
        vms,
        [
            "hsw-dev-compute-1",
            "hsw-dev-compute-2",
            "hsw-dev-gpu-worker-1"
        ]
    );
    let u = &units[2];
    assert_eq!(u["cluster"], "cloud");
    assert_eq!(u["device"], "GPU-0");
    assert_eq!(u["pci_address"], GPU);
    assert_eq!(u["gpu_uuid"], uuid.as_str());
    assert_eq!(u["profile"], "3g.40gb");
    assert_eq!(u["placement"], serde_json::json!({"start": 4, "size": 4}));
    assert_eq!(u["attach"], "simulated");
    assert_eq!(u["vgpu_type"], "A100DX-3-40C");
    for key in [
        "gi_id",
        "ci_id",
        "mig_device_uuid",
        "vgpu_parent",
        "mdev_uuid",
    ] {
        assert!(u[key].is_null(), "{key}: not created yet");
    }

    // Once the instance exists, the map names its GI, CI and MIG device.
    ops::create(
        &sim,
        &w.state().join("locks"),
        &CreateRequest {
            gpu: GPU.into(),
            profile: "3g.40gb".into(),
            placement_start: Some(4),
            compute_slices: None,
        },
        std::time::Duration::ZERO,
    )
    .unwrap();
    let v = write_map();
    let u = &v["units"][2];
    assert!(u["gi_id"].is_u64() && u["ci_id"].is_u64(), "{u}");
    assert!(u["mig_device_uuid"].is_string(), "{u}");
    assert!(v["units"][0]["gi_id"].is_null());

    // The default path.
    let o = w.hsw(&[
        "gpu",
        "plan",
        "--config",
        cfg.to_str().unwrap(),
        "--write-map",
    ]);
    assert!(o.status.success());
    assert!(w.dir.path().join("output/mdev_map.json").is_file());
}

#[test]
fn cleanup_lists_saves_and_removes_only_what_no_state_holds() {
    let w = World::new();
    w.seed();
    let sim = SimulatedBackend::open(&w.state(), None).unwrap();
    let locks = w.state().join("locks");
    let mk = |profile: &str| {
        ops::create(
            &sim,
            &locks,
            &CreateRequest {
                gpu: GPU.into(),
                profile: profile.into(),
                placement_start: None,
                compute_slices: None,
            },
            std::time::Duration::ZERO,
        )
        .unwrap()
    };
    let kept = mk("3g.40gb");
    let stray = mk("1g.10gb");
    let mdev = SysfsMdev::new(SysfsRoot::new(w.sysfs()));
    let kept_vgpu = mdev
        .create("0000:65:00.4", "GRID A100-1-5C", None, false)
        .unwrap();
    let stray_vgpu = mdev
        .create("0000:65:00.4", "GRID A100-2-10C", None, false)
        .unwrap();
    // A terraform.tfstate (v4) holding the kept ones.
    let tfstate = serde_json::json!({
        "version": 4,
        "resources": [
            {"mode": "managed", "type": "hsw_mig_instance", "name": "hpc", "instances": [
                {"attributes": {"gpu_pci": GPU, "gi_id": kept.gi_id, "id": format!("{GPU}/{}", kept.gi_id)}}
            ]},
            {"mode": "managed", "type": "hsw_mdev", "name": "w", "instances": [
                {"attributes": {"id": kept_vgpu.id()}}
            ]}
        ]
    });
    let state_file = w.dir.path().join("terraform.tfstate");
    std::fs::write(&state_file, tfstate.to_string()).unwrap();

    // --yes without a state is refused.
    let o = w.hsw(&["gpu", "cleanup", "--yes"]);
    assert_eq!(o.status.code(), Some(2));

    // Listing changes nothing and saves the description.
    let o = w.hsw(&["gpu", "cleanup", "--state", state_file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = out(&o);
    assert!(text.contains("1 MIG instance(s) and 1 vGPU(s)"), "{text}");
    assert!(
        text.contains(&format!("gi {} 1g.10gb", stray.gi_id)),
        "{text}"
    );
    assert!(text.contains(&stray_vgpu.id()), "{text}");
    assert_eq!(sim.gpu_instances(0).unwrap().len(), 2);
    let saved: Vec<PathBuf> = std::fs::read_dir(w.dir.path().join("output"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(saved.len(), 1);
    let desc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved[0]).unwrap()).unwrap();
    assert_eq!(desc["mig_instances"][0]["instance"]["gi_id"], stray.gi_id);

    // --yes removes exactly the strays.
    let o = w.hsw(&[
        "gpu",
        "cleanup",
        "--state",
        state_file.to_str().unwrap(),
        "--yes",
    ]);
    assert!(o.status.success(), "{}", out(&o));
    let left = sim.gpu_instances(0).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, kept.gi_id);
    let vgpus = mdev.vgpus().unwrap();
    assert_eq!(vgpus.len(), 1);
    assert_eq!(vgpus[0].id(), kept_vgpu.id());
}

/// `gpu plan` in both formats, for a simulated config (every unit `simulated`, the vGPU type it would get) and an
/// NVML one (MIG slices as vGPUs, a whole GPU by passthrough): golden files in `tests/fixtures/gpu-plan/`.
#[test]
fn plan_names_the_vm_and_the_attachment_of_every_unit() {
    for example in ["minimal-dev", "production-like"] {
        let config = format!("examples/{example}.yaml");
        let text = testkit::ok(support::hsw().run(&["gpu", "plan", "--config", &config]));
        testkit::golden::check(
            repo().join(format!("tests/fixtures/gpu-plan/{example}.txt")),
            &text,
        );
        let json = testkit::ok(
            support::hsw().run(&["gpu", "plan", "--config", &config, "--format", "json"]),
        );
        testkit::golden::check(
            repo().join(format!("tests/fixtures/gpu-plan/{example}.json")),
            &json,
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        for unit in v["instances"]
            .as_array()
            .unwrap()
            .iter()
            .chain(v["whole_gpus"].as_array().unwrap())
        {
            assert!(unit["vm"].is_string(), "{unit}");
        }
    }
    let v: serde_json::Value = serde_json::from_str(&testkit::ok(support::hsw().run(&[
        "gpu",
        "plan",
        "--config",
        "examples/production-like.yaml",
        "--format",
        "json",
    ])))
    .unwrap();
    assert_eq!(v["instances"][0]["attach"], "vgpu");
    assert_eq!(v["instances"][0]["vgpu_type"], "A100DX-2-20C");
    assert_eq!(v["whole_gpus"][0]["attach"], "passthrough");
    assert_eq!(
        v["whole_gpus"][0]["vm"],
        "hyperscaler-emulation-gpu-worker-3"
    );
}

#[test]
fn plan_never_writes_the_map_through_a_link() {
    let w = World::new();
    w.seed();
    let cfg = repo().join("examples/minimal-dev.yaml");
    let victim = w.dir.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    let map = w.dir.path().join("mdev_map.json");
    std::os::unix::fs::symlink(&victim, &map).unwrap();
    let o = w.hsw(&[
        "gpu",
        "plan",
        "--config",
        cfg.to_str().unwrap(),
        "--write-map",
        map.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot write {}", map.display()))
            && stderr.contains("symbolic link"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
}
