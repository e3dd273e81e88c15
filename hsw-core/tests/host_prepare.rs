//! `prepare` over copies of the fixture roots: the plan (golden `prepare.txt` per case), the
//! files after apply, byte-exact restore after rollback, refusal when a file was edited in
//! between, and idempotence. Regenerate the goldens with
//! `UPDATE_EXPECT=1 cargo test -p hsw-core --test host_prepare`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// One module, so that `cargo test -p hsw-core host` selects these tests too.
mod host_prepare {

    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use hsw_core::config::{validate_str, ClusterConfig, DEFAULT_CONFIG};
    use hsw_core::host::prepare::{self, Step};
    use hsw_core::host::{run_checks, FixtureHost, RollbackOutcome, Status};

    const GIB: u64 = 1024 * 1024 * 1024;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hosts")
    }

    fn meta(case: &str) -> serde_json::Value {
        serde_json::from_str(&fs::read_to_string(fixtures().join(case).join("case.json")).unwrap())
            .unwrap()
    }

    fn config_for(case: &str) -> ClusterConfig {
        let m = meta(case);
        let text = match m["config"].as_str() {
            Some(c) => fs::read_to_string(fixtures().join(case).join(c)).unwrap(),
            None => DEFAULT_CONFIG.to_owned(),
        };
        validate_str(&text).config.unwrap()
    }

    fn gpu_config() -> ClusterConfig {
        validate_str(&fs::read_to_string(fixtures().join("gpu-host.yaml")).unwrap())
            .config
            .unwrap()
    }

    fn default_config() -> ClusterConfig {
        validate_str(DEFAULT_CONFIG).config.unwrap()
    }

    /// Every entry under `root` (except the prepare state): path → (kind, mode, bytes or link target).
    fn snapshot(root: &Path) -> Vec<(String, String, u32, Vec<u8>)> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String, u32, Vec<u8>)>) {
            for entry in fs::read_dir(dir).unwrap() {
                let p = entry.unwrap().path();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                if rel == "var/lib/hsw" {
                    continue;
                }
                let meta = fs::symlink_metadata(&p).unwrap();
                let mode = meta.permissions().mode();
                if meta.file_type().is_symlink() {
                    out.push((
                        rel,
                        "link".into(),
                        0,
                        fs::read_link(&p)
                            .unwrap()
                            .display()
                            .to_string()
                            .into_bytes(),
                    ));
                } else if meta.is_dir() {
                    out.push((rel, "dir".into(), mode, Vec::new()));
                    walk(root, &p, out);
                } else {
                    out.push((rel, "file".into(), mode, fs::read(&p).unwrap()));
                }
            }
        }
        let mut out = Vec::new();
        walk(root, root, &mut out);
        out.sort();
        out
    }

    fn temp_case(case: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        testkit::copy_tree(&fixtures().join(case), &root);
        (dir, root)
    }

    fn writes(plan: &prepare::Plan) -> Vec<String> {
        plan.steps
            .iter()
            .filter_map(|s| {
                if let Step::Write { path, .. } = s {
                    Some(path.clone())
                } else {
                    None
                }
            })
            .collect()
    }

    fn runs(plan: &prepare::Plan) -> Vec<String> {
        plan.steps
            .iter()
            .filter_map(|s| {
                if let Step::Run { command, .. } = s {
                    Some(command.display())
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn plans_match_their_goldens_and_change_nothing() {
        let mut n = 0;
        for entry in fs::read_dir(fixtures()).unwrap() {
            let dir = entry.unwrap().path();
            if !dir.join("case.json").exists() {
                continue;
            }
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let m = meta(&name);
            let before = snapshot(&dir);
            let host = FixtureHost::new(&dir, m["user"].as_str().unwrap(), 500 * GIB);
            let plan = prepare::plan(&host, &config_for(&name));
            testkit::golden::check(dir.join("prepare.txt"), &plan.render_text());
            let after = snapshot(&dir);
            if !testkit::golden::updating() {
                assert!(before == after, "{name}: planning changed the tree");
            }
            assert!(
                host.runner.calls().is_empty(),
                "{name}: planning ran a command"
            );
            n += 1;
        }
        assert!(n >= 12);
    }

    #[test]
    fn the_plans_hold_the_expected_changes() {
        let plan_of = |case: &str| {
            let host = FixtureHost::new(
                &fixtures().join(case),
                meta(case)["user"].as_str().unwrap(),
                500 * GIB,
            );
            prepare::plan(&host, &config_for(case))
        };
        let healthy = plan_of("healthy");
        assert!(
            healthy.is_empty() && healthy.manual.is_empty() && healthy.notes.is_empty(),
            "{healthy:#?}"
        );
        assert_eq!(healthy.render_text(), "Nothing to change.\n");

        let p = plan_of("nouveau-loaded");
        assert_eq!(writes(&p), ["/etc/modprobe.d/hsw-blacklist-nouveau.conf"]);
        assert_eq!(runs(&p), ["update-initramfs -u"]);
        assert!(p.notes.iter().any(|n| n.contains("Reboot")));
        assert!(
            p.render_text().contains("+blacklist nouveau\n")
                && p.render_text().contains("+options nouveau modeset=0\n")
        );

        let p = plan_of("user-not-in-groups");
        assert_eq!(writes(&p), ["/etc/group", "/etc/gshadow"]);
        let text = p.render_text();
        assert!(
            text.contains("   -kvm:x:104:alice\n") && text.contains("   +kvm:x:104:alice,bob\n"),
            "{text}"
        );
        assert!(text.contains("   +libvirt:!::alice,bob\n"), "{text}");
        assert!(p.notes.iter().any(|n| n.contains("log out")));

        let p = plan_of("no-iommu");
        assert_eq!(writes(&p), ["/etc/default/grub"]);
        assert_eq!(runs(&p), ["update-grub"]);
        assert!(
            p.render_text()
                .contains("+GRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=on iommu=pt\""),
            "{}",
            p.render_text()
        );

        let p = plan_of("missing-packages");
        assert!(writes(&p).is_empty());
        let r = runs(&p);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0], "DEBIAN_FRONTEND=noninteractive apt-get update -qq");
        assert_eq!(
        r[1],
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --allow-downgrades qemu-system-x86 qemu-utils mmdebstrap ansible jq"
    );
        assert!(p.notes.iter().any(|n| n.contains("Terraform")));
        assert!(p
            .notes
            .iter()
            .any(|n| n.contains("qemu-utils") && n.contains("alternate root")));

        // What prepare cannot change is listed with its remedy.
        let p = plan_of("bridge-in-use");
        assert!(p.is_empty());
        assert_eq!(p.manual.len(), 1);
        assert_eq!(p.manual[0].id, "conflicts");
        let p = plan_of("no-virtualization");
        assert_eq!(
            p.manual.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["cpu.virtualization", "kvm"]
        );
    }

    #[test]
    fn apply_then_rollback_is_byte_exact_and_commands_never_run() {
        for case in [
            "nouveau-loaded",
            "user-not-in-groups",
            "no-iommu",
            "missing-packages",
        ] {
            let (_tmp, root) = temp_case(case);
            // A restrictive mode must come back too.
            if root.join("etc/gshadow").exists() {
                fs::set_permissions(root.join("etc/gshadow"), fs::Permissions::from_mode(0o640))
                    .unwrap();
            }
            let original = snapshot(&root);
            let host = FixtureHost::new(&root, meta(case)["user"].as_str().unwrap(), 500 * GIB);
            let config = config_for(case);
            let plan = prepare::plan(&host, &config);
            let report = prepare::apply(&host, &plan).unwrap().unwrap();
            assert!(report.error.is_none(), "{case}: {:?}", report.error);
            assert!(
                host.runner.calls().is_empty(),
                "{case}: a command reached the runner under an alternate root"
            );
            for c in &report.manifest.commands {
                assert_eq!(c.outcome, "skipped: alternate root", "{case}");
            }
            assert_eq!(report.manifest.files.len(), writes(&plan).len(), "{case}");
            assert!(
                report.dir.starts_with("/var/lib/hsw/prepare/0001-"),
                "{case}: {}",
                report.dir
            );
            let manifest_path = root
                .join(report.dir.trim_start_matches('/'))
                .join("manifest.json");
            let manifest: serde_json::Value =
                serde_json::from_str(&fs::read_to_string(&manifest_path).unwrap()).unwrap();
            assert_eq!(manifest["state"], "applied");

            // The files say what the plan said.
            for step in &plan.steps {
                if let Step::Write { path, after, .. } = step {
                    assert_eq!(
                        &fs::read_to_string(root.join(path.trim_start_matches('/'))).unwrap(),
                        after,
                        "{case}: {path}"
                    );
                }
            }
            if case == "user-not-in-groups" {
                assert_eq!(
                    fs::metadata(root.join("etc/gshadow"))
                        .unwrap()
                        .permissions()
                        .mode()
                        & 0o7777,
                    0o640
                );
                let r = run_checks(&host, &config);
                assert_eq!(
                    r.get("groups").unwrap().status,
                    Status::Pass,
                    "{}",
                    r.get("groups").unwrap().message
                );
            }

            // Idempotent: what was fixed is not planned again.
            let again = prepare::plan(&host, &config);
            assert!(
                writes(&again).is_empty(),
                "{case}: second plan {:#?}",
                again.steps
            );
            if case != "missing-packages" {
                assert!(again.is_empty(), "{case}: second plan {:#?}", again.steps);
            }

            match prepare::rollback(&host, false).unwrap() {
                RollbackOutcome::Restored { files, earlier, .. } => {
                    assert_eq!(files, writes(&plan), "{case}");
                    assert_eq!(earlier, 0);
                }
                other => panic!("{case}: {other:?}"),
            }
            assert!(
                snapshot(&root) == original,
                "{case}: the tree differs after rollback"
            );
            match prepare::rollback(&host, false).unwrap() {
                RollbackOutcome::Nothing(why) => {
                    assert!(why.contains("already rolled back"), "{why}")
                }
                other => panic!("{case}: {other:?}"),
            }
            let manifest: serde_json::Value =
                serde_json::from_str(&fs::read_to_string(&manifest_path).unwrap()).unwrap();
            assert!(manifest["rolled_back"].is_object(), "{case}");
            assert!(host.runner.calls().is_empty());
        }
    }

    #[test]
    fn rollback_refuses_a_file_edited_since_unless_forced() {
        let (_tmp, root) = temp_case("user-not-in-groups");
        let original = snapshot(&root);
        let host = FixtureHost::new(&root, "bob", 500 * GIB);
        let plan = prepare::plan(&host, &default_config());
        prepare::apply(&host, &plan).unwrap().unwrap();
        let group = root.join("etc/group");
        let mut edited = fs::read_to_string(&group).unwrap();
        edited.push_str("docker:x:999:bob\n");
        fs::write(&group, &edited).unwrap();

        match prepare::rollback(&host, false).unwrap() {
            RollbackOutcome::Refused { changed, .. } => {
                assert_eq!(changed.len(), 1);
                assert!(
                    changed[0].starts_with("/etc/group changed since run 0001-"),
                    "{}",
                    changed[0]
                );
            }
            other => panic!("{other:?}"),
        }
        // Nothing was touched by the refusal.
        assert_eq!(fs::read_to_string(&group).unwrap(), edited);
        assert_ne!(
            fs::read_to_string(root.join("etc/gshadow")).unwrap(),
            fs::read_to_string(fixtures().join("user-not-in-groups/etc/gshadow")).unwrap()
        );

        match prepare::rollback(&host, true).unwrap() {
            RollbackOutcome::Restored { files, .. } => {
                assert_eq!(files, ["/etc/group", "/etc/gshadow"])
            }
            other => panic!("{other:?}"),
        }
        assert!(snapshot(&root) == original);
    }

    #[test]
    fn a_removed_file_counts_as_changed_unless_the_run_created_it() {
        // An edited file that was removed since the run: refused, then restored with --force.
        let (_tmp, root) = temp_case("user-not-in-groups");
        let original = snapshot(&root);
        let host = FixtureHost::new(&root, "bob", 500 * GIB);
        prepare::apply(&host, &prepare::plan(&host, &default_config()))
            .unwrap()
            .unwrap();
        fs::remove_file(root.join("etc/gshadow")).unwrap();
        match prepare::rollback(&host, false).unwrap() {
            RollbackOutcome::Refused { changed, .. } => {
                assert!(
                    changed[0].contains("/etc/gshadow") && changed[0].contains("removed"),
                    "{changed:?}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            prepare::rollback(&host, true).unwrap(),
            RollbackOutcome::Restored { .. }
        ));
        assert!(snapshot(&root) == original);

        // A file the run created and someone removed is already as before the run: no refusal.
        let (_tmp, root) = temp_case("nouveau-loaded");
        let original = snapshot(&root);
        let host = FixtureHost::new(&root, "alice", 500 * GIB);
        prepare::apply(&host, &prepare::plan(&host, &gpu_config()))
            .unwrap()
            .unwrap();
        fs::remove_file(root.join("etc/modprobe.d/hsw-blacklist-nouveau.conf")).unwrap();
        assert!(matches!(
            prepare::rollback(&host, false).unwrap(),
            RollbackOutcome::Restored { .. }
        ));
        assert!(snapshot(&root) == original);
    }

    #[test]
    fn directories_created_by_a_run_are_removed_by_its_rollback() {
        // tcg-fallback has no /etc/modprobe.d; with real GPUs nouveau must be blacklisted.
        let (_tmp, root) = temp_case("tcg-fallback");
        let original = snapshot(&root);
        let host = FixtureHost::new(&root, "root", 500 * GIB);
        let plan = prepare::plan(&host, &gpu_config());
        assert!(
            writes(&plan).contains(&"/etc/modprobe.d/hsw-blacklist-nouveau.conf".to_owned()),
            "{plan:#?}"
        );
        let report = prepare::apply(&host, &plan).unwrap().unwrap();
        assert_eq!(report.manifest.created_dirs, ["/etc/modprobe.d"]);
        assert!(matches!(
            prepare::rollback(&host, false).unwrap(),
            RollbackOutcome::Restored { .. }
        ));
        assert!(snapshot(&root) == original);
    }

    #[test]
    fn runs_roll_back_newest_first() {
        // bob on the nouveau-loaded tree: the default config (simulated GPUs) only needs the groups;
        // the GPU config then also needs the nouveau blacklist.
        let (_tmp, root) = temp_case("nouveau-loaded");
        let original = snapshot(&root);
        let host = FixtureHost::new(&root, "bob", 500 * GIB);
        let first = prepare::plan(&host, &default_config());
        assert_eq!(writes(&first), ["/etc/group", "/etc/gshadow"]);
        let r1 = prepare::apply(&host, &first).unwrap().unwrap();
        let after_first = snapshot(&root);
        let second = prepare::plan(&host, &gpu_config());
        assert_eq!(
            writes(&second),
            ["/etc/modprobe.d/hsw-blacklist-nouveau.conf"]
        );
        let r2 = prepare::apply(&host, &second).unwrap().unwrap();
        assert!(r1.manifest.run_id.starts_with("0001-") && r2.manifest.run_id.starts_with("0002-"));

        match prepare::rollback(&host, false).unwrap() {
            RollbackOutcome::Restored {
                run_id, earlier, ..
            } => {
                assert_eq!(run_id, r2.manifest.run_id);
                assert_eq!(earlier, 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(snapshot(&root) == after_first);
        assert!(matches!(
            prepare::rollback(&host, false).unwrap(),
            RollbackOutcome::Restored { .. }
        ));
        assert!(snapshot(&root) == original);
        assert!(matches!(
            prepare::rollback(&host, false).unwrap(),
            RollbackOutcome::Nothing(_)
        ));
    }

    #[test]
    fn apply_refuses_when_a_file_changed_after_planning() {
        let (_tmp, root) = temp_case("no-iommu");
        let host = FixtureHost::new(&root, "alice", 500 * GIB);
        let plan = prepare::plan(&host, &gpu_config());
        fs::write(root.join("etc/default/grub"), "GRUB_DEFAULT=1\n").unwrap();
        let err = prepare::apply(&host, &plan).unwrap_err();
        assert!(
            err.contains("/etc/default/grub changed since the plan was made"),
            "{err}"
        );
        assert_eq!(
            fs::read_to_string(root.join("etc/default/grub")).unwrap(),
            "GRUB_DEFAULT=1\n"
        );
    }

    fn mode_of(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn backups_keep_their_modes_in_private_directories() {
        let (_tmp, root) = temp_case("user-not-in-groups");
        fs::set_permissions(root.join("etc/gshadow"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(root.join("etc/group"), fs::Permissions::from_mode(0o644)).unwrap();
        // A state directory an older hsw-cli made world-readable is narrowed.
        let state = root.join("var/lib/hsw/prepare");
        fs::create_dir_all(&state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).unwrap();
        let host = FixtureHost::new(&root, "bob", 500 * GIB);
        let report = prepare::apply(&host, &prepare::plan(&host, &default_config()))
            .unwrap()
            .unwrap();
        assert!(report.error.is_none(), "{:?}", report.error);
        let run = state.join(&report.manifest.run_id);
        assert_eq!(mode_of(&state), 0o700, "the state directory");
        assert_eq!(mode_of(&run), 0o700, "the run directory");
        assert_eq!(mode_of(&run.join("files")), 0o700, "the backups' directory");
        assert_eq!(mode_of(&run.join("manifest.json")), 0o600);
        // The parents keep the usual mode (the image pool lives under /var/lib/hsw too).
        assert_eq!(mode_of(&root.join("var/lib/hsw")) & 0o005, 0o005);
        let mut seen = Vec::new();
        for f in &report.manifest.files {
            let backup = run.join(f.backup.as_deref().unwrap());
            let original = mode_of(&root.join(f.path.trim_start_matches('/')));
            assert_eq!(mode_of(&backup), original, "the backup of {}", f.path);
            assert_eq!(f.mode, format!("{original:04o}"));
            seen.push((f.path.clone(), original));
        }
        assert_eq!(
            seen,
            [
                ("/etc/group".to_owned(), 0o644),
                ("/etc/gshadow".to_owned(), 0o640)
            ]
        );
        // Rollback restores the content with the same modes.
        assert!(matches!(
            prepare::rollback(&host, false).unwrap(),
            RollbackOutcome::Restored { .. }
        ));
        assert_eq!(mode_of(&root.join("etc/gshadow")), 0o640);
        assert_eq!(mode_of(&root.join("etc/group")), 0o644);
    }

    #[test]
    fn a_link_at_a_planned_path_is_refused_before_anything_is_written() {
        let (_tmp, root) = temp_case("no-iommu");
        let host = FixtureHost::new(&root, "alice", 500 * GIB);
        let grub = root.join("etc/default/grub");
        let elsewhere = root.join("elsewhere");
        fs::rename(&grub, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &grub).unwrap();
        let before = fs::read(&elsewhere).unwrap();
        let plan = prepare::plan(&host, &gpu_config());
        assert!(writes(&plan).contains(&"/etc/default/grub".to_owned()));
        let err = prepare::apply(&host, &plan).unwrap_err();
        assert!(
            err.contains("/etc/default/grub is a symbolic link")
                && err.contains("run `hsw-cli prepare` again"),
            "{err}"
        );
        assert_eq!(fs::read(&elsewhere).unwrap(), before);
        assert!(fs::symlink_metadata(&grub)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(prepare::list_runs(&host).unwrap().is_empty());
    }

    #[test]
    fn nothing_to_roll_back_on_a_fresh_host() {
        let (_tmp, root) = temp_case("healthy");
        let host = FixtureHost::new(&root, "alice", 500 * GIB);
        match prepare::rollback(&host, false).unwrap() {
            RollbackOutcome::Nothing(why) => {
                assert!(why.contains("has not changed this host"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            prepare::apply(&host, &prepare::plan(&host, &gpu_config())).unwrap(),
            None
        );
    }
}
