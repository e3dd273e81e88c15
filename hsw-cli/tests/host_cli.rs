//! `hsw-cli check` and `hsw-cli prepare` as a user runs them: exit codes, the text and JSON
//! forms, `--root` / `HSW_ROOT`, and apply / rollback on a copy of a fixture root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::path::PathBuf;
use std::process::Output;

use hsw_core::host::CHECK_IDS;
use testkit::repo;

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/hosts")
}

fn hsw(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = support::hsw().command(args);
    cmd.env_remove("SUDO_USER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hsw-cli")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn case_meta(case: &str) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(fixtures().join(case).join("case.json")).unwrap())
        .unwrap()
}

/// `check` arguments for a fixture case (its root, its config), and its user.
fn case_args(case: &str) -> (Vec<String>, String) {
    let meta = case_meta(case);
    let mut args = vec![
        "check".to_owned(),
        "--root".to_owned(),
        fixtures().join(case).display().to_string(),
    ];
    if let Some(c) = meta["config"].as_str() {
        args.push("--config".into());
        args.push(fixtures().join(case).join(c).display().to_string());
    }
    (args, meta["user"].as_str().unwrap().to_owned())
}

#[test]
fn every_fixture_case_gives_its_statuses_and_exit_code() {
    let mut n = 0;
    for entry in fs::read_dir(fixtures()).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("case.json").exists() {
            continue;
        }
        let case = dir.file_name().unwrap().to_string_lossy().into_owned();
        let meta = case_meta(&case);
        let (mut args, user) = case_args(&case);
        args.extend(["--format".into(), "json".into()]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = hsw(&argv, &[("HSW_USER", &user)]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{case}: {e}: {}", stdout(&out)));
        let checks = json["checks"].as_array().unwrap();
        assert_eq!(checks.len(), CHECK_IDS.len(), "{case}");
        for (id, want) in meta["expect"].as_object().unwrap() {
            // The binary measures free disk with statvfs on the real filesystem under the fixture
            // root, so `resources` can only be `warn` instead of `pass` on a full disk; the pinned
            // free-disk cases are in hsw-core/tests/host_checks.rs. A `fail` (memory) is the
            // fixture's own and still compared.
            if id == "resources" && want["status"] != "fail" {
                continue;
            }
            let got = checks.iter().find(|c| c["id"] == id.as_str()).unwrap();
            assert_eq!(
                got["status"], want["status"],
                "{case}: {id}: {}",
                got["message"]
            );
        }
        for c in checks {
            for key in ["id", "status", "message", "remedy"] {
                assert!(c[key].is_string(), "{case}: {key} in {c}");
            }
        }
        assert_eq!(
            i64::from(out.status.code().unwrap()),
            meta["exit"].as_i64().unwrap(),
            "{case}: {}",
            stdout(&out)
        );
        n += 1;
    }
    assert!(n >= 12);
}

#[test]
fn text_output_has_one_line_per_check_remedies_and_a_summary() {
    let (args, user) = case_args("user-not-in-groups");
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = hsw(&argv, &[("HSW_USER", &user)]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("hsw-cli check: host "), "{text}");
    let groups = lines
        .iter()
        .position(|l| l.starts_with("fail  groups"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        lines[groups + 1]
            .trim_start()
            .starts_with("fix: Run `sudo usermod -aG libvirt,kvm bob`"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("pass  cpu.virtualization")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} checks: ", CHECK_IDS.len()))
            && text.contains("1 fail")
            && text.contains("cannot run this config yet"),
        "{text}"
    );
}

#[test]
fn hsw_root_env_is_the_same_as_root_flag() {
    let root = fixtures().join("bridge-in-use");
    let a = hsw(
        &[
            "check",
            "--format",
            "json",
            "--root",
            root.to_str().unwrap(),
        ],
        &[("HSW_USER", "alice")],
    );
    let b = hsw(
        &["check", "--format", "json"],
        &[("HSW_USER", "alice"), ("HSW_ROOT", root.to_str().unwrap())],
    );
    assert_eq!(a.status.code(), Some(1));
    assert_eq!(stdout(&a), stdout(&b));
}

#[test]
fn it_cannot_run_without_a_root_or_a_readable_valid_config() {
    let out = hsw(&["check", "--root", "/nonexistent/hsw-root"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/hsw-root") && stderr(&out).contains("--root"),
        "{}",
        stderr(&out)
    );

    let out = hsw(&["check", "--config", "/nonexistent/cluster.yaml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read /nonexistent/cluster.yaml"),
        "{}",
        stderr(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    fs::write(&bad, "version: \"1.0\"\nmetadata: {name: x}\n").unwrap();
    let out = hsw(
        &[
            "check",
            "--config",
            bad.to_str().unwrap(),
            "--root",
            fixtures().join("healthy").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a valid cluster definition")
            && stderr(&out).contains("hsw-cli validate"),
        "{}",
        stderr(&out)
    );

    let file = dir.path().join("file");
    fs::write(&file, "").unwrap();
    let out = hsw(&["prepare", "--root", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
}

#[test]
fn the_real_host_can_be_checked() {
    // Whatever this machine is, check runs against it and reports every id.
    let out = hsw(&["check", "--format", "json"], &[]);
    assert_ne!(out.status.code(), Some(2), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["checks"].as_array().unwrap().len(), CHECK_IDS.len());
    let s = &json["summary"];
    let total: u64 = ["pass", "warn", "fail", "skip"]
        .iter()
        .map(|k| s[k].as_u64().unwrap())
        .sum();
    assert_eq!(total, CHECK_IDS.len() as u64);
}

#[test]
fn prepare_plans_applies_and_rolls_back_a_fixture_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    testkit::copy_tree(&fixtures().join("nouveau-loaded"), &root);
    let config = fixtures().join("gpu-host.yaml");
    let (r, c) = (root.to_str().unwrap(), config.to_str().unwrap());
    let env = [("HSW_USER", "bob")];
    let group_before = fs::read(root.join("etc/group")).unwrap();

    // The plan changes nothing.
    let out = hsw(&["prepare", "--root", r, "--config", c], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("create /etc/modprobe.d/hsw-blacklist-nouveau.conf (mode 0644)"),
        "{text}"
    );
    assert!(text.contains("run: update-initramfs -u"), "{text}");
    assert!(text.contains("+libvirt:x:110:alice,bob"), "{text}");
    assert!(text.contains("Nothing was changed"), "{text}");
    assert!(!root
        .join("etc/modprobe.d/hsw-blacklist-nouveau.conf")
        .exists());
    assert!(!root.join("var/lib/hsw").exists());

    let json = hsw(
        &["prepare", "--root", r, "--config", c, "--format", "json"],
        &env,
    );
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["plan"]["steps"][0]["kind"], "write");
    assert!(v["applied"].is_null());

    // Apply: files written, commands skipped.
    let out = hsw(&["prepare", "--root", r, "--config", c, "--apply"], &env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("Applied as run 0001-"), "{text}");
    assert!(
        text.contains("`update-initramfs -u`: skipped: alternate root"),
        "{text}"
    );
    assert!(
        fs::read_to_string(root.join("etc/modprobe.d/hsw-blacklist-nouveau.conf"))
            .unwrap()
            .contains("blacklist nouveau\n")
    );
    assert!(fs::read_to_string(root.join("etc/group"))
        .unwrap()
        .contains("libvirt:x:110:alice,bob\n"));

    // Check now sees the blacklist (nouveau is still loaded until a reboot) and the groups.
    let out = hsw(
        &["check", "--root", r, "--config", c, "--format", "json"],
        &env,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = |id: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == id)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("groups"), "pass");
    assert_eq!(status("nouveau"), "fail");

    // A second apply has nothing to write.
    let out = hsw(&["prepare", "--root", r, "--config", c, "--apply"], &env);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("Nothing to change."),
        "{}",
        stdout(&out)
    );

    // An edit in between makes rollback refuse, --force overrides.
    let mut group = fs::read_to_string(root.join("etc/group")).unwrap();
    group.push_str("extra:x:2000:\n");
    fs::write(root.join("etc/group"), &group).unwrap();
    let out = hsw(&["prepare", "--root", r, "--rollback"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("Refusing to roll back run 0001-")
            && stdout(&out).contains("--force"),
        "{}",
        stdout(&out)
    );
    assert_eq!(fs::read_to_string(root.join("etc/group")).unwrap(), group);
    let out = hsw(&["prepare", "--root", r, "--rollback", "--force"], &env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("restored /etc/group"),
        "{}",
        stdout(&out)
    );
    assert_eq!(fs::read(root.join("etc/group")).unwrap(), group_before);
    assert!(!root
        .join("etc/modprobe.d/hsw-blacklist-nouveau.conf")
        .exists());

    let out = hsw(&["prepare", "--root", r, "--rollback"], &env);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("Nothing to roll back"),
        "{}",
        stdout(&out)
    );

    // --force needs --rollback; --apply and --rollback exclude each other.
    assert_eq!(
        hsw(&["prepare", "--root", r, "--force"], &env)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        hsw(&["prepare", "--root", r, "--apply", "--rollback"], &env)
            .status
            .code(),
        Some(2)
    );
}
