//! Running host tools: argv only, never a shell.
//!
//! [`CommandSpec`] is a program and its arguments (plus environment additions); there is no way to
//! pass a shell string, so nothing built from input is ever interpreted. [`Runner`] is the narrow
//! trait `check` (tool versions) and `prepare` (update-initramfs, update-grub, apt-get) go
//! through; [`SystemRunner`] runs, [`SkipRunner`] refuses (any root other than `/`).

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A command: a program, its arguments, and environment variables to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSpec {
    /// The program: a name looked up on the process's `PATH`, or an absolute path.
    pub program: String,
    /// The arguments, each passed as one argv entry.
    pub args: Vec<String>,
    /// Environment variables set for the command (added to the inherited environment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
}

impl CommandSpec {
    /// `program args...`.
    pub fn new(program: &str, args: &[&str]) -> CommandSpec {
        CommandSpec {
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: Vec::new(),
        }
    }

    /// Adds an environment variable.
    pub fn with_env(mut self, key: &str, value: &str) -> CommandSpec {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// How a person would type it (quoted where needed). For display only: never executed.
    pub fn display(&self) -> String {
        let mut words: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", quote(v)))
            .collect();
        words.push(quote(&self.program));
        words.extend(self.args.iter().map(|a| quote(a)));
        words.join(" ")
    }
}

fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b'=' | b':' | b',' | b'+' | b'@'
                )
        });
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What became of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum RunOutcome {
    /// It ran to the end.
    Ran {
        /// Exit code (`None` when killed by a signal).
        code: Option<i32>,
        /// Standard output (lossy UTF-8, at most 64 KiB kept).
        stdout: String,
        /// Standard error (lossy UTF-8, at most 64 KiB kept).
        stderr: String,
    },
    /// It was not run, and why (`alternate root`).
    Skipped(String),
    /// It could not be started, or ran past its time limit and was killed.
    Failed(String),
}

impl RunOutcome {
    /// Whether it ran and exited 0.
    pub fn success(&self) -> bool {
        matches!(self, RunOutcome::Ran { code: Some(0), .. })
    }

    /// One line for people: `exit 0`, `skipped: alternate root`, `failed: ...`.
    pub fn summary(&self) -> String {
        match self {
            RunOutcome::Ran {
                code: Some(c),
                stderr,
                ..
            } => {
                let last = stderr
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                if *c == 0 || last.is_empty() {
                    format!("exit {c}")
                } else {
                    format!("exit {c}: {}", last.trim())
                }
            }
            RunOutcome::Ran { code: None, .. } => "killed by a signal".into(),
            RunOutcome::Skipped(why) => format!("skipped: {why}"),
            RunOutcome::Failed(why) => format!("failed: {why}"),
        }
    }
}

/// Runs commands. The only way host code starts a process.
pub trait Runner: std::fmt::Debug {
    /// Runs `cmd` with no standard input, waiting at most `timeout`.
    fn run(&self, cmd: &CommandSpec, timeout: Duration) -> RunOutcome;
}

/// Runs commands on this machine (`std::process::Command`, no shell).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRunner;

/// Runs nothing: every command is [`RunOutcome::Skipped`] with "alternate root".
#[derive(Debug, Clone, Copy, Default)]
pub struct SkipRunner;

impl Runner for SkipRunner {
    fn run(&self, _cmd: &CommandSpec, _timeout: Duration) -> RunOutcome {
        RunOutcome::Skipped(ALTERNATE_ROOT.into())
    }
}

/// Why commands are not run under a root other than `/`.
pub const ALTERNATE_ROOT: &str = "alternate root";

const KEEP: usize = 64 * 1024;

impl Runner for SystemRunner {
    fn run(&self, cmd: &CommandSpec, timeout: Duration) -> RunOutcome {
        let mut command = Command::new(&cmd.program);
        command
            .args(&cmd.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &cmd.env {
            command.env(k, v);
        }
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => return RunOutcome::Failed(format!("cannot start {}: {e}", cmd.program)),
        };
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        let code = match wait(&mut child, timeout) {
            Ok(code) => code,
            Err(why) => return RunOutcome::Failed(why),
        };
        RunOutcome::Ran {
            code,
            stdout: join(out),
            stderr: join(err),
        }
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Option<JoinHandle<Vec<u8>>> {
    pipe.map(|mut p| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                match p.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if buf.len() < KEEP {
                            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                        }
                    }
                }
            }
            buf.truncate(KEEP);
            buf
        })
    })
}

fn join(handle: Option<JoinHandle<Vec<u8>>>) -> String {
    let bytes = handle.and_then(|h| h.join().ok()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn wait(child: &mut Child, timeout: Duration) -> Result<Option<i32>, String> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status.code()),
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "still running after {} s, so it was killed",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_needs_it() {
        let c = CommandSpec::new(
            "apt-get",
            &["install", "-y", "qemu-utils=1:7.2+dfsg-7", "a b", "it's"],
        )
        .with_env("DEBIAN_FRONTEND", "noninteractive");
        assert_eq!(
            c.display(),
            r"DEBIAN_FRONTEND=noninteractive apt-get install -y qemu-utils=1:7.2+dfsg-7 'a b' 'it'\''s'"
        );
    }

    #[test]
    fn system_runner_runs_argv_without_a_shell() {
        let out = SystemRunner.run(
            &CommandSpec::new("echo", &["$HOME", ";", "x"]),
            Duration::from_secs(10),
        );
        match out {
            RunOutcome::Ran {
                code: Some(0),
                stdout,
                ..
            } => assert_eq!(stdout, "$HOME ; x\n"),
            other => unreachable!("{other:?}"),
        }
        let missing = SystemRunner.run(
            &CommandSpec::new("/nonexistent/tool", &[]),
            Duration::from_secs(1),
        );
        assert!(matches!(missing, RunOutcome::Failed(_)));
        let slow = SystemRunner.run(
            &CommandSpec::new("sleep", &["5"]),
            Duration::from_millis(100),
        );
        assert!(slow.summary().contains("killed"), "{slow:?}");
        assert_eq!(
            SkipRunner
                .run(&CommandSpec::new("true", &[]), Duration::from_secs(1))
                .summary(),
            "skipped: alternate root"
        );
    }
}
