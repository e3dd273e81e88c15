//! The hostile-input suite: every shape a review or the fuzzer found, fed to the commands that read a cluster
//! definition (`validate` as text and JSON, `gpu plan`, `generate --check`), each run under an address-space limit
//! and a CPU-time limit (`prlimit`) and a wall-clock limit (`timeout`). Each run must end by itself with exit 1
//! (the input is invalid) or 2 (it cannot be read), and say which limit or rule it hit. A run killed by a limit
//! (exit 124 from `timeout`, 134 from an allocation failure, 152 from SIGXCPU) is a failure: the input was not
//! bounded. The generated shapes are full size (a few hundred KB to 5 MiB), not the fuzzer's small seeds, which
//! run here too (`fuzz/seeds/`, and any crash artifacts the fuzzer left in `fuzz/artifacts/`).
//!
//! The limits are generous for a debug build (the release binary needs a fraction): they catch a missing bound
//! (gigabytes, minutes), not a slow one; speed is measured by benchmarks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Address space per run: far above what a bounded parse of a 4 MiB file needs, far below what one unbounded
/// alias expansion takes.
const MEMORY_LIMIT_BYTES: u64 = 1 << 30;
/// CPU seconds per run (SIGXCPU after).
const CPU_LIMIT_SECS: u32 = 60;
/// Wall-clock seconds per run (a FIFO that nobody writes must not block a reader this long).
const WALL_LIMIT_SECS: u32 = 90;

/// What a run must end with: the exit code and a phrase of its output.
struct Expect {
    code: i32,
    says: &'static str,
}

fn invalid(says: &'static str) -> Expect {
    Expect { code: 1, says }
}

fn unreadable(says: &'static str) -> Expect {
    Expect { code: 2, says }
}

/// The commands that read a cluster definition, for the file `f`.
fn readers(f: &Path) -> Vec<Vec<String>> {
    let f = f.display().to_string();
    let tmp = std::env::temp_dir().join("hsw-hostile-generate-never-written");
    [
        vec!["validate", "--format", "text", &f],
        vec!["validate", "--format", "json", &f],
        vec!["gpu", "plan", "--config", &f],
        vec![
            "generate",
            "--check",
            "--config",
            &f,
            "--out",
            &tmp.display().to_string(),
        ],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(str::to_owned).collect())
    .collect()
}

/// Runs `args` under the limits; panics with the whole story when it does not end as `expect` says.
fn run_bounded(args: &[String], expect: &Expect) {
    let mut c = Command::new("timeout");
    c.args(["--kill-after=5", &WALL_LIMIT_SECS.to_string(), "prlimit"])
        .arg(format!("--as={MEMORY_LIMIT_BYTES}"))
        .arg(format!("--cpu={CPU_LIMIT_SECS}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_hsw-cli"))
        .args(args)
        .current_dir(testkit::repo())
        .env("NO_COLOR", "1");
    testkit::cli::scrub_hsw(&mut c);
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run timeout/prlimit (coreutils, util-linux): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out.status.code();
    let what = match code {
        Some(124 | 137) => " (killed by the wall-clock limit: the input is not bounded in time)",
        Some(134) => " (aborted: most likely an allocation failed under the memory limit)",
        Some(152) => " (killed by the CPU-time limit)",
        _ => "",
    };
    assert_eq!(
        code,
        Some(expect.code),
        "hsw-cli {} ended with {code:?}{what}, expected {}; output (first 2000 bytes):\n{}",
        args.join(" "),
        expect.code,
        text.chars().take(2000).collect::<String>()
    );
    assert!(
        text.contains(expect.says),
        "hsw-cli {} did not say {:?}; output (first 2000 bytes):\n{}",
        args.join(" "),
        expect.says,
        text.chars().take(2000).collect::<String>()
    );
}

/// One generated shape, run through every reader.
fn check(dir: &Path, name: &str, content: &[u8], expect: &Expect) {
    let f = dir.join(name);
    std::fs::write(&f, content).unwrap();
    for args in readers(&f) {
        run_bounded(&args, expect);
    }
}

fn workdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn aliases_of_a_long_value_stop_at_the_byte_budget() {
    // The review's shape: 366 KB of aliases to a 64 KiB scalar, ~3 GB once expanded.
    let mut s = format!("big: &big \"{}\"\nl: [", "x".repeat(65_000));
    s.push_str(&vec!["*big"; 50_000].join(", "));
    s.push_str("]\n");
    check(
        workdir().path(),
        "alias-long.yaml",
        s.as_bytes(),
        &invalid("MiB of keys and values through aliases"),
    );
}

#[test]
fn an_alias_bomb_stops_at_the_node_budget() {
    let mut s = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = format!("*a{}", i - 1);
        s.push_str(&format!("a{i}: &a{i} [{}]\n", [p.as_str(); 9].join(", ")));
    }
    check(
        workdir().path(),
        "laughs.yaml",
        s.as_bytes(),
        &invalid("nodes through aliases"),
    );
}

#[test]
fn too_many_plain_nodes_stop_at_the_node_budget() {
    let s: String = (0..60_000).map(|i| format!("k{i}: v\n")).collect();
    check(
        workdir().path(),
        "many-nodes.yaml",
        s.as_bytes(),
        &invalid("has more than 100000 nodes"),
    );
}

#[test]
fn deep_nesting_stops_at_the_recursion_limit() {
    let s = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    check(
        workdir().path(),
        "deep.yaml",
        s.as_bytes(),
        &invalid("recursion limit exceeded"),
    );
}

#[test]
fn long_values_and_keys_are_refused() {
    let dir = workdir();
    let value = format!("a: \"{}\"\n", "y".repeat(100_000));
    check(
        dir.path(),
        "long-value.yaml",
        value.as_bytes(),
        &invalid("the most is 65536 (64 KiB)"),
    );
    let key = format!("? {}\n: v\n", "k".repeat(2_000));
    check(
        dir.path(),
        "long-key.yaml",
        key.as_bytes(),
        &invalid("the most is 1024"),
    );
}

#[test]
fn a_duplicate_among_many_keys_is_found() {
    // Hashed, not scanned: 40k keys (under the node budget) and one duplicate at the end.
    let mut s: String = (0..40_000).map(|i| format!("k{i}: v\n")).collect();
    s.push_str("k7: again\n");
    check(
        workdir().path(),
        "duplicate.yaml",
        s.as_bytes(),
        &invalid("duplicate key `k7`"),
    );
}

#[test]
fn many_findings_are_capped_in_text_and_complete_in_json() {
    let f = workdir();
    let path = f.path().join("unknown-keys.yaml");
    let s: String = (0..40_000).map(|i| format!("u{i}: v\n")).collect();
    std::fs::write(&path, s).unwrap();
    let p = path.display().to_string();
    run_bounded(
        &[
            "validate".into(),
            "--format".into(),
            "text".into(),
            p.clone(),
        ],
        &invalid("more findings not shown (the first 200 are above"),
    );
    run_bounded(
        &["validate".into(), "--format".into(), "json".into(), p],
        &invalid("\"rule\": \"schema.unknown-key\""),
    );
}

#[test]
fn several_documents_are_refused() {
    let s = "---\na: 1\n".repeat(100_000);
    check(
        workdir().path(),
        "documents.yaml",
        s.as_bytes(),
        &invalid("more than one YAML document"),
    );
}

#[test]
fn a_file_over_the_size_limit_is_not_read() {
    let mut s = b"# ".to_vec();
    s.resize(5 << 20, b'z');
    check(
        workdir().path(),
        "big.yaml",
        &s,
        &unreadable("larger than 4 MiB"),
    );
}

#[test]
fn bytes_that_are_not_utf8_are_refused() {
    check(
        workdir().path(),
        "latin1.yaml",
        b"a: \"\xff\xfe\x00\"\n",
        &unreadable("is not UTF-8 text"),
    );
}

#[test]
fn devices_and_fifos_are_not_read() {
    let dir = workdir();
    let fifo = dir.path().join("fifo.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    for f in [Path::new("/dev/zero"), Path::new("/dev/urandom"), &fifo] {
        for args in readers(f) {
            run_bounded(&args, &unreadable("is not a regular file"));
        }
    }
    let directory = dir.path().to_owned();
    for args in readers(&directory) {
        run_bounded(&args, &unreadable("is not a regular file"));
    }
}

#[test]
fn a_libvirt_uri_that_runs_a_program_is_refused() {
    let s = std::fs::read_to_string(testkit::repo().join("tests/validate/libvirt-uri-ext.yaml"))
        .unwrap();
    check(
        workdir().path(),
        "ext.yaml",
        s.as_bytes(),
        &invalid("host.libvirt-uri"),
    );
}

/// The fuzzer's seeds and anything it found (crash or timeout artifacts) end bounded, with exit 1 or 2.
#[test]
fn the_fuzzers_inputs_end_bounded() {
    let repo = testkit::repo();
    let mut inputs: Vec<PathBuf> = Vec::new();
    for dir in ["fuzz/seeds", "fuzz/artifacts/validate"] {
        if let Ok(entries) = std::fs::read_dir(repo.join(dir)) {
            inputs.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_none_or(|e| e != "md")),
            );
        }
    }
    assert!(inputs.len() >= 6, "the fuzz seeds are missing: {inputs:?}");
    for f in inputs {
        let text = std::fs::read(&f).unwrap();
        let expect = if std::str::from_utf8(&text).is_ok() {
            invalid("error[")
        } else {
            unreadable("is not UTF-8 text")
        };
        run_bounded(
            &[
                "validate".into(),
                "--format".into(),
                "text".into(),
                f.display().to_string(),
            ],
            &expect,
        );
    }
}
