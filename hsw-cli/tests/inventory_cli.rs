//! `hsw-cli inventory` as a user (and Ansible) runs it: golden inventories for two configs in the three file
//! formats and the dynamic-inventory JSON; the `--list` / `--host` contract, also when the binary is run as an
//! inventory script; `terraform output -json` run in the Terraform directory (a fake `terraform`); the errors.
//! Regenerate the expectations with `UPDATE_EXPECT=1 cargo test -p hsw-cli --test inventory_cli`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use serde_json::Value;

use testkit::repo;

/// The state directory in the goldens (absolute, so the files do not depend on the checkout).
const STATE: &str = "/var/lib/hsw-test/.hsw";

fn hsw(args: &[&str]) -> Output {
    support::hsw().run(args)
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "hsw-cli failed ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn inventory(config: &str, tf: &str, extra: &[&str]) -> String {
    let cfg = format!("examples/{config}.yaml");
    let out = format!("tests/fixtures/terraform-output/{tf}.json");
    let mut args = vec![
        "inventory",
        "--config",
        &cfg,
        "--tf-output",
        &out,
        "--state-dir",
        STATE,
    ];
    args.extend_from_slice(extra);
    stdout(&hsw(&args))
}

fn golden(case: &str, file: &str, actual: &str) {
    let path = repo()
        .join("tests/fixtures/terraform-output/expected")
        .join(case)
        .join(file);
    testkit::golden::check(path, actual);
}

fn goldens(case: &str) {
    golden(
        case,
        "inventory.yml",
        &inventory(case, case, &["--format", "yaml"]),
    );
    golden(
        case,
        "inventory.ini",
        &inventory(case, case, &["--format", "ini"]),
    );
    golden(
        case,
        "inventory.json",
        &inventory(case, case, &["--format", "json"]),
    );
    golden(case, "list.json", &inventory(case, case, &["--list"]));
}

#[test]
fn default_config_inventory_matches_golden_files() {
    goldens("minimal-dev");
}

#[test]
fn production_like_inventory_matches_golden_files() {
    goldens("production-like");
}

fn list(config: &str, tf: &str) -> Value {
    serde_json::from_str(&inventory(config, tf, &["--list"])).unwrap()
}

const GROUPS: [&str; 11] = [
    "hpc",
    "slurm_controller",
    "slurm_compute",
    "cloud",
    "k8s_control_plane",
    "k8s_cpu_workers",
    "k8s_gpu_workers",
    "kube_control_plane",
    "kube_node",
    "etcd",
    "k8s_cluster",
];

#[test]
fn list_follows_the_dynamic_inventory_contract() {
    for (config, tf) in [
        ("minimal-dev", "minimal-dev"),
        ("production-like", "production-like"),
        ("cpu-only", "cpu-only"),
    ] {
        let v = list(config, tf);
        let hostvars = v["_meta"]["hostvars"].as_object().unwrap();
        for g in GROUPS {
            let group = v[g]
                .as_object()
                .unwrap_or_else(|| panic!("{config}: no group {g}"));
            for h in group
                .get("hosts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                assert!(hostvars.contains_key(h.as_str().unwrap()), "{config}: {h}");
            }
            for c in group
                .get("children")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                assert!(v.get(c.as_str().unwrap()).is_some(), "{config}: child {c}");
            }
        }
        for (name, vars) in hostvars {
            for key in [
                "ansible_host",
                "ansible_user",
                "ansible_ssh_private_key_file",
                "ansible_ssh_common_args",
                "ansible_python_interpreter",
                "gpu_units",
            ] {
                assert!(vars.get(key).is_some(), "{config}: {name} lacks {key}");
            }
            assert_eq!(vars["ansible_python_interpreter"], "/usr/bin/python3");
            assert_eq!(vars["ansible_user"], "hsw");
        }
        // Every group name is a valid identifier.
        for g in v.as_object().unwrap().keys().filter(|k| *k != "_meta") {
            assert!(
                g.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                    && g.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{g}"
            );
        }
    }
    // CPU-only: the GPU groups exist, empty.
    let v = list("cpu-only", "cpu-only");
    assert_eq!(v["k8s_gpu_workers"]["hosts"], serde_json::json!([]));
    assert_eq!(
        v["_meta"]["hostvars"]["cpu-only-compute-1"]["slurm_gres"],
        ""
    );
}

#[test]
fn host_prints_one_host_or_an_empty_object() {
    let all = list("minimal-dev", "minimal-dev");
    let one: Value = serde_json::from_str(&inventory(
        "minimal-dev",
        "minimal-dev",
        &["--host", "hsw-dev-compute-2"],
    ))
    .unwrap();
    assert_eq!(one, all["_meta"]["hostvars"]["hsw-dev-compute-2"]);
    assert_eq!(one["slurm_gres"], "gpu:2g.20gb:1");
    let none = inventory("minimal-dev", "minimal-dev", &["--host", "nope"]);
    assert_eq!(none.trim(), "{}");
}

fn script(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = support::hsw().command(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn the_binary_is_an_inventory_script() {
    let cfg = repo().join("examples/minimal-dev.yaml");
    let tf = repo().join("tests/fixtures/terraform-output/minimal-dev.json");
    let env = [
        ("HSW_CONFIG", cfg.to_str().unwrap()),
        ("HSW_TF_OUTPUT", tf.to_str().unwrap()),
        ("HSW_STATE_DIR", STATE),
    ];
    let as_script: Value = serde_json::from_str(&stdout(&script(&["--list"], &env))).unwrap();
    assert_eq!(as_script, list("minimal-dev", "minimal-dev"));
    let host: Value =
        serde_json::from_str(&stdout(&script(&["--host", "hsw-dev-controller-1"], &env))).unwrap();
    assert_eq!(host["ansible_host"], "192.168.100.10");
    let unknown = stdout(&script(&["--host", "other"], &env));
    assert_eq!(unknown.trim(), "{}");
}

#[test]
fn terraform_output_runs_in_the_terraform_directory() {
    let dir = tempfile::tempdir().unwrap();
    let tf_dir = dir.path().join("terraform");
    std::fs::create_dir(&tf_dir).unwrap();
    let fake = dir.path().join("terraform-fake");
    let log = dir.path().join("calls");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$(pwd) $*\" >> '{}'\ncat '{}'\n",
            log.display(),
            repo()
                .join("tests/fixtures/terraform-output/production-like.json")
                .display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = support::hsw()
        .command(&[
            "inventory",
            "--config",
            "examples/production-like.yaml",
            "--terraform-dir",
        ])
        .arg(&tf_dir)
        .arg("--list")
        .env("HSW_TERRAFORM", &fake)
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.trim(),
        format!("{} output -json", tf_dir.canonicalize().unwrap().display())
    );
    // The state directory defaults to `.hsw` next to the Terraform directory.
    let key = v["_meta"]["hostvars"]["hyperscaler-emulation-compute-1"]
        ["ansible_ssh_private_key_file"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        key,
        format!("{}/.hsw/ssh/hpc/id_ed25519", dir.path().display())
    );

    // Terraform failing is reported with its own words.
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'Error: No outputs found' >&2\nexit 1\n",
    )
    .unwrap();
    let out = support::hsw()
        .command(&[
            "inventory",
            "--config",
            "examples/production-like.yaml",
            "--terraform-dir",
        ])
        .arg(&tf_dir)
        .env("HSW_TERRAFORM", &fake)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`terraform output -json` failed in") && err.contains("No outputs found"),
        "{err}"
    );
}

#[test]
fn errors_are_sentences_with_exit_codes() {
    let o = hsw(&["inventory", "--terraform-dir", "/nonexistent/terraform"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the Terraform directory /nonexistent/terraform does not exist"),
        "{err}"
    );

    let o = hsw(&[
        "inventory",
        "--tf-output",
        "tests/fixtures/terraform-output/wrong-count.json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("do not match cluster.yaml"), "{err}");
    assert!(err.contains("asks for 2"), "{err}");

    let o = hsw(&["inventory", "--tf-output", "/nonexistent.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("cannot read the Terraform output /nonexistent.json"));

    // A config that does not validate prints its report.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "version: \"1.0\"\n").unwrap();
    let o = hsw(&["inventory", "--planned", "--config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!o.stderr.is_empty());
}

#[test]
fn planned_inventory_needs_no_terraform() {
    let o = hsw(&["inventory", "--planned", "--state-dir", STATE, "--list"]);
    let planned: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(planned, list("minimal-dev", "minimal-dev"));
}
