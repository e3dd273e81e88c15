//! Host checks over the fixture roots in `tests/fixtures/hosts/<case>/`.
//!
//! Each case directory is a host root plus `case.json` (the config, the user, the free disk,
//! the expected exit code, and per-check expected status and key words) and `expected.json`
//! (the golden report). Regenerate the goldens with
//! `UPDATE_EXPECT=1 cargo test -p hsw-core --test host_checks`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// One module, so that `cargo test -p hsw-core host` selects these tests too.
mod host_checks {

    use std::path::{Path, PathBuf};

    use hsw_core::config::model::{Accelerator, GpuBackend};
    use hsw_core::config::{validate_str, ClusterConfig, DEFAULT_CONFIG};
    use hsw_core::host::check::FULL_PACKAGES;
    use hsw_core::host::{run_checks, CheckReport, FixtureHost, Host, Status, CHECK_IDS};

    const GIB: u64 = 1024 * 1024 * 1024;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hosts")
    }

    struct Case {
        name: String,
        dir: PathBuf,
        meta: serde_json::Value,
        config: ClusterConfig,
    }

    fn config_at(path: Option<&Path>) -> ClusterConfig {
        let text = match path {
            Some(p) => {
                std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            }
            None => DEFAULT_CONFIG.to_owned(),
        };
        let v = validate_str(&text);
        assert!(!v.report.has_errors(), "{path:?}: {:#?}", v.report);
        v.config.unwrap()
    }

    fn cases() -> Vec<Case> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(fixtures()).unwrap() {
            let dir = entry.unwrap().path();
            let meta_path = dir.join("case.json");
            if !meta_path.exists() {
                continue;
            }
            let meta: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
            let config = config_at(meta["config"].as_str().map(|c| dir.join(c)).as_deref());
            out.push(Case {
                name: dir.file_name().unwrap().to_string_lossy().into_owned(),
                dir,
                meta,
                config,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn host_for(case: &Case) -> FixtureHost {
        let user = case.meta["user"].as_str().unwrap_or("root");
        let free = case.meta["free_gib"].as_u64().unwrap_or(500) * GIB;
        FixtureHost::new(&case.dir, user, free)
    }

    fn status_of(report: &CheckReport, id: &str) -> Status {
        report
            .get(id)
            .unwrap_or_else(|| panic!("no check {id}"))
            .status
    }

    #[test]
    fn the_fixture_cases_are_all_there() {
        let names: Vec<String> = cases().into_iter().map(|c| c.name).collect();
        for want in [
            "healthy",
            "no-virtualization",
            "nouveau-loaded",
            "nouveau-not-blacklisted",
            "no-iommu",
            "low-memory",
            "bridge-in-use",
            "own-bridges",
            "subnet-routed",
            "user-not-in-groups",
            "missing-packages",
            "gpu-missing",
            "tcg-fallback",
            "qemu-as-root",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "missing fixture case {want}"
            );
        }
    }

    #[test]
    fn every_case_matches_its_golden_and_its_expectations() {
        let cases = cases();
        assert!(cases.len() >= 13);
        for case in &cases {
            let host = host_for(case);
            let report = run_checks(&host, &case.config);
            let ids: Vec<&str> = report.checks.iter().map(|c| c.id.as_str()).collect();
            assert_eq!(ids, CHECK_IDS, "{}", case.name);
            let mut text =
                serde_json::to_string_pretty(&serde_json::json!({ "checks": report.checks }))
                    .unwrap();
            text.push('\n');
            testkit::golden::check(case.dir.join("expected.json"), &text);

            let expect = case.meta["expect"].as_object().unwrap();
            for (id, want) in expect {
                let check = report
                    .get(id)
                    .unwrap_or_else(|| panic!("{}: no check {id}", case.name));
                assert_eq!(
                    check.status.as_str(),
                    want["status"].as_str().unwrap(),
                    "{}: {id}: {}",
                    case.name,
                    check.message
                );
                for (field, text) in [("message", &check.message), ("remedy", &check.remedy)] {
                    for word in want[field].as_array().into_iter().flatten() {
                        let word = word.as_str().unwrap();
                        assert!(
                            text.contains(word),
                            "{}: {id}: {field} lacks {word:?}: {text}",
                            case.name
                        );
                    }
                }
            }
            // Checks not named in case.json pass (or are skipped for a stated reason).
            for c in &report.checks {
                if !expect.contains_key(&c.id) {
                    assert!(
                        matches!(c.status, Status::Pass | Status::Skip),
                        "{}: {} is {:?}: {}",
                        case.name,
                        c.id,
                        c.status,
                        c.message
                    );
                }
                assert!(
                    c.status == Status::Pass || !c.remedy.is_empty(),
                    "{}: {} has no remedy",
                    case.name,
                    c.id
                );
            }
            let exit = u64::from(report.failed());
            assert_eq!(
                exit,
                case.meta["exit"].as_u64().unwrap(),
                "{}: exit code",
                case.name
            );
            assert!(
                host.runner.calls().is_empty(),
                "{}: a command was run under an alternate root",
                case.name
            );
        }
    }

    fn case(name: &str) -> Case {
        cases()
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no case {name}"))
    }

    fn with_host(
        mut config: ClusterConfig,
        accelerator: Option<Accelerator>,
        backend: Option<GpuBackend>,
    ) -> ClusterConfig {
        let host = config
            .host
            .get_or_insert_with(|| config_at(None).host.unwrap());
        if accelerator.is_some() {
            host.accelerator = accelerator;
        }
        if backend.is_some() {
            host.gpu_backend = backend;
        }
        config
    }

    #[test]
    fn missing_virtualization_fails_only_when_kvm_is_demanded() {
        let c = case("no-virtualization");
        let host = host_for(&c);
        for (accel, want) in [
            (Accelerator::Kvm, Status::Fail),
            (Accelerator::Auto, Status::Warn),
            (Accelerator::Tcg, Status::Warn),
        ] {
            let r = run_checks(&host, &with_host(c.config.clone(), Some(accel), None));
            assert_eq!(status_of(&r, "cpu.virtualization"), want, "{accel:?}");
            assert_eq!(status_of(&r, "kvm"), want, "{accel:?}");
        }
        let r = run_checks(
            &host,
            &with_host(c.config.clone(), Some(Accelerator::Auto), None),
        );
        assert!(r.get("kvm").unwrap().message.contains("fall back to TCG"));
        assert!(!r.failed());
    }

    #[test]
    fn iommu_and_nouveau_matter_only_for_real_gpus() {
        for (name, id) in [("nouveau-loaded", "nouveau"), ("no-iommu", "iommu")] {
            let c = case(name);
            let host = host_for(&c);
            let simulated = run_checks(
                &host,
                &with_host(c.config.clone(), None, Some(GpuBackend::Simulated)),
            );
            assert_eq!(status_of(&simulated, id), Status::Skip, "{name}");
            assert!(
                simulated.get(id).unwrap().message.contains("simulated"),
                "{name}"
            );
            let auto = run_checks(
                &host,
                &with_host(c.config.clone(), None, Some(GpuBackend::Auto)),
            );
            assert_eq!(
                status_of(&auto, id),
                Status::Fail,
                "{name}: auto with devices present passes real GPUs"
            );
            let mut no_devices = with_host(c.config.clone(), None, Some(GpuBackend::Auto));
            no_devices.global.gpu_allocation = None;
            no_devices
                .clusters
                .hpc
                .as_mut()
                .unwrap()
                .compute_nodes
                .gpu_enabled = false;
            if let Some(w) = no_devices
                .clusters
                .cloud
                .as_mut()
                .unwrap()
                .worker_nodes
                .gpu_workers
                .as_mut()
            {
                w.gpu_enabled = false;
            }
            let r = run_checks(&host, &no_devices);
            assert_eq!(status_of(&r, id), Status::Skip, "{name}: no GPU named");
            assert!(
                r.get(id).unwrap().message.contains("names no GPU"),
                "{name}"
            );
        }
    }

    #[test]
    fn a_missing_gpu_only_warns_under_auto() {
        let c = case("gpu-missing");
        let host = host_for(&c);
        let r = run_checks(
            &host,
            &with_host(c.config.clone(), None, Some(GpuBackend::Auto)),
        );
        assert_eq!(status_of(&r, "gpu"), Status::Warn);
        assert!(r
            .get("gpu")
            .unwrap()
            .message
            .contains("falls back to simulated"));
        let r = run_checks(
            &host,
            &with_host(c.config.clone(), None, Some(GpuBackend::Simulated)),
        );
        assert_eq!(status_of(&r, "gpu"), Status::Skip);
    }

    #[test]
    fn the_healthy_host_passes_the_default_config() {
        let c = case("healthy");
        let r = run_checks(&host_for(&c), &config_at(None));
        for check in &r.checks {
            // The default config simulates its GPUs: nothing real reaches a VM.
            let want = if check.id == "gpu" || check.id.starts_with("gpu.") || check.id == "ovmf" {
                Status::Skip
            } else {
                Status::Pass
            };
            assert_eq!(check.status, want, "{}: {}", check.id, check.message);
        }
    }

    #[test]
    fn kvm_membership_is_not_needed_under_tcg() {
        let c = case("user-not-in-groups");
        let host = host_for(&c);
        let r = run_checks(
            &host,
            &with_host(c.config.clone(), Some(Accelerator::Tcg), None),
        );
        let g = r.get("groups").unwrap();
        assert_eq!(g.status, Status::Fail);
        assert!(
            g.message.contains("not in the libvirt group"),
            "{}",
            g.message
        );
        assert!(!g.remedy.contains("kvm"), "{}", g.remedy);
        // alice is in both: passes; root needs nothing.
        let healthy = case("healthy");
        let r = run_checks(
            &FixtureHost::new(&healthy.dir, "root", 500 * GIB),
            &healthy.config,
        );
        assert!(r.get("groups").unwrap().message.contains("root"));
    }

    #[test]
    fn an_unknown_user_fails_groups_and_prepare_leaves_it_to_a_person() {
        let c = case("healthy");
        let host = FixtureHost::new(&c.dir, "mallory", 500 * GIB);
        let r = run_checks(&host, &c.config);
        let g = r.get("groups").unwrap();
        assert_eq!(g.status, Status::Fail);
        assert!(
            g.message.contains("no entry in /etc/passwd") && g.remedy.contains("adduser mallory"),
            "{g:?}"
        );
        let plan = hsw_core::host::plan(&host, &c.config);
        assert!(plan.is_empty());
        assert_eq!(
            plan.manual
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>(),
            ["groups"]
        );
    }

    #[test]
    fn resources_policy_warns_on_cpu_overcommit_and_thin_disks() {
        let c = case("healthy");
        let mut config = c.config.clone();
        // 8 host CPUs: 1 + 2*20 + 2 + 1 = 44 vCPUs > 4 * 8.
        config.clusters.hpc.as_mut().unwrap().compute_nodes.count = 20;
        config.clusters.hpc.as_mut().unwrap().compute_nodes.ip_range = "192.168.100.11-30".into();
        config
            .clusters
            .hpc
            .as_mut()
            .unwrap()
            .compute_nodes
            .cpu_cores = 2;
        let r = run_checks(&host_for(&c), &config);
        let res = r.get("resources").unwrap();
        assert_eq!(res.status, Status::Warn, "{}", res.message);
        assert!(res.message.contains("4:1"), "{}", res.message);

        // 44 GiB of virtual disk: 20 GiB free warns (thin overlays), 5 GiB fails (< 25%).
        let r = run_checks(&FixtureHost::new(&c.dir, "alice", 20 * GIB), &c.config);
        let res = r.get("resources").unwrap();
        assert_eq!(res.status, Status::Warn, "{}", res.message);
        assert!(
            res.message.contains("thin qcow2 overlays")
                && res
                    .message
                    .contains("/var/lib/hsw/images does not exist yet"),
            "{}",
            res.message
        );
        let r = run_checks(&FixtureHost::new(&c.dir, "alice", 5 * GIB), &c.config);
        assert_eq!(status_of(&r, "resources"), Status::Fail);
    }

    #[test]
    fn an_empty_or_hostile_root_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (rel, content) in [
            ("proc/cpuinfo", "processor : x\nflags : \u{0}\u{ff}\n::::\n"),
            (
                "proc/meminfo",
                "MemTotal: lots kB\nMemAvailable: 99999999999999999999999 kB\n",
            ),
            (
                "proc/net/route",
                "Iface\nbr0 ZZZZ 0 0 0 0 0 FFFFFFFF\nbr0 0064A8C0 0 0 0 0 0 00FF00FF\n",
            ),
            ("etc/group", ":::\nlibvirt\nkvm:x\n"),
            ("etc/passwd", "alice:x:notanumber:1\n"),
            (
                "var/lib/dpkg/status",
                "Package:\n\n\n\nStatus: install ok installed\n",
            ),
            ("sys/bus/pci/devices/0000:65:00.0/vendor", "\u{0}"),
        ] {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
        }
        std::fs::create_dir_all(root.join("sys/class/net/..")).ok();
        for name in ["tcg-fallback", "healthy"] {
            let c = case(name);
            for config in [
                c.config.clone(),
                config_at(Some(&fixtures().join("gpu-host.yaml"))),
            ] {
                let r = run_checks(&FixtureHost::new(root, "alice", 0), &config);
                assert_eq!(r.checks.len(), CHECK_IDS.len());
                for check in &r.checks {
                    assert!(!check.message.is_empty());
                }
            }
        }
    }

    #[test]
    fn fixture_and_system_hosts_agree_on_the_same_tree() {
        // Same tree, same user: only free disk (statvfs vs pinned) can differ.
        let c = case("user-not-in-groups");
        let system = hsw_core::host::SystemHost::new(&c.dir)
            .unwrap()
            .with_user(Some("bob".into()));
        let fixture = host_for(&c);
        let a = run_checks(&system, &c.config);
        let b = run_checks(&fixture, &c.config);
        for (x, y) in a.checks.iter().zip(&b.checks) {
            if x.id != "resources" {
                assert_eq!(x, y);
            }
        }
        assert_eq!(system.current_user(), fixture.current_user());
        assert!(!system.is_real_root());
    }

    #[test]
    fn full_packages_match_install_deps() {
        let script = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-deps.sh"),
        )
        .unwrap();
        let start = script
            .find("full_pkgs=(")
            .expect("full_pkgs in install-deps.sh")
            + "full_pkgs=(".len();
        let end = start + script[start..].find(')').unwrap();
        let listed: Vec<&str> = script[start..end].split_whitespace().collect();
        assert_eq!(
            listed, FULL_PACKAGES,
            "hsw_core::host::check::FULL_PACKAGES must equal install-deps.sh's full_pkgs"
        );
    }
}
