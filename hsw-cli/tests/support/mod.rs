//! What only hsw-cli's integration tests share (`mod support;`): the binary under test, run through the test kit
//! (`testkit::cli`: from the repository root, `HSW_*` scrubbed, colours off). Golden files, the skip/require
//! policy and real Terraform are in `testkit`.

/// `hsw-cli`, run from the repository root with a scrubbed environment.
pub fn hsw() -> testkit::cli::Cli {
    testkit::cli::Cli::new(env!("CARGO_BIN_EXE_hsw-cli"))
}
