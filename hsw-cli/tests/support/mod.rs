//! What only hsw-cli's integration tests share (`mod support;`): the binary under test, run through the test kit
//! (`testkit::cli`: from the repository root, `HSW_*` scrubbed, colours off). Golden files, the skip/require
//! policy and real Terraform are in `testkit`.

/// `hsw-cli`, run from the repository root with a scrubbed environment.
pub fn hsw() -> testkit::cli::Cli {
    testkit::cli::Cli::new(env!("CARGO_BIN_EXE_hsw-cli"))
}

/// The cluster definitions in `examples/` (`*.yaml`), sorted.
#[allow(dead_code)] // Not every test file that shares this module lists the examples.
pub fn examples() -> Vec<std::path::PathBuf> {
    let mut examples: Vec<_> = std::fs::read_dir(testkit::repo().join("examples"))
        .unwrap_or_else(|e| panic!("cannot list examples/: {e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    examples.sort();
    examples
}
