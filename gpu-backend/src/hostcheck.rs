//! The facts `hsw-cli check` judges about real GPUs ([`hsw_core::host::check::GpuFacts`]), gathered read-only
//! through a [`GpuBackend`] (driver and NVML versions, each GPU's MIG mode), the vGPU types the GPU and its VFs
//! offer ([`MdevBackend::types`] over classic mdev and vendor VFIO) and the IOMMU group of each passthrough GPU
//! ([`iommu::passthrough_blocker`]). The judging is hsw-core's (`host/check/gpu_vms.rs`); nothing here changes
//! MIG mode, resets a GPU or writes to sysfs.

use std::path::Path;

use hsw_core::config::model::{ClusterConfig, GpuBackend as BackendSetting};
use hsw_core::host::check::{
    planned, planned_gpus, DeviceFacts, DriverAnswer, DriverFacts, GpuFacts, OfferedType,
    PassthroughFacts,
};
use hsw_core::layout::UnitKind;

use crate::iommu;
use crate::mdev::{MdevBackend, SysfsMdev, SysfsRoot};
use crate::mig::GpuBackend;
use crate::nvml::NvmlBackend;
use crate::vf::virtual_functions;

/// The driver `check` asks for `config` on the host at `root`, or the answer that stands for it: not asked when
/// the GPUs are simulated or `root` is not `/` (NVML answers for this machine, not for a fixture tree);
/// unavailable when NVML does not open.
pub fn open_driver(
    config: &ClusterConfig,
    root: &SysfsRoot,
) -> Result<Box<dyn GpuBackend>, DriverAnswer> {
    if config.gpu_backend() == BackendSetting::Simulated {
        return Err(DriverAnswer::NotAsked(
            "the GPUs are simulated (host.gpu_backend: simulated)".into(),
        ));
    }
    if root.root() != Path::new("/") {
        return Err(DriverAnswer::NotAsked(format!(
            "the host root is {}, and NVML answers for this machine, not for that tree",
            root.root().display()
        )));
    }
    match NvmlBackend::open() {
        Ok(b) => Ok(Box::new(b)),
        Err(e) => Err(DriverAnswer::Unavailable(e.message)),
    }
}

/// Gathers the facts for `config`: from `driver` (or the answer standing for it, see [`open_driver`]), and the
/// IOMMU groups of the planned passthrough GPUs under `root`.
pub fn gather(
    config: &ClusterConfig,
    root: &SysfsRoot,
    driver: Result<&dyn GpuBackend, &DriverAnswer>,
) -> GpuFacts {
    let driver = match driver {
        Ok(b) => driver_facts(b, &SysfsMdev::new(root.clone()), root),
        Err(answer) => answer.clone(),
    };
    let whole = planned(config)
        .map(|l| planned_gpus(&l, UnitKind::Whole))
        .unwrap_or_default();
    GpuFacts {
        driver,
        passthrough: Some(passthrough_facts(root, &whole)),
    }
}

/// What the driver says: versions, and each GPU's MIG mode, VFs and the vGPU types it and its VFs offer.
pub fn driver_facts(
    backend: &dyn GpuBackend,
    mdev: &dyn MdevBackend,
    root: &SysfsRoot,
) -> DriverAnswer {
    let devices = match backend.devices() {
        Ok(d) => d,
        Err(e) => return DriverAnswer::Unavailable(e.message),
    };
    let versions = backend.versions().map_err(|e| e.message);
    let types = mdev.types().map_err(|e| e.message);
    let devices = devices
        .into_iter()
        .map(|d| {
            let vfs = virtual_functions(root, &d.pci_address);
            let vgpu_types = match (&types, &vfs) {
                (Err(e), _) => Err(e.clone()),
                (_, Err(e)) => Err(e.message.clone()),
                (Ok(types), Ok(vfs)) => Ok(types
                    .iter()
                    .filter(|t| t.parent == d.pci_address || vfs.contains(&t.parent))
                    .map(|t| OfferedType {
                        parent: t.parent.clone(),
                        name: t.name.clone(),
                        flavor: t.flavor.as_str().to_owned(),
                    })
                    .collect()),
            };
            DeviceFacts {
                index: d.index,
                name: d.name.clone(),
                pci_address: d.pci_address.clone(),
                mig_current: d.mig.current,
                mig_pending: d.mig.pending,
                mig_refusal: d.require_mig().err().map(|e| e.message),
                virtual_functions: vfs.unwrap_or_default(),
                vgpu_types,
            }
        })
        .collect();
    DriverAnswer::Answered(DriverFacts {
        backend: backend.kind().as_str().to_owned(),
        driver_version: versions
            .as_ref()
            .map(|v| v.driver.clone())
            .map_err(Clone::clone),
        nvml_version: versions.map(|v| v.nvml),
        devices,
    })
}

/// The IOMMU group, driver and passthrough blocker of each GPU at `pcis`.
pub fn passthrough_facts(root: &SysfsRoot, pcis: &[String]) -> Vec<PassthroughFacts> {
    pcis.iter()
        .map(|pci| {
            let (group, driver) = match iommu::group(root, pci) {
                Ok(Some((n, members))) => (
                    Some(n),
                    members
                        .into_iter()
                        .find(|m| &m.address == pci)
                        .and_then(|m| m.driver),
                ),
                _ => (None, None),
            };
            PassthroughFacts {
                pci_address: pci.clone(),
                group,
                driver,
                blocker: iommu::passthrough_blocker(root, pci).map_err(|e| e.message),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use hsw_core::config::model::ClusterConfig;
    use hsw_core::host::check::{planned, DriverAnswer, OVMF_CODE, OVMF_VARS};
    use hsw_core::host::{run_checks_with, Check, FixtureHost, Status};
    use hsw_core::layout::Attach;

    use super::*;
    use crate::iommu::fake::add_pci_device;
    use crate::mdev::fake::FakeTree;
    use crate::simulated::{SimDevice, SimulatedBackend};
    use crate::vf::fake::add_vfs;

    const MIG_GPU: &str = "0000:65:00.0";
    const WHOLE_GPU: &str = "0000:ca:00.0";
    const VFS: [&str; 4] = [
        "0000:65:00.4",
        "0000:65:00.5",
        "0000:65:00.6",
        "0000:65:00.7",
    ];

    /// The hybrid example (an A100 80GB sliced with MIG, an RTX 6000 passed whole) on NVML.
    fn config() -> ClusterConfig {
        hsw_core::config::validate_str(include_str!("../../examples/production-like.yaml"))
            .config
            .expect("production-like validates")
    }

    /// The vGPU types the plan wants on the MIG GPU.
    fn wanted_types(c: &ClusterConfig) -> Vec<String> {
        let layout = planned(c).unwrap();
        let mut t: Vec<String> = layout
            .targets
            .iter()
            .filter(|t| t.attach == Attach::Vgpu && t.vm.is_some())
            .filter_map(|t| t.vgpu_type.clone())
            .collect();
        t.sort();
        t.dedup();
        t
    }

    /// A host root as the GPU host should look: OVMF installed, the MIG GPU's VFs offering every wanted type
    /// (classic mdev), the whole GPU alone in its IOMMU group on vfio-pci; and the scripted driver, MIG on.
    struct Rig {
        dir: tempfile::TempDir,
        state: tempfile::TempDir,
        config: ClusterConfig,
    }

    impl Rig {
        fn new() -> Rig {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            for f in [OVMF_CODE, OVMF_VARS] {
                let p = root.join(f.trim_start_matches('/'));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, "").unwrap();
            }
            let config = config();
            let tree = FakeTree::new(root).unwrap();
            add_vfs(root, MIG_GPU, &VFS).unwrap();
            let types: Vec<(String, String)> = wanted_types(&config)
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("nvidia-{}", 700 + i), format!("GRID {t}")))
                .collect();
            for vf in VFS {
                let t: Vec<(&str, &str, u32)> = types
                    .iter()
                    .map(|(d, n)| (d.as_str(), n.as_str(), 1))
                    .collect();
                tree.add_mdev_parent(vf, &t).unwrap();
            }
            add_pci_device(root, MIG_GPU, 30, Some("nvidia")).unwrap();
            add_pci_device(root, WHOLE_GPU, 40, Some("vfio-pci")).unwrap();
            let state = tempfile::tempdir().unwrap();
            Rig { dir, state, config }
        }

        fn root(&self) -> &Path {
            self.dir.path()
        }

        /// The scripted NVML: the A100 (the passthrough GPU, on vfio-pci, is not the driver's).
        fn driver(&self) -> SimulatedBackend {
            let seed = [SimDevice {
                pci_address: MIG_GPU.into(),
                model: "a100-80gb".into(),
                mig_enabled: true,
                mig_pending: None,
                uuid: None,
            }];
            SimulatedBackend::open(self.state.path(), Some(&seed)).unwrap()
        }

        fn checks(&self, driver: Result<&dyn GpuBackend, &DriverAnswer>) -> Vec<Check> {
            let root = SysfsRoot::new(self.root());
            let facts = gather(&self.config, &root, driver);
            let host = FixtureHost::new(self.root(), "root", 1 << 40);
            run_checks_with(&host, &self.config, &facts).checks
        }

        fn check(&self, driver: Result<&dyn GpuBackend, &DriverAnswer>, id: &str) -> Check {
            self.checks(driver)
                .into_iter()
                .find(|c| c.id == id)
                .unwrap()
        }
    }

    #[test]
    fn a_host_with_everything_in_place_passes_every_gpu_check() {
        let rig = Rig::new();
        let d = rig.driver();
        assert!(!wanted_types(&rig.config).is_empty(), "the plan has vGPUs");
        for c in rig.checks(Ok(&d)) {
            if c.id.starts_with("gpu.") || c.id == "ovmf" {
                assert_eq!(c.status, Status::Pass, "{}: {}", c.id, c.message);
                assert!(c.remedy.is_empty());
            }
        }
        let driver = rig.check(Ok(&d), "gpu.driver");
        assert!(
            driver
                .message
                .contains("NVIDIA driver simulated, NVML simulated")
                && driver.message.contains(MIG_GPU),
            "{}",
            driver.message
        );
        let mig = rig.check(Ok(&d), "gpu.mig");
        assert!(
            mig.message
                .contains("MIG mode current enabled, pending enabled"),
            "{}",
            mig.message
        );
        let types = rig.check(Ok(&d), "gpu.vgpu_types");
        assert!(
            types.message.contains("on 0000:65:00.4"),
            "{}",
            types.message
        );
        let pt = rig.check(Ok(&d), "gpu.passthrough");
        assert!(
            pt.message.contains("GPU-1 at 0000:ca:00.0") && pt.message.contains("vfio-pci"),
            "{}",
            pt.message
        );
    }

    #[test]
    fn mig_off_where_the_plan_needs_it_fails_with_the_commands_to_run() {
        let rig = Rig::new();
        let d = rig.driver();
        d.set_mig_mode(MIG_GPU, false, false).unwrap();
        let c = rig.check(Ok(&d), "gpu.mig");
        assert_eq!(c.status, Status::Fail, "{}", c.message);
        assert!(
            c.message
                .contains("MIG mode current disabled, pending disabled")
                && c.message.contains("need it enabled"),
            "{}",
            c.message
        );
        assert!(
            c.remedy.contains("nvidia-smi -i 0 -mig 1") && c.remedy.contains("nvidia-smi -i 0 -r"),
            "{}",
            c.remedy
        );
        assert!(c.remedy.contains("never changes"), "{}", c.remedy);
    }

    #[test]
    fn a_pending_mig_change_fails_until_the_gpu_is_reset() {
        let rig = Rig::new();
        let d = rig.driver();
        d.set_mig_mode(MIG_GPU, false, true).unwrap();
        let c = rig.check(Ok(&d), "gpu.mig");
        assert_eq!(c.status, Status::Fail, "{}", c.message);
        assert!(
            c.message.contains("current disabled, pending enabled"),
            "{}",
            c.message
        );
        assert!(c.remedy.contains("nvidia-smi -i 0 -r"), "{}", c.remedy);
        // Being disabled at the next reset is as bad.
        d.set_mig_mode(MIG_GPU, true, false).unwrap();
        let c = rig.check(Ok(&d), "gpu.mig");
        assert_eq!(c.status, Status::Fail, "{}", c.message);
        assert!(c.remedy.contains("nvidia-smi -i 0 -mig 1"), "{}", c.remedy);
        // The driver's MIG mode is only read: the check changed nothing.
        let dev = d.devices().unwrap();
        assert!(dev[0].mig.current && !dev[0].mig.pending);
    }

    #[test]
    fn a_type_the_host_does_not_offer_fails_and_names_what_it_offers() {
        let rig = Rig::new();
        // The VFs offer another type only.
        std::fs::remove_dir_all(rig.root().join("sys/class/mdev_bus")).unwrap();
        let tree = FakeTree::new(rig.root()).unwrap();
        for vf in VFS {
            tree.add_mdev_parent(vf, &[("nvidia-999", "GRID A100DX-7-80C", 1)])
                .unwrap();
        }
        let d = rig.driver();
        let c = rig.check(Ok(&d), "gpu.vgpu_types");
        assert_eq!(c.status, Status::Fail, "{}", c.message);
        let wanted = &wanted_types(&rig.config)[0];
        assert!(
            c.message.contains(&format!("does not offer {wanted}"))
                && c.message.contains("it offers GRID A100DX-7-80C"),
            "{}",
            c.message
        );
        assert!(c.remedy.contains("vgpu_types"), "{}", c.remedy);
        // On vendor VFIO, creatable_vgpu_types lists only what can be made now: a warning.
        std::fs::remove_dir_all(rig.root().join("sys/class/mdev_bus")).unwrap();
        tree.add_vendor_vf(VFS[0], &[(1414, "NVIDIA A100DX-7-80C")])
            .unwrap();
        let c = rig.check(Ok(&d), "gpu.vgpu_types");
        assert_eq!(c.status, Status::Warn, "{}", c.message);
        // No VFs and no types at all: SR-IOV is off.
        std::fs::remove_dir_all(rig.root().join("sys/bus/pci/devices").join(VFS[0])).unwrap();
        for i in 0..VFS.len() {
            std::fs::remove_file(
                rig.root()
                    .join("sys/bus/pci/devices")
                    .join(MIG_GPU)
                    .join(format!("virtfn{i}")),
            )
            .unwrap();
        }
        let c = rig.check(Ok(&d), "gpu.vgpu_types");
        assert_eq!(c.status, Status::Fail, "{}", c.message);
        assert!(
            c.remedy.contains(&format!("sriov-manage -e {MIG_GPU}")),
            "{}",
            c.remedy
        );
    }

    #[test]
    fn a_passthrough_gpu_sharing_its_iommu_group_fails() {
        let rig = Rig::new();
        let d = rig.driver();
        // Its audio function on the host's sound driver.
        add_pci_device(rig.root(), "0000:ca:00.1", 40, Some("snd_hda_intel")).unwrap();
        let c = rig.check(Ok(&d), "gpu.passthrough");
        assert_eq!(c.status, Status::Fail, "{}", c.message);
        assert!(
            c.message
                .contains("IOMMU group 40 with 0000:ca:00.1 (bound to snd_hda_intel)"),
            "{}",
            c.message
        );
        assert!(c.remedy.contains("driverctl set-override"), "{}", c.remedy);
        // The audio function on vfio-pci, the GPU still on nvidia: libvirt can move it, but a holder stops it.
        add_pci_device(rig.root(), "0000:ca:00.1", 40, Some("vfio-pci")).unwrap();
        add_pci_device(rig.root(), WHOLE_GPU, 40, Some("nvidia")).unwrap();
        let c = rig.check(Ok(&d), "gpu.passthrough");
        assert_eq!(c.status, Status::Warn, "{}", c.message);
        assert!(
            c.remedy
                .contains(&format!("driverctl set-override {WHOLE_GPU} vfio-pci")),
            "{}",
            c.remedy
        );
        // No IOMMU group at all.
        std::fs::remove_file(
            rig.root()
                .join("sys/bus/pci/devices")
                .join(WHOLE_GPU)
                .join("iommu_group"),
        )
        .unwrap();
        assert_eq!(rig.check(Ok(&d), "gpu.passthrough").status, Status::Fail);
    }

    #[test]
    fn no_driver_fails_on_nvml_and_leaves_the_rest_unjudged() {
        let rig = Rig::new();
        let gone = DriverAnswer::Unavailable(
            "NVML is not available: libnvidia-ml.so.1 could not be loaded.".into(),
        );
        let checks = rig.checks(Err(&gone));
        let get = |id: &str| checks.iter().find(|c| c.id == id).unwrap();
        assert_eq!(get("gpu.driver").status, Status::Fail);
        assert!(get("gpu.driver").message.contains("libnvidia-ml.so.1"));
        assert!(get("gpu.driver").remedy.contains("nvidia-smi"));
        assert_eq!(get("gpu.mig").status, Status::Skip);
        assert_eq!(get("gpu.vgpu_types").status, Status::Skip);
        // Passthrough and OVMF need no driver.
        assert_eq!(get("gpu.passthrough").status, Status::Pass);
        assert_eq!(get("ovmf").status, Status::Pass);
        // Under an alternate root NVML is not asked at all, and a simulated config asks nothing.
        let root = SysfsRoot::new(rig.root());
        let not = open_driver(&rig.config, &root).err().unwrap();
        assert!(
            matches!(&not, DriverAnswer::NotAsked(w) if w.contains("host root")),
            "{not:?}"
        );
        assert_eq!(rig.check(Err(&not), "gpu.driver").status, Status::Skip);
    }

    #[test]
    fn ovmf_missing_fails_when_gpu_vms_boot_uefi() {
        let rig = Rig::new();
        std::fs::remove_file(rig.root().join(OVMF_VARS.trim_start_matches('/'))).unwrap();
        let d = rig.driver();
        let c = rig.check(Ok(&d), "ovmf");
        assert_eq!(c.status, Status::Fail, "{}", c.message);
        assert!(
            c.message.contains(OVMF_VARS) && !c.message.contains(OVMF_CODE),
            "{}",
            c.message
        );
        assert!(c.remedy.contains("apt-get install -y ovmf"), "{}", c.remedy);
    }
}
