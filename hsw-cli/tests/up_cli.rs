//! `hsw-cli image build`, `up`, `down` and the generate options `up` relies on, without libvirt: the image
//! script is a stand-in (through `HSW_REPO`), and `up` is stopped before it touches anything. The real run is
//! `tests/e2e/up.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use testkit::repo;

fn hsw_in(dir: &Path, envs: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut c = support::hsw().command(args);
    c.current_dir(dir);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run hsw-cli")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A directory that looks like the repository, with a stand-in build-image.sh that records its arguments.
fn fake_repo(script_body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::create_dir_all(dir.path().join("modules")).unwrap();
    std::fs::write(scripts.join("sandbox.sh"), "#!/bin/sh\nexit 1\n").unwrap();
    let script = scripts.join("build-image.sh");
    std::fs::write(&script, script_body).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn image_build_wraps_the_script_with_an_argument_vector() {
    let repo = fake_repo(
        r#"#!/usr/bin/env bash
set -eu
printf '%s\n' "$@" > "$HSW_TEST_ARGS"
out=$4
mkdir -p "$out/k"
for f in base.qcow2 vmlinuz initrd.img manifest.json; do echo x > "$out/k/$f"; done
echo "build-image: progress on stderr" >&2
printf 'base=%s\nkernel=%s\ninitrd=%s\nmanifest=%s\n' "$out/k/base.qcow2" "$out/k/vmlinuz" "$out/k/initrd.img" "$out/k/manifest.json"
"#,
    );
    let cache = repo.path().join("cache dir; $(echo no)");
    let args_file = repo.path().join("args");
    let o = hsw_in(
        repo.path(),
        &[("HSW_REPO", repo.path()), ("HSW_TEST_ARGS", &args_file)],
        &[
            "image",
            "build",
            "--role",
            "cloud",
            "--out",
            cache.to_str().unwrap(),
            "--force",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains(&format!("base={}/k/base.qcow2", cache.display())),
        "{stdout}"
    );
    assert!(stdout.contains("kernel="), "{stdout}");
    assert!(
        text(&o.stderr).contains("progress on stderr"),
        "the script's progress streams through"
    );
    // The directory with a `;` and `$(...)` reached the script as one argument, untouched.
    let got = std::fs::read_to_string(&args_file).unwrap();
    assert_eq!(
        got,
        format!("--role\ncloud\n--out\n{}\n--force\n", cache.display())
    );
}

#[test]
fn image_build_failure_is_a_sentence() {
    let repo = fake_repo("#!/usr/bin/env bash\necho 'build-image: run as root' >&2\nexit 1\n");
    let o = hsw_in(
        repo.path(),
        &[("HSW_REPO", repo.path())],
        &["image", "build"],
    );
    assert_eq!(o.status.code(), Some(1));
    let stderr = text(&o.stderr);
    assert!(stderr.contains("build-image: run as root"), "{stderr}");
    assert!(
        stderr.contains("error: scripts/build-image.sh failed"),
        "{stderr}"
    );
}

#[test]
fn image_build_with_a_missing_file_is_refused() {
    let repo = fake_repo("#!/usr/bin/env bash\nprintf 'base=/nonexistent/base.qcow2\\n'\n");
    let o = hsw_in(
        repo.path(),
        &[("HSW_REPO", repo.path())],
        &["image", "build"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("there is no such file"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn hsw_repo_that_is_not_the_repository_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let o = hsw_in(dir.path(), &[("HSW_REPO", dir.path())], &["image", "build"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("does not hold the hsw repository"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn up_refuses_an_invalid_config_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, "version: \"1.0\"\nmetadata: {name: x}\n").unwrap();
    let state = dir.path().join("state");
    let o = hsw_in(
        &repo(),
        &[],
        &[
            "up",
            "--skip-check",
            "--config",
            cfg.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("is not valid"),
        "{}",
        text(&o.stderr)
    );
    assert!(
        !state.exists(),
        "nothing may be created for an invalid config"
    );
}

#[test]
fn up_refuses_a_bad_sandbox_name_and_conflicting_flags() {
    let o = hsw_in(&repo(), &[], &["up", "--sandbox-name", "a b;c"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("the sandbox name `a b;c` is not valid"),
        "{}",
        text(&o.stderr)
    );
    let o = hsw_in(&repo(), &[], &["down", "--sandbox", "--no-sandbox"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn generate_points_the_provider_at_a_sandbox_without_changing_the_config_hash() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tf");
    let plain = dir.path().join("plain");
    let o = hsw_in(
        &repo(),
        &[],
        &[
            "generate",
            "--out",
            out.to_str().unwrap(),
            "--libvirt-uri",
            "qemu+unix:///system?socket=/run/hsw-sandbox/x/libvirt/libvirt-sock",
            "--pool-dir",
            "/var/lib/hsw-sandbox/x/pool",
            "--base-image",
            "/var/lib/hsw-sandbox/x/pool/images/k/base.qcow2",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = hsw_in(
        &repo(),
        &[],
        &["generate", "--out", plain.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let providers = std::fs::read_to_string(out.join("providers.tf")).unwrap();
    assert!(
        providers.contains(
            "uri         = \"qemu+unix:///system?socket=/run/hsw-sandbox/x/libvirt/libvirt-sock\""
        ),
        "{providers}"
    );
    assert!(
        providers.contains("pool_dir    = \"/var/lib/hsw-sandbox/x/pool\""),
        "{providers}"
    );
    let main = std::fs::read_to_string(out.join("main.tf")).unwrap();
    assert!(
        main.contains("/var/lib/hsw-sandbox/x/pool/images/k/base.qcow2"),
        "{main}"
    );
    // The header (config name and sha256) is the configuration's, whatever the host overrides.
    let first = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        first(&out.join("versions.tf")),
        first(&plain.join("versions.tf"))
    );
}
