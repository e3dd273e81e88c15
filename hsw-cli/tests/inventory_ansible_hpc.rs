//! `hsw-cli ansible hpc` without a cluster: the files it writes to the state directory (inventory, Slurm
//! files, playbook variables), the per-cluster SSH key pair and Munge key with their modes (kept across runs),
//! and the `ansible-playbook` argument vector (a fake ansible-playbook records it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

use testkit::repo;

/// `ansible hpc` needs ssh-keygen; its absence is a skip, or a failure with `HSW_REQUIRE_ANSIBLE=1`.
fn have_ssh_keygen() -> bool {
    testkit::require::tool("ssh-keygen", testkit::require::ANSIBLE).is_some()
}

fn hpc(state: &Path, extra: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = support::hsw().command(&[
        "ansible",
        "hpc",
        "--config",
        "examples/minimal-dev.yaml",
        "--tf-output",
        "tests/fixtures/terraform-output/minimal-dev.json",
        "--state-dir",
    ]);
    c.arg(state).args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn keys_and_files_are_written_with_their_modes() {
    if !have_ssh_keygen() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".hsw");
    let o = hpc(&state, &["--dry-run"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);

    let private = state.join("ssh/hpc/id_ed25519");
    let public = state.join("ssh/hpc/id_ed25519.pub");
    let munge = state.join("munge/hpc/munge.key");
    assert_eq!(mode(&private), 0o600);
    assert_eq!(mode(&munge), 0o400);
    assert_eq!(std::fs::metadata(&munge).unwrap().len(), 1024);
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("ssh/hpc")), 0o700);
    assert!(std::fs::read_to_string(&public)
        .unwrap()
        .starts_with("ssh-ed25519 "));
    // The cloud cluster's key pair exists too (the inventory names it; generate hands it to cloud-init).
    assert_eq!(mode(&state.join("ssh/cloud/id_ed25519")), 0o600);
    // The private key is never printed.
    let secret = std::fs::read_to_string(&private).unwrap();
    let body = secret.lines().nth(1).unwrap();
    assert!(!out.contains(body) && !String::from_utf8_lossy(&o.stderr).contains(body));
    assert!(out.contains(&format!(
        "SSH public key for cloud-init: {}",
        public.display()
    )));

    // The rendered files and the variables the playbook reads.
    let slurm_conf = std::fs::read_to_string(state.join("slurm/hpc/slurm.conf")).unwrap();
    assert!(slurm_conf.contains("ClusterName=hsw_dev\n"));
    let vars: Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("ansible/hpc-vars.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(vars["hsw_slurm_conf"], slurm_conf.as_str());
    assert_eq!(vars["hsw_munge_key_file"], munge.to_str().unwrap());
    // minimal-dev's GPU units are simulated: role nvidia_guest does nothing there.
    assert_eq!(vars["hsw_gpus_simulated"], true);
    assert_eq!(
        vars["hsw_slurm_state_save_location"],
        "/var/lib/slurm/slurmctld"
    );
    for key in [
        "hsw_gres_conf",
        "hsw_cgroup_conf",
        "hsw_slurmdbd_conf",
        "hsw_slurm_spool_dir",
        "hsw_slurm_log_dir",
        "hsw_shared_home",
        "hsw_shared_scratch",
        "hsw_nfs_server",
        "hsw_hpc_subnet",
    ] {
        assert!(vars[key].is_string(), "{key}");
    }
    // slurmdbd's database password: made once beside the Munge key, 0600, handed over as a file (the variables
    // file and the output name its path, never its value).
    let password_file = state.join("munge/hpc/slurmdbd.password");
    assert_eq!(mode(&password_file), 0o600);
    let password = std::fs::read_to_string(&password_file).unwrap();
    assert_eq!(password.len(), 32);
    assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(
        vars["hsw_slurmdbd_password_file"],
        password_file.to_str().unwrap()
    );
    let vars_text = std::fs::read_to_string(state.join("ansible/hpc-vars.json")).unwrap();
    assert!(!vars_text.contains(&password) && !out.contains(&password));
    assert!(!vars["hsw_slurmdbd_conf"]
        .as_str()
        .unwrap()
        .contains(&password));
    assert_eq!(vars["hsw_nfs_server"], "192.168.100.10");
    assert_eq!(vars["hsw_hpc_users"][0]["name"], "alice");
    assert_eq!(vars["hsw_slurm_accounts"]["cluster"], "hsw_dev");
    let inventory = std::fs::read_to_string(state.join("ansible/inventory.yml")).unwrap();
    assert!(inventory.contains(&format!(
        "ansible_ssh_private_key_file: \"{}\"",
        private.display()
    )));

    // A second run keeps the keys.
    let munge_before = std::fs::read(&munge).unwrap();
    let public_before = std::fs::read_to_string(&public).unwrap();
    let o = hpc(&state, &["--dry-run"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&munge).unwrap(), munge_before);
    assert_eq!(
        std::fs::read_to_string(&password_file).unwrap(),
        password,
        "the database password is made once"
    );
    assert_eq!(std::fs::read_to_string(&public).unwrap(), public_before);

    // A lost public half is derived again from the private key; loose modes are tightened.
    std::fs::remove_file(&public).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = hpc(&state, &["--dry-run"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(&public)
            .unwrap()
            .split_whitespace()
            .nth(1),
        public_before.split_whitespace().nth(1)
    );
    assert_eq!(mode(&private), 0o600);
}

#[test]
fn ansible_playbook_gets_an_argument_vector() {
    if !have_ssh_keygen() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state dir");
    let log = dir.path().join("argv");
    let fake = dir.path().join("ansible-playbook");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > '{}'\necho PLAY RECAP\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = hpc(
        &state,
        &["--", "--check", "--diff"],
        &[("HSW_ANSIBLE_PLAYBOOK", &fake)],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Its output streams through.
    assert!(String::from_utf8_lossy(&o.stdout).contains("PLAY RECAP"));
    let argv: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        argv,
        [
            "-i".to_owned(),
            state.join("ansible/inventory.yml").display().to_string(),
            "-e".to_owned(),
            format!("@{}", state.join("ansible/hpc-vars.json").display()),
            "ansible/playbook-hpc.yml".to_owned(),
            "--check".to_owned(),
            "--diff".to_owned(),
        ]
    );

    // A failing playbook fails the command.
    std::fs::write(&fake, "#!/bin/sh\nexit 2\n").unwrap();
    let o = hpc(&state, &[], &[("HSW_ANSIBLE_PLAYBOOK", &fake)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ansible-playbook failed"));

    // A missing ansible-playbook is a sentence.
    let o = hpc(
        &state,
        &[],
        &[(
            "HSW_ANSIBLE_PLAYBOOK",
            Path::new("/nonexistent/ansible-playbook"),
        )],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("install Ansible"));
}

#[test]
fn a_config_without_hpc_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cloud-only.yaml");
    let source = std::fs::read_to_string(repo().join("examples/cpu-only.yaml")).unwrap();
    let start = source.find("  hpc:\n    controller").unwrap();
    let end = source.find("  cloud:\n    control_plane").unwrap();
    let cloud_only = format!("{}{}", &source[..start], &source[end..]);
    std::fs::write(&cfg, cloud_only).unwrap();
    let o = support::hsw()
        .command(&["ansible", "hpc", "--planned", "--dry-run", "--config"])
        .arg(&cfg)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("defines no hpc cluster"));
    assert!(!dir.path().join("state").exists());
}
