//! The registry documentation in `provider/docs/` is generated from the schemas and the example files: this test
//! fails when the committed pages differ, and rewrites them with `UPDATE_EXPECT=1`. It also checks the examples
//! are formatted (`terraform fmt -check`) when Terraform is on `PATH`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use terraform_provider_hsw::hsw::docs::render_all;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn docs_are_generated_from_the_schemas() {
    let root = repo();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).ok();
    let pages = render_all(&read);
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for (path, content) in &pages {
        testkit::golden::check(docs.join(path), content);
    }
    // Every example is embedded somewhere.
    let all: String = pages.iter().map(|(_, c)| c.as_str()).collect();
    for ex in [
        "examples/provider/provider.tf",
        "examples/resources/hsw_network/resource.tf",
        "examples/resources/hsw_network/import.sh",
        "examples/resources/hsw_vm/resource.tf",
        "examples/resources/hsw_vm/import.sh",
        "examples/data-sources/hsw_host/data-source.tf",
    ] {
        let text = read(ex).unwrap_or_else(|| panic!("{ex} is missing"));
        assert!(all.contains(text.trim_end()), "{ex} is not in the docs");
    }
    // Every attribute is documented.
    for (_, content) in &pages {
        assert!(!content.contains(") \n"), "an attribute has no description");
    }
}

#[test]
fn examples_are_formatted() {
    let Some(tf) = testkit::terraform::on_path() else {
        testkit::require::skip(testkit::require::TERRAFORM, "terraform is not on PATH");
        return;
    };
    let out = std::process::Command::new(tf)
        .args(["fmt", "-check", "-diff", "-recursive"])
        .arg(repo().join("examples"))
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "terraform fmt -check failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
