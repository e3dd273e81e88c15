//! Running a binary of the workspace as a user runs it: [`Cli::new`] takes the binary (`env!("CARGO_BIN_EXE_...")`,
//! which only the binary's own crate knows), runs it from the repository root, with every inherited `HSW_*`
//! variable removed (a developer's `HSW_CONFIG` or `HSW_STATE_DIR` must not change a test), `NO_COLOR=1` and
//! `TERM=dumb`. What a test needs it sets again with [`Cli::env`] or on the [`Command`].

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A binary with its working directory and environment.
#[derive(Debug, Clone)]
pub struct Cli {
    bin: PathBuf,
    dir: PathBuf,
    env: Vec<(OsString, OsString)>,
}

impl Cli {
    /// `bin`, run from the repository root.
    pub fn new(bin: impl Into<PathBuf>) -> Cli {
        Cli {
            bin: bin.into(),
            dir: crate::repo(),
            env: Vec::new(),
        }
    }

    /// Runs from `dir` instead.
    #[must_use]
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Cli {
        self.dir = dir.as_ref().to_owned();
        self
    }

    /// Sets `key` for every run (after the scrubbing).
    #[must_use]
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cli {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// The command for `args`, its environment scrubbed; add to it and run it.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args).current_dir(&self.dir);
        scrub_hsw(&mut c);
        c.env("NO_COLOR", "1").env("TERM", "dumb");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs with `args`; its output, whatever the exit status.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let mut c = self.command(args);
        c.output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()))
    }

    /// Runs with `args`, which must succeed; its stdout.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        crate::ok(self.run(args))
    }
}

/// Removes every inherited `HSW_*` variable from `c` (set them again after this).
pub fn scrub_hsw(c: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HSW_") {
            c.env_remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_scrubbed_of_hsw_variables_and_set_again() {
        // `env` prints the environment it gets; the test's own HSW_* variables (if any) must not reach it.
        let out = Cli::new("env").env("HSW_KEPT", "yes").ok::<&str>(&[]);
        let hsw: Vec<&str> = out.lines().filter(|l| l.starts_with("HSW_")).collect();
        assert_eq!(hsw, ["HSW_KEPT=yes"]);
        assert!(out.lines().any(|l| l == "NO_COLOR=1"), "{out}");
    }

    #[test]
    fn it_runs_from_the_repository_root_or_the_given_folder() {
        assert_eq!(
            Cli::new("pwd").ok::<&str>(&[]).trim(),
            crate::repo().display().to_string()
        );
        assert_eq!(Cli::new("pwd").dir("/").ok::<&str>(&[]).trim(), "/");
    }
}
