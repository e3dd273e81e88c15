//! `scripts/build-image.sh`'s cache trusts content, not sizes: a cached image is reused only while every file
//! has the sha256 its manifest records (`--check` asks without building). Needs `jq` (skipped without it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use testkit::{ok, repo, require};

fn build_image(out: &Path, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo().join("scripts/build-image.sh"))
        .arg("--out")
        .arg(out)
        .args(args)
        .env_remove("HSW_IMAGE_DIR")
        .output()
        .unwrap()
}

fn sha256(path: &Path) -> String {
    let o = ok(Command::new("sha256sum").arg(path).output().unwrap());
    o.split_whitespace().next().unwrap().to_owned()
}

/// A cached image as the script leaves it: three files and a manifest with their sizes and sha256.
fn cache(out: &Path) -> std::path::PathBuf {
    let key = ok(build_image(out, &["--print-key"])).trim().to_owned();
    let dir = out.join(&key);
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for name in ["base.qcow2", "vmlinuz", "initrd.img"] {
        let p = dir.join(name);
        std::fs::write(&p, format!("the {name} of {key}")).unwrap();
        files.push(serde_json::json!({
            "name": name,
            "size": std::fs::metadata(&p).unwrap().len(),
            "sha256": sha256(&p),
        }));
    }
    let manifest = serde_json::json!({"key": key, "files": files});
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    dir
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_cached_image_is_reused_only_while_its_files_have_their_sha256() {
    if require::tool("jq", "HSW_REQUIRE_JQ").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = cache(tmp.path());

    let o = build_image(tmp.path(), &["--check"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = build_image(tmp.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let paths = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        paths.contains(&format!("base={}", dir.join("base.qcow2").display())),
        "{paths}"
    );

    // The same size, another content: no longer complete, and the log says which file and both sums.
    let base = dir.join("base.qcow2");
    let text = std::fs::read_to_string(&base).unwrap();
    std::fs::write(&base, text.to_uppercase()).unwrap();
    let o = build_image(tmp.path(), &["--check"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("base.qcow2 has sha256 ")
            && e.contains(", its manifest says ")
            && e.contains("rebuilding"),
        "{e}"
    );

    // A manifest of the old form (sizes only) is not trusted either.
    std::fs::write(&base, &text).unwrap();
    let m = dir.join("manifest.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&m).unwrap()).unwrap();
    for f in v["files"].as_array_mut().unwrap() {
        f.as_object_mut().unwrap().remove("sha256");
    }
    std::fs::write(&m, v.to_string()).unwrap();
    let o = build_image(tmp.path(), &["--check"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("without a sha256"), "{}", stderr(&o));
}
