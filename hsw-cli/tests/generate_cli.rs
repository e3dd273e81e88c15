//! `hsw-cli generate`: the committed `terraform/` is what the embedded default generates, only changed files
//! are written, stale generated files are removed and nothing else is, invalid configurations are refused.
//! Regenerate `terraform/` with `UPDATE_EXPECT=1 cargo test -p hsw-cli --test generate_cli` (which runs
//! `hsw-cli generate` in the repository root).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Output;

use testkit::repo;

fn hsw(dir: &Path, args: &[&str]) -> Output {
    support::hsw().dir(dir).run(args)
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A scratch root with `modules/` (a link to the repository's) so that sources come out as `../modules`.
fn scratch() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo().join("modules"), tmp.path().join("modules")).unwrap();
    tmp
}

fn generated_files(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            text.starts_with(hsw_core::render::terraform::HEADER_PREFIX)
                .then(|| (e.file_name().to_string_lossy().into_owned(), text))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn committed_terraform_directory_is_what_the_default_generates() {
    if testkit::golden::updating() {
        let o = hsw(&repo(), &["generate"]);
        assert!(o.status.success(), "{}", text(&o));
        return;
    }
    let tmp = scratch();
    let o = hsw(tmp.path(), &["generate"]);
    assert!(o.status.success(), "{}", text(&o));
    let fresh = generated_files(&tmp.path().join("terraform"));
    let committed = generated_files(&repo().join("terraform"));
    let names = |v: &[(String, String)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&committed),
        names(&fresh),
        "terraform/ is stale: run `cargo run -p hsw-cli -- generate` (or UPDATE_EXPECT=1 cargo test -p hsw-cli --test generate_cli)"
    );
    for ((name, want), (_, got)) in committed.iter().zip(&fresh) {
        assert!(
            want == got,
            "terraform/{name} is stale: run `cargo run -p hsw-cli -- generate` (or UPDATE_EXPECT=1 cargo test -p hsw-cli --test generate_cli)\n--- committed\n{want}\n--- generated\n{got}"
        );
    }
}

#[test]
fn writes_only_changes_and_removes_only_its_own_stale_files() {
    let tmp = scratch();
    let out = tmp.path().join("terraform");
    let o = hsw(tmp.path(), &["generate"]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(stdout.contains("created terraform/main.tf"), "{stdout}");

    // Second run: nothing to do.
    let o = hsw(tmp.path(), &["generate"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("is up to date"),
        "{}",
        text(&o)
    );

    // A stale generated file goes (one from an hsw-cli before the body hash too); other files stay; a file
    // hsw did not write stops everything until --force.
    std::fs::write(out.join("main.tf"), "# edited\n").unwrap();
    let stale = format!(
        "{}old.yaml (sha256 00); do not edit\n",
        hsw_core::render::terraform::HEADER_PREFIX
    );
    std::fs::write(out.join("old.tf"), stale).unwrap();
    std::fs::write(out.join("mine.tf"), "# my own file\n").unwrap();
    std::fs::create_dir_all(out.join(".terraform")).unwrap();
    for args in [&["generate", "--check"][..], &["generate"]] {
        let o = hsw(tmp.path(), args);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            stderr.contains(&format!(
                "{} (no generated-file header)",
                out.join("main.tf").display()
            )) && stderr.contains("--force"),
            "{stderr}"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("main.tf")).unwrap(),
            "# edited\n"
        );
        assert!(out.join("old.tf").exists(), "{args:?} changed something");
    }

    let o = hsw(tmp.path(), &["generate", "--force"]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        stdout,
        "updated terraform/main.tf\nremoved terraform/old.tf\n",
        "{}",
        text(&o)
    );
    assert!(!out.join("old.tf").exists());
    assert!(out.join("mine.tf").exists());
    assert!(out.join(".terraform").is_dir());
}

#[test]
fn edited_generated_files_are_refused_and_links_never_followed() {
    let tmp = scratch();
    let out = tmp.path().join("terraform");
    let o = hsw(tmp.path(), &["generate"]);
    assert!(o.status.success(), "{}", text(&o));
    let fresh = generated_files(&out);

    // An edit below an intact header is found by the body hash.
    let main = out.join("main.tf");
    let edited = format!("{}# my change\n", std::fs::read_to_string(&main).unwrap());
    std::fs::write(&main, &edited).unwrap();
    // A generated file no longer generated, edited since: not removed either.
    let versions = std::fs::read_to_string(out.join("versions.tf")).unwrap();
    std::fs::write(out.join("old.tf"), format!("{versions}# mine\n")).unwrap();
    let o = hsw(tmp.path(), &["generate"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    for name in ["main.tf", "old.tf"] {
        assert!(
            stderr.contains(&format!(
                "{} (changed since hsw-cli generate wrote it)",
                out.join(name).display()
            )),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains(&format!("hsw-cli generate --force --out {}", out.display())),
        "{stderr}"
    );
    // Nothing was written: not even the files nobody edited.
    assert_eq!(std::fs::read_to_string(&main).unwrap(), edited);
    assert_eq!(
        std::fs::read_to_string(out.join("providers.tf")).unwrap(),
        fresh.iter().find(|(n, _)| n == "providers.tf").unwrap().1
    );
    assert!(out.join("old.tf").exists());

    // With --force, through the fixed temporary name the writer used to use, planted as a link.
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    std::os::unix::fs::symlink(&victim, out.join(".main.tf.tmp")).unwrap();
    let o = hsw(tmp.path(), &["generate", "--force"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert_eq!(generated_files(&out), fresh);

    // A link at a generated file's path is refused, naming it; its target is untouched.
    std::fs::remove_file(&main).unwrap();
    std::os::unix::fs::symlink(&victim, &main).unwrap();
    let o = hsw(tmp.path(), &["generate", "--force"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        stderr.contains(&format!("cannot write {}", main.display()))
            && stderr.contains("symbolic link"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
}

#[test]
fn module_sources_follow_the_output_directory() {
    let tmp = scratch();
    let o = hsw(
        tmp.path(),
        &[
            "generate",
            "--out",
            "deploy/dev",
            "--config",
            &repo().join("examples/cpu-only.yaml").display().to_string(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let main = std::fs::read_to_string(tmp.path().join("deploy/dev/main.tf")).unwrap();
    assert!(
        main.contains("source = \"../../modules/cluster\""),
        "{main}"
    );
    assert!(!main.contains("gpu_partition"), "{main}");
    let vars = std::fs::read_to_string(tmp.path().join("deploy/dev/variables.tf")).unwrap();
    assert!(
        vars.contains("\"../.hsw/ssh/hpc/id_ed25519.pub\""),
        "{vars}"
    );
}

#[test]
fn invalid_configuration_is_refused_with_its_diagnostics() {
    let tmp = scratch();
    let bad = tmp.path().join("bad.yaml");
    let source = std::fs::read_to_string(repo().join("examples/cpu-only.yaml"))
        .unwrap()
        .replace("count: 3", "count: 9");
    std::fs::write(&bad, source).unwrap();
    let o = hsw(tmp.path(), &["generate", "--config", "bad.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(stderr.contains("ip.range-size"), "{stderr}");
    assert!(stderr.contains("nothing was generated"), "{stderr}");
    assert!(!tmp.path().join("terraform").exists());
}
