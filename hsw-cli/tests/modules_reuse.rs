//! The modules as other teams use them, outside this repository:
//!
//! - each module README's Inputs and Outputs tables are what `hsw_core::render::module_docs` reads from the
//!   module's `variables.tf` and `outputs.tf` (`UPDATE_EXPECT=1` rewrites them);
//! - each README's usage pins the module by a `git::` source with `?ref=v<workspace version>`;
//! - a consumer root in a temporary folder takes the modules from a bare Git repository by `git::file://` with
//!   `?ref=` (the modules committed and tagged there, then a later commit on the branch that breaks them):
//!   `terraform init` + `validate` of the cluster example (whose module reaches `../network` and `../vm-group`
//!   inside the fetched repository) and the network example at the tag pass, `plan` of the network example against
//!   libvirt's in-memory test driver lists its network, and the branch head fails, so the tag is what was used.
//!
//! Terraform and the provider come as in `generate_terraform.rs` (testkit's filesystem mirror, offline); a missing
//! Terraform or Git is skipped unless `HSW_REQUIRE_TERRAFORM=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use hsw_core::render::module_docs;
use testkit::terraform::{self, Terraform};
use testkit::{copy_tree_except, repo};

const MODULES: [&str; 4] = ["network", "vm-group", "gpu-partition", "cluster"];

/// The tag a release of this workspace carries.
fn tag() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

/// The workspace's repository address (`[workspace.package] repository` in `Cargo.toml`).
fn repository() -> String {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let line = manifest
        .lines()
        .find(|l| l.starts_with("repository = "))
        .expect("Cargo.toml names the workspace's repository");
    line["repository = ".len()..].trim_matches('"').to_owned()
}

#[test]
fn readme_tables_are_generated_from_the_modules() {
    for m in MODULES {
        let dir = repo().join("modules").join(m);
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        let tables = module_docs::tables(&read("variables.tf"), &read("outputs.tf"))
            .unwrap_or_else(|e| panic!("modules/{m}: {e}"));
        let readme = module_docs::replace_tables(&read("README.md"), &tables)
            .unwrap_or_else(|e| panic!("modules/{m}/README.md: {e}"));
        testkit::golden::check(dir.join("README.md"), &readme);
    }
}

#[test]
fn readmes_pin_the_modules_by_version() {
    let repository = repository();
    for m in MODULES {
        let readme =
            std::fs::read_to_string(repo().join("modules").join(m).join("README.md")).unwrap();
        let pinned = format!(
            "source = \"git::{repository}.git//modules/{m}?ref={}\"",
            tag()
        );
        assert!(
            readme.contains(&pinned),
            "modules/{m}/README.md does not show `{pinned}` in its usage: pin the module by the workspace's version"
        );
        assert!(
            readme.contains(&format!("source = \"../hsw/modules/{m}\"")),
            "modules/{m}/README.md does not show the local path form `../hsw/modules/{m}`"
        );
    }
}

fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=hsw test",
            "-c",
            "user.email=test@hsw.invalid",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {} failed: {}",
        args.join(" "),
        testkit::describe(&o)
    );
}

/// `example`'s text with every module source `from` replaced by `to` (there is at least one).
fn sourced(example: &str, from: &str, to: &str) -> String {
    let from = format!("\"{from}\"");
    assert!(
        example
            .lines()
            .any(|l| l.trim_start().starts_with("source") && l.ends_with(&from)),
        "the example no longer has the source {from}"
    );
    example.replace(&from, &format!("\"{to}\""))
}

#[test]
fn a_consumer_outside_the_repository_uses_the_modules_by_git_tag() {
    let tfs = terraform::binaries();
    if tfs.is_empty() || testkit::require::tool("git", testkit::require::TERRAFORM).is_none() {
        return;
    }
    let provider = terraform::provider_binary();
    let tmp = tempfile::tempdir().unwrap();
    let cli_config = terraform::mirror(tmp.path(), &provider).unwrap();

    // The modules, committed and tagged, then broken on the branch: a consumer of the tag must not see it.
    let src = tmp.path().join("src");
    copy_tree_except(&repo().join("modules"), &src.join("modules"), &|n| {
        n == ".terraform" || n == ".terraform.lock.hcl" || n.ends_with(".tfstate")
    });
    git(&src, &["init", "-q"]);
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "modules"]);
    git(&src, &["tag", &tag()]);
    let vars = src.join("modules/network/variables.tf");
    let mut text = std::fs::read_to_string(&vars).unwrap();
    text.push_str(
        "\nvariable \"added_after_the_tag\" {\n  description = \"x\"\n  type        = string\n}\n",
    );
    std::fs::write(&vars, text).unwrap();
    git(&src, &["commit", "-q", "-am", "a required input"]);
    let bare = tmp.path().join("hsw.git");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            &src.display().to_string(),
            &bare.display().to_string(),
        ],
    );
    let url = |m: &str, r: &str| format!("git::file://{}//modules/{m}?ref={r}", bare.display());

    let examples = repo().join("modules");
    let read = |p: &str| std::fs::read_to_string(examples.join(p)).unwrap();
    let cluster = |r: &str| {
        let t = sourced(
            &read("cluster/examples/basic/main.tf"),
            "../../../gpu-partition",
            &url("gpu-partition", r),
        );
        sourced(&t, "../..", &url("cluster", r))
    };
    let network = |r: &str| {
        sourced(
            &read("network/examples/basic/main.tf"),
            "../..",
            &url("network", r),
        )
    };
    let write_root = |name: &str, text: String| {
        let dir = tmp.path().join("consumers").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("main.tf"), text).unwrap();
        dir
    };
    let cluster_at_tag = write_root("cluster", cluster(&tag()));
    let network_at_tag = write_root("network", network(&tag()));
    let network_at_head = write_root("network-head", network("main"));

    for (label, bin) in tfs {
        let tf = Terraform::new(bin, &cli_config).env("HSW_LIBVIRT_URI", "test:///default");
        println!("--- {label} ({})", tf.version());
        for dir in [&cluster_at_tag, &network_at_tag, &network_at_head] {
            let _ = std::fs::remove_dir_all(dir.join(".terraform"));
            let _ = std::fs::remove_file(dir.join(".terraform.lock.hcl"));
            tf.expect(dir, &["init", "-input=false", "-no-color"], 0)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
        }
        for dir in [&cluster_at_tag, &network_at_tag] {
            tf.expect(dir, &["validate", "-no-color"], 0)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
        }
        let plan = tf
            .expect(&network_at_tag, &["plan", "-input=false", "-no-color"], 0)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert!(
            plan.contains("module.network.hsw_network.this will be created"),
            "{label}: the plan of the tagged network module does not create its network:\n{plan}"
        );
        let (code, out, err) = tf
            .run(&network_at_head, &["validate", "-no-color"])
            .unwrap()
            .parts();
        let head = format!("{out}{err}");
        assert_eq!(
            code, 1,
            "{label}: the branch head should fail validation:\n{head}"
        );
        assert!(
            head.contains("added_after_the_tag"),
            "{label}: the branch head failed for another reason:\n{head}"
        );
    }
}
