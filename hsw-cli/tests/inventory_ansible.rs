//! The inventories as Ansible itself reads them: `ansible-inventory -i <file> --list` on the YAML, INI and
//! JSON files and on the binary as an inventory script gives the same groups and host variables as our
//! `--list`; `ansible-playbook --syntax-check` passes on `ansible/playbook-hpc.yml` with the generated
//! inventory and variables; `ansible/lint.sh` (ansible-lint, production profile) passes when ansible-lint is
//! installed. Skipped when Ansible is absent, unless `HSW_REQUIRE_ANSIBLE` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use testkit::{ok, repo, require};

use serde_json::Value;

const STATE: &str = "/var/lib/hsw-test/.hsw";

fn hsw(args: &[&str]) -> Output {
    support::hsw().run(args)
}

fn inventory(config: &str, extra: &[&str]) -> String {
    let cfg = format!("examples/{config}.yaml");
    let tf = format!("tests/fixtures/terraform-output/{config}.json");
    let mut args = vec![
        "inventory",
        "--config",
        &cfg,
        "--tf-output",
        &tf,
        "--state-dir",
        STATE,
    ];
    args.extend_from_slice(extra);
    ok(hsw(&args))
}

/// Groups (sorted hosts, sorted children; `all`, `ungrouped` and empty groups left out, as
/// ansible-inventory leaves empty groups out) and host variables.
type Canonical = (BTreeMap<String, (Vec<String>, Vec<String>)>, Value);

fn canonical(list: &Value) -> Canonical {
    let mut groups = BTreeMap::new();
    for (name, g) in list.as_object().unwrap() {
        if matches!(name.as_str(), "_meta" | "all" | "ungrouped") {
            continue;
        }
        let names = |k: &str| {
            let mut v: Vec<String> = g
                .get(k)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect();
            v.sort();
            v
        };
        let (hosts, children) = (names("hosts"), names("children"));
        if !hosts.is_empty() || !children.is_empty() {
            groups.insert(name.clone(), (hosts, children));
        }
    }
    (groups, list["_meta"]["hostvars"].clone())
}

fn ansible_inventory(source: &Path, env: &[(&str, &Path)]) -> Value {
    let mut c = Command::new("ansible-inventory");
    c.arg("-i").arg(source).arg("--list");
    c.env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "false")
        .env("ANSIBLE_LOCALHOST_WARNING", "false")
        .env_remove("HSW_CONFIG")
        .env_remove("HSW_TF_OUTPUT")
        .env_remove("HSW_STATE_DIR");
    for (k, v) in env {
        c.env(k, v);
    }
    serde_json::from_str(&ok(c.output().unwrap())).unwrap()
}

fn compare_with_ansible(config: &str) {
    let ours = canonical(&serde_json::from_str(&inventory(config, &["--list"])).unwrap());
    let dir = tempfile::tempdir().unwrap();
    for (format, file) in [
        ("yaml", "inventory.yml"),
        ("ini", "hosts.ini"),
        ("json", "inventory.json"),
    ] {
        let path = dir.path().join(file);
        std::fs::write(&path, inventory(config, &["--format", format])).unwrap();
        let theirs = canonical(&ansible_inventory(&path, &[]));
        assert_eq!(
            theirs.0, ours.0,
            "{config}: groups of the {format} inventory"
        );
        assert_eq!(
            theirs.1, ours.1,
            "{config}: host variables of the {format} inventory"
        );
    }
    // The binary as an inventory script (Ansible runs it with `--list` only).
    let cfg = repo().join(format!("examples/{config}.yaml"));
    let tf = repo().join(format!("tests/fixtures/terraform-output/{config}.json"));
    let theirs = canonical(&ansible_inventory(
        Path::new(env!("CARGO_BIN_EXE_hsw-cli")),
        &[
            ("HSW_CONFIG", &cfg),
            ("HSW_TF_OUTPUT", &tf),
            ("HSW_STATE_DIR", Path::new(STATE)),
        ],
    ));
    assert_eq!(theirs, ours, "{config}: the binary as an inventory script");
}

#[test]
fn ansible_reads_the_default_config_inventory_like_we_do() {
    if require::tool("ansible-inventory", require::ANSIBLE).is_some() {
        compare_with_ansible("minimal-dev");
    }
}

#[test]
fn ansible_reads_the_production_like_inventory_like_we_do() {
    if require::tool("ansible-inventory", require::ANSIBLE).is_some() {
        compare_with_ansible("production-like");
    }
}

#[test]
fn the_hpc_playbook_passes_syntax_check_with_the_generated_inventory() {
    if require::tool("ansible-playbook", require::ANSIBLE).is_none() {
        return;
    }
    for config in ["minimal-dev", "production-like", "cpu-only"] {
        let state = tempfile::tempdir().unwrap();
        let cfg = format!("examples/{config}.yaml");
        let tf = format!("tests/fixtures/terraform-output/{config}.json");
        let out = ok(hsw(&[
            "ansible",
            "hpc",
            "--config",
            &cfg,
            "--tf-output",
            &tf,
            "--state-dir",
            state.path().to_str().unwrap(),
            "--",
            "--syntax-check",
        ]));
        assert!(out.contains("playbook: ansible/playbook-hpc.yml"), "{out}");
    }
}

#[test]
fn ansible_lint_passes_when_installed() {
    let out = Command::new("bash")
        .arg(repo().join("ansible/lint.sh"))
        .current_dir(repo())
        .output()
        .unwrap();
    ok(out);
}
