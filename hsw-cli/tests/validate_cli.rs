//! `hsw-cli validate`: exit codes, and golden files for the text and JSON forms.
//! Regenerate the expectations with `UPDATE_EXPECT=1 cargo test -p hsw-cli --test validate_cli`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Output;

use testkit::repo;

fn hsw(args: &[&str]) -> Output {
    support::hsw().run(args)
}

#[test]
fn golden_text_and_json() {
    let dir = repo().join("tests/validate");
    let mut cases = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let rel = format!(
            "tests/validate/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        let text = hsw(&["validate", &rel]);
        let json = hsw(&["validate", &rel, "--format", "json"]);
        assert_eq!(text.status.code(), json.status.code(), "{rel}");
        let code = text.status.code().unwrap();
        assert!(
            code == 0 || code == 1,
            "{rel}: exit {code}: {}",
            String::from_utf8_lossy(&text.stderr)
        );
        let stem = path.with_extension("");
        testkit::golden::check(
            stem.with_extension("txt"),
            &format!("exit: {code}\n{}", String::from_utf8_lossy(&text.stdout)),
        );
        testkit::golden::check(
            stem.with_extension("json"),
            &String::from_utf8_lossy(&json.stdout),
        );
        let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(parsed["valid"], code == 0, "{rel}");
        cases += 1;
    }
    assert!(cases >= 5);
}

#[test]
fn exit_codes() {
    assert_eq!(
        hsw(&["validate"]).status.code(),
        Some(0),
        "embedded default"
    );
    assert_eq!(
        hsw(&["validate", "examples/production-like.yaml"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        hsw(&["validate", "tests/validate/seed-example.yaml"])
            .status
            .code(),
        Some(1)
    );
    let missing = hsw(&["validate", "no/such/file.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read no/such/file.yaml"));
    assert_eq!(hsw(&["validate", "--format", "xml"]).status.code(), Some(2));
    assert_eq!(hsw(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn json_positions_are_one_based_and_point_at_the_node() {
    let out = hsw(&[
        "validate",
        "tests/validate/typo-and-friends.yaml",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = v["errors"].as_array().unwrap();
    let unknown = errors
        .iter()
        .find(|e| e["rule"] == "schema.unknown-key")
        .unwrap();
    assert_eq!(unknown["path"], "/clusters/hpc");
    assert_eq!(unknown["line"], 15);
    assert_eq!(unknown["column"], 5);
    let time = errors.iter().find(|e| e["rule"] == "slurm.time-format");
    // schema errors stop the typed rules only where the model cannot be built
    assert!(time.is_none() || time.unwrap()["line"] == 29);
}

#[test]
fn schema_command_prints_the_embedded_schema() {
    let out = hsw(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let on_disk = std::fs::read_to_string(repo().join("schemas/cluster.schema.json")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), on_disk);
}
