//! Running processes behind one narrow trait: [`Runner`] (capture, stream, stream the lines), with the real
//! one over `std::process::Command` ([`SystemRunner`]) and, for unit tests, a fake that records every
//! command and answers scripted outputs ([`fake::FakeRunner`]). Commands are argument vectors, never shell
//! strings.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// A command to run: program, arguments, environment changes and working directory. Its standard input is
/// always empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// The program (looked up in `PATH` when it has no `/`).
    pub program: OsString,
    /// The arguments.
    pub args: Vec<OsString>,
    /// Environment changes, in order: `Some(value)` sets, `None` removes.
    pub env: Vec<(OsString, Option<OsString>)>,
    /// The working directory (the process's when `None`).
    pub dir: Option<PathBuf>,
}

impl Cmd {
    /// `program` with no arguments.
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            dir: None,
        }
    }

    /// Adds one argument.
    #[must_use]
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.args.push(a.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable.
    #[must_use]
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Cmd {
        self.env
            .push((k.as_ref().to_owned(), Some(v.as_ref().to_owned())));
        self
    }

    /// Sets environment variables.
    #[must_use]
    pub fn envs<I, K, V>(mut self, vars: I) -> Cmd
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// Removes an environment variable.
    #[must_use]
    pub fn env_remove(mut self, k: impl AsRef<OsStr>) -> Cmd {
        self.env.push((k.as_ref().to_owned(), None));
        self
    }

    /// Sets the working directory.
    #[must_use]
    pub fn current_dir(mut self, d: impl AsRef<Path>) -> Cmd {
        self.dir = Some(d.as_ref().to_path_buf());
        self
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args).stdin(Stdio::null());
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(d) = &self.dir {
            c.current_dir(d);
        }
        c
    }
}

#[cfg(test)]
impl Cmd {
    /// The value this command sets for `k` (the last change wins; `None` when unset or removed).
    pub fn env_value(&self, k: &str) -> Option<&OsStr> {
        self.env
            .iter()
            .rev()
            .find(|(name, _)| name == k)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Program and arguments as text (lossy), for messages and tests.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }
}

/// What a captured command printed, and how it ended.
#[derive(Debug, Clone)]
pub struct Captured {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output (lossy UTF-8).
    pub stdout: String,
    /// Its standard error (lossy UTF-8).
    pub stderr: String,
}

/// Runs processes.
pub trait Runner: Sync {
    /// Runs to completion with stdout and stderr captured.
    fn capture(&self, cmd: &Cmd) -> std::io::Result<Captured>;
    /// Runs to completion with stdout and stderr streaming through to this process's.
    fn stream(&self, cmd: &Cmd) -> std::io::Result<ExitStatus>;
    /// Runs to completion, handing each line of stdout to `line` as it comes; stderr streams through.
    fn lines(&self, cmd: &Cmd, line: &mut dyn FnMut(&str)) -> std::io::Result<ExitStatus>;
    /// Runs to completion with stdout going into `file` (for output too large to hold, such as a database
    /// dump); stderr is captured. Returns how it ended and its stderr.
    fn to_file(&self, cmd: &Cmd, file: std::fs::File) -> std::io::Result<(ExitStatus, String)>;
}

impl std::fmt::Debug for dyn Runner + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Runner")
    }
}

/// The real runner.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn capture(&self, cmd: &Cmd) -> std::io::Result<Captured> {
        let o = cmd.command().output()?;
        Ok(Captured {
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        })
    }

    fn stream(&self, cmd: &Cmd) -> std::io::Result<ExitStatus> {
        cmd.command().status()
    }

    fn lines(&self, cmd: &Cmd, line: &mut dyn FnMut(&str)) -> std::io::Result<ExitStatus> {
        let mut child = cmd
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut read_error = None;
        if let Some(stdout) = child.stdout.take() {
            for l in BufReader::new(stdout).lines() {
                match l {
                    Ok(l) => line(&l),
                    Err(e) => {
                        read_error = Some(e);
                        break;
                    }
                }
            }
        }
        let status = child.wait()?;
        match read_error {
            Some(e) => Err(e),
            None => Ok(status),
        }
    }

    fn to_file(&self, cmd: &Cmd, file: std::fs::File) -> std::io::Result<(ExitStatus, String)> {
        let o = cmd
            .command()
            .stdout(Stdio::from(file))
            .stderr(Stdio::piped())
            .output()?;
        Ok((o.status, String::from_utf8_lossy(&o.stderr).into_owned()))
    }
}

/// A fake [`Runner`] for unit tests.
#[cfg(test)]
pub mod fake {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;
    use std::sync::Mutex;

    use super::{Captured, Cmd, Runner};

    /// How a scripted command answers.
    #[derive(Debug, Clone)]
    pub struct Answer {
        /// Its exit code (`None`: it cannot be started, `ENOENT`).
        pub code: Option<i32>,
        /// Its standard output.
        pub stdout: String,
        /// Its standard error.
        pub stderr: String,
    }

    /// An exit status with this code.
    pub fn status(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    /// Needles, the answer, and how many more times it answers (`None`: always).
    type Rule = (Vec<String>, Answer, Option<usize>);

    /// What a command does besides answering (e.g. the file a build writes): needles, then the action.
    struct Effect(Vec<String>, Box<dyn Fn(&Cmd) + Send>);

    impl std::fmt::Debug for Effect {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Effect({:?})", self.0)
        }
    }

    /// Records every command; answers the first rule whose needle all appear in the argv (in any place),
    /// else exit 0 with no output. A rule with `times: Some(n)` answers n times, then gives way.
    #[derive(Debug, Default)]
    pub struct FakeRunner {
        rules: Mutex<Vec<Rule>>,
        effects: Mutex<Vec<Effect>>,
        /// Every command run, in order.
        pub calls: Mutex<Vec<Cmd>>,
    }

    impl FakeRunner {
        /// A runner that answers every command with exit 0 and no output.
        pub fn new() -> FakeRunner {
            FakeRunner::default()
        }

        /// Commands whose argv has every word of `needles` answer `code` with `stdout`.
        pub fn on(&self, needles: &[&str], code: i32, stdout: &str) -> &FakeRunner {
            self.on_full(needles, Some(code), stdout, "", None)
        }

        /// The full form of [`FakeRunner::on`].
        pub fn on_full(
            &self,
            needles: &[&str],
            code: Option<i32>,
            stdout: &str,
            stderr: &str,
            times: Option<usize>,
        ) -> &FakeRunner {
            self.rules.lock().unwrap_or_else(|e| e.into_inner()).push((
                needles.iter().map(|s| (*s).to_owned()).collect(),
                Answer {
                    code,
                    stdout: stdout.to_owned(),
                    stderr: stderr.to_owned(),
                },
                times,
            ));
            self
        }

        /// Every command whose argv has every word of `needles` also does `f` (before it answers), as the
        /// real program would: write the files a build makes, for instance.
        pub fn effect(&self, needles: &[&str], f: impl Fn(&Cmd) + Send + 'static) -> &FakeRunner {
            self.effects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Effect(
                    needles.iter().map(|s| (*s).to_owned()).collect(),
                    Box::new(f),
                ));
            self
        }

        /// The argv of every command run.
        pub fn argvs(&self) -> Vec<Vec<String>> {
            self.calls().iter().map(Cmd::argv).collect()
        }

        /// Every command run.
        pub fn calls(&self) -> Vec<Cmd> {
            self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
        }

        fn answer(&self, cmd: &Cmd) -> std::io::Result<Answer> {
            self.calls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(cmd.clone());
            let argv = cmd.argv();
            for Effect(needles, f) in self
                .effects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                if needles.iter().all(|n| argv.contains(n)) {
                    f(cmd);
                }
            }
            let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
            let found = rules.iter_mut().find(|(needles, _, times)| {
                times.is_none_or(|t| t > 0) && needles.iter().all(|n| argv.contains(n))
            });
            let answer = match found {
                Some((_, a, times)) => {
                    if let Some(t) = times {
                        *t -= 1;
                    }
                    a.clone()
                }
                None => Answer {
                    code: Some(0),
                    stdout: String::new(),
                    stderr: String::new(),
                },
            };
            if answer.code.is_none() {
                return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
            }
            Ok(answer)
        }
    }

    impl Runner for FakeRunner {
        fn capture(&self, cmd: &Cmd) -> std::io::Result<Captured> {
            let a = self.answer(cmd)?;
            Ok(Captured {
                status: status(a.code.unwrap_or(0)),
                stdout: a.stdout,
                stderr: a.stderr,
            })
        }

        fn stream(&self, cmd: &Cmd) -> std::io::Result<ExitStatus> {
            Ok(status(self.answer(cmd)?.code.unwrap_or(0)))
        }

        fn lines(&self, cmd: &Cmd, line: &mut dyn FnMut(&str)) -> std::io::Result<ExitStatus> {
            let a = self.answer(cmd)?;
            a.stdout.lines().for_each(line);
            Ok(status(a.code.unwrap_or(0)))
        }

        fn to_file(
            &self,
            cmd: &Cmd,
            mut file: std::fs::File,
        ) -> std::io::Result<(ExitStatus, String)> {
            use std::io::Write as _;
            let a = self.answer(cmd)?;
            file.write_all(a.stdout.as_bytes())?;
            Ok((status(a.code.unwrap_or(0)), a.stderr))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeRunner;
    use super::*;

    #[test]
    fn the_system_runner_runs_an_argument_vector() {
        let r = SystemRunner;
        let c = Cmd::new("sh")
            .args([
                "-c",
                "printf '%s|%s' \"$1\" \"$HSW_T\"; echo err >&2; exit 3",
                "x",
                "a b;c",
            ])
            .env("HSW_T", "v");
        let got = r.capture(&c).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.stdout, "a b;c|v");
        assert_eq!(got.stderr, "err\n");
        assert_eq!(got.status.code(), Some(3));
        let mut lines = Vec::new();
        let status = r
            .lines(&Cmd::new("printf").arg("a\\nb\\n"), &mut |l| {
                lines.push(l.to_owned())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(status.success());
        assert_eq!(lines, ["a", "b"]);
        assert!(r.capture(&Cmd::new("/nonexistent/hsw-program")).is_err());
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = d.path().join("out");
        let f = std::fs::File::create(&p).unwrap_or_else(|e| panic!("{e}"));
        let (st, err) = r
            .to_file(
                &Cmd::new("sh").args(["-c", "printf 'x\\0y'; echo e >&2"]),
                f,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(st.success());
        assert_eq!(err, "e\n");
        assert_eq!(std::fs::read(&p).unwrap_or_default(), b"x\0y");
    }

    #[test]
    fn the_fake_records_and_answers() {
        let f = FakeRunner::new();
        f.on(&["virsh", "list"], 0, "a\nb\n")
            .on_full(&["ssh"], None, "", "", None)
            .on_full(&["once"], Some(4), "", "", Some(1));
        let c = Cmd::new("virsh")
            .args(["-q", "list"])
            .env_remove("X")
            .env("Y", "1");
        assert_eq!(
            f.capture(&c).map(|o| o.stdout).unwrap_or_default(),
            "a\nb\n"
        );
        assert!(f.stream(&Cmd::new("ssh")).is_err());
        assert_eq!(
            f.stream(&Cmd::new("once")).ok().and_then(|s| s.code()),
            Some(4)
        );
        assert_eq!(
            f.stream(&Cmd::new("once")).ok().and_then(|s| s.code()),
            Some(0)
        );
        assert_eq!(f.argvs()[0], ["virsh", "-q", "list"]);
        assert_eq!(f.calls()[0].env_value("Y"), Some(OsStr::new("1")));
        assert_eq!(f.calls()[0].env_value("X"), None);
    }
}
