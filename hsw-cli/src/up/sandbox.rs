//! Step 3: where libvirt is. With a sandbox, `scripts/sandbox.sh --name NAME start` (a network namespace with
//! a private libvirtd), and its URI, pool and log directories from `scripts/sandbox.sh --name NAME env`; without
//! one, the host's `host.libvirt_uri` and `host.pool_dir`. Then the images are placed in the pool.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{host_libvirt, images, say, step_header, Ctx, Libvirt, Up, UP_STEPS};
use crate::error::Error;
use crate::generate::ClusterImage;

/// What `scripts/sandbox.sh --name NAME env` prints: the sandbox's places.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxEnv {
    /// libvirtd's URI (`HSW_SANDBOX_URI`).
    pub uri: String,
    /// The provider's pool directory (`HSW_SANDBOX_POOL_DIR`).
    pub pool_dir: PathBuf,
    /// The runtime directory (`HSW_SANDBOX_RUN_DIR`).
    pub run_dir: PathBuf,
    /// The state directory (`HSW_SANDBOX_STATE_DIR`).
    pub state_dir: PathBuf,
    /// libvirtd's log (`HSW_SANDBOX_LOG`); the guests' console logs are in `qemu/` beside it.
    pub log: PathBuf,
}

impl SandboxEnv {
    /// Parses the `KEY=value` lines (values quoted as bash's `printf %q` does; a value needing `$'...'` is
    /// refused).
    pub fn parse(text: &str) -> Result<SandboxEnv, String> {
        let get = |key: &str| -> Result<String, String> {
            let raw = text
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .ok_or_else(|| format!("it printed no {key}"))?;
            unquote(raw)
                .ok_or_else(|| format!("its {key} is quoted in a way hsw does not read: {raw}"))
        };
        Ok(SandboxEnv {
            uri: get("HSW_SANDBOX_URI")?,
            pool_dir: get("HSW_SANDBOX_POOL_DIR")?.into(),
            run_dir: get("HSW_SANDBOX_RUN_DIR")?.into(),
            state_dir: get("HSW_SANDBOX_STATE_DIR")?.into(),
            log: get("HSW_SANDBOX_LOG")?.into(),
        })
    }

    /// Where the guests' console logs are (`<log dir>/qemu`).
    pub fn consoles(&self) -> PathBuf {
        self.log.parent().unwrap_or(Path::new("/")).join("qemu")
    }
}

/// A word as bash's `printf %q` writes it: backslash escapes, or `''` for the empty word.
fn unquote(raw: &str) -> Option<String> {
    if raw == "''" {
        return Some(String::new());
    }
    if raw.starts_with("$'") || raw.contains(['\'', '"']) {
        return None;
    }
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next()?);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// The sandbox's places (`scripts/sandbox.sh --name NAME env`).
pub fn env(ctx: &Ctx<'_>, name: &str) -> Result<SandboxEnv, Error> {
    let o = ctx.capture(
        &ctx.sandbox_cmd(name, &["env"]),
        "scripts/sandbox.sh",
        "install bash",
    )?;
    if !o.status.success() {
        return Err(Error::invalid(format!(
            "scripts/sandbox.sh --name {name} env failed ({}): {}",
            o.status,
            o.stderr.trim()
        )));
    }
    SandboxEnv::parse(&o.stdout).map_err(|e| {
        Error::invalid(format!(
            "scripts/sandbox.sh --name {name} did not say its URI or pool directory: {e}"
        ))
    })
}

/// Where libvirt is for the deployment at `ctx`: its URI and pool directory: the sandbox's when it has one
/// (`Ok(Err(sentence))` when that sandbox is not running; the caller adds what to do), else the host's from the
/// config. The one place `status` and `backup` decide it.
pub fn libvirt_at(
    ctx: &Ctx<'_>,
    config: &hsw_core::config::model::ClusterConfig,
) -> Result<Result<(String, PathBuf), String>, Error> {
    match &ctx.sandbox {
        Some(name) if !running(ctx, name) => {
            Ok(Err(format!("the sandbox `{name}` is not running")))
        }
        Some(name) => {
            let e = env(ctx, name)?;
            Ok(Ok((e.uri, e.pool_dir)))
        }
        None => {
            let (uri, pool) = host_libvirt(config);
            Ok(Ok((uri, PathBuf::from(pool))))
        }
    }
}

/// Whether the sandbox runs (`scripts/sandbox.sh --name NAME status` succeeds).
pub fn running(ctx: &Ctx<'_>, name: &str) -> bool {
    ctx.runner
        .capture(&ctx.sandbox_cmd(name, &["status"]))
        .is_ok_and(|o| o.status.success())
}

/// Starts the sandbox (`scripts/sandbox.sh --name NAME start`, idempotent) and returns its places.
pub fn start(ctx: &Ctx<'_>, name: &str) -> Result<SandboxEnv, Error> {
    let o = ctx.capture(
        &ctx.sandbox_cmd(name, &["start"]),
        "scripts/sandbox.sh",
        "install bash",
    )?;
    eprint!("{}", o.stderr);
    if !o.status.success() {
        return Err(Error::invalid(format!(
            "scripts/sandbox.sh --name {name} start failed ({}); its messages above say why (it needs root and \
             `scripts/install-deps.sh full`)",
            o.status
        )));
    }
    env(ctx, name)
}

/// Step 3: the sandbox (or the host's libvirt), then the images in its pool.
pub fn open(up: &mut Up<'_>, n: usize, out: &mut dyn Write) -> Result<(), Error> {
    let ctx = up.ctx;
    let libvirt = match &ctx.sandbox {
        Some(sb) => {
            step_header(out, n, UP_STEPS, &format!("sandbox '{sb}'"));
            let e = start(ctx, sb)?;
            say(
                out,
                format!(
                    "libvirt inside netns {sb}: {}; pool {}",
                    e.uri,
                    e.pool_dir.display()
                ),
            );
            Libvirt {
                consoles: Some(e.consoles()),
                uri: e.uri,
                pool: e.pool_dir,
            }
        }
        None => {
            step_header(out, n, UP_STEPS, "host libvirt (no sandbox)");
            let (uri, pool) = host_libvirt(&up.session.config);
            say(out, format!("libvirt {uri}; pool {pool}"));
            Libvirt {
                uri,
                pool: PathBuf::from(pool),
                consoles: None,
            }
        }
    };
    for (role, img) in &up.images {
        let placed = images::place_image(img, &libvirt.pool, out).map_err(Error::CannotRun)?;
        say(
            out,
            format!(
                "{} image files in the pool: {}",
                role.as_str(),
                placed.base.parent().unwrap_or(&libvirt.pool).display()
            ),
        );
        up.cluster_images.insert(
            role.as_str().to_owned(),
            ClusterImage {
                base: placed.base.display().to_string(),
                kernel: placed.kernel.display().to_string(),
                initrd: placed.initrd.display().to_string(),
            },
        );
    }
    up.libvirt = Some(libvirt);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::fake::FakeRunner;
    use crate::up::testing::Fixture;

    /// What `scripts/sandbox.sh --name sb env` prints (bash's `printf %q`).
    pub const ENV: &str = "HSW_SANDBOX_NAME=sb\nHSW_SANDBOX_NETNS=sb\n\
        HSW_SANDBOX_URI=qemu+unix:///system\\?socket=/run/hsw-sandbox/sb/libvirt/libvirt-sock\n\
        LIBVIRT_DEFAULT_URI=qemu+unix:///system\\?socket=/run/hsw-sandbox/sb/libvirt/libvirt-sock\n\
        HSW_SANDBOX_SOCKET=/run/hsw-sandbox/sb/libvirt/libvirt-sock\n\
        HSW_SANDBOX_POOL_DIR=/var/lib/hsw-sandbox/sb/pool\nHSW_SANDBOX_RUN_DIR=/run/hsw-sandbox/sb\n\
        HSW_SANDBOX_STATE_DIR=/var/lib/hsw-sandbox/sb\nHSW_SANDBOX_LOG=/var/lib/hsw-sandbox/sb/log/libvirtd.log\n";

    #[test]
    fn env_is_parsed_from_printf_q() {
        let e = SandboxEnv::parse(ENV).unwrap();
        assert_eq!(
            e.uri,
            "qemu+unix:///system?socket=/run/hsw-sandbox/sb/libvirt/libvirt-sock"
        );
        assert_eq!(e.pool_dir, Path::new("/var/lib/hsw-sandbox/sb/pool"));
        assert_eq!(e.run_dir, Path::new("/run/hsw-sandbox/sb"));
        assert_eq!(e.state_dir, Path::new("/var/lib/hsw-sandbox/sb"));
        assert_eq!(e.consoles(), Path::new("/var/lib/hsw-sandbox/sb/log/qemu"));
        assert!(SandboxEnv::parse("HSW_SANDBOX_URI=x\n")
            .unwrap_err()
            .contains("HSW_SANDBOX_POOL_DIR"));
        assert_eq!(unquote("''").as_deref(), Some(""));
        assert_eq!(unquote("a\\ b").as_deref(), Some("a b"));
        assert_eq!(unquote("$'a\\nb'"), None);
    }

    /// The env text the real script prints parses too (it needs no root: `env` only computes paths).
    #[test]
    fn the_real_script_env_parses() {
        let runner = crate::runner::SystemRunner;
        let f = Fixture::new(Some("hsw-unit"));
        let ctx = f.ctx(&runner);
        let e = env(&ctx, "hsw-unit").unwrap();
        assert!(
            e.uri.starts_with("qemu+unix:///system?socket="),
            "{}",
            e.uri
        );
        assert!(
            e.pool_dir.ends_with("hsw-unit/pool"),
            "{}",
            e.pool_dir.display()
        );
        assert!(e.consoles().ends_with("hsw-unit/log/qemu"));
    }

    #[test]
    fn the_sandbox_starts_and_says_where_libvirt_is() {
        let runner = FakeRunner::new();
        runner
            .on(&["start"], 0, "sandbox up\nqemu+unix:///system?socket=/x\n")
            .on(&["env"], 0, ENV);
        let f = Fixture::new(Some("sb"));
        let (r, t) = f.run_step(&runner, open, 3, |up| {
            let l = up.libvirt.as_ref().unwrap();
            assert_eq!(
                l.consoles.as_deref(),
                Some(Path::new("/var/lib/hsw-sandbox/sb/log/qemu"))
            );
            assert_eq!(l.pool, Path::new("/var/lib/hsw-sandbox/sb/pool"));
        });
        r.unwrap();
        let repo = Fixture::repo();
        let script = repo.join("scripts/sandbox.sh").display().to_string();
        assert_eq!(
            runner.argvs(),
            [
                vec!["bash", &script, "--name", "sb", "start"],
                vec!["bash", &script, "--name", "sb", "env"],
            ]
        );
        assert!(runner
            .calls()
            .iter()
            .all(|c| c.dir.as_deref() == Some(repo.as_path())));
        assert!(t.contains("==> [3/13] sandbox 'sb'"), "{t}");
        assert!(t.contains("hsw: libvirt inside netns sb: qemu+unix:///system?socket=/run/hsw-sandbox/sb/libvirt/libvirt-sock; pool /var/lib/hsw-sandbox/sb/pool"), "{t}");
    }

    #[test]
    fn a_failed_start_names_the_needs() {
        let f = Fixture::new(Some("sb"));
        let failing = FakeRunner::new();
        failing.on_full(&["start"], Some(1), "", "sandbox: run as root\n", None);
        let missing = FakeRunner::new();
        missing.on_full(&["bash"], None, "", "", None);
        for (runner, code, message) in [
            (
                &failing,
                crate::exit::INVALID,
                "scripts/sandbox.sh --name sb start failed (exit status: 1)",
            ),
            (
                &missing,
                crate::exit::CANNOT_RUN,
                "cannot run scripts/sandbox.sh (",
            ),
        ] {
            let e = f.run_step(runner, open, 3, |_| {}).0.unwrap_err();
            assert_eq!(e.code(), code);
            assert!(e.to_string().starts_with(message), "{e}");
            assert_eq!(runner.calls().len(), 1, "nothing runs after a failed start");
        }
    }

    #[test]
    fn without_a_sandbox_the_host_libvirt_is_used_and_nothing_runs() {
        let runner = FakeRunner::new();
        let f = Fixture::new(None);
        let (r, t) = f.run_step(&runner, open, 3, |up| {
            assert_eq!(up.libvirt.as_ref().unwrap().consoles, None);
        });
        r.unwrap();
        assert!(runner.calls().is_empty());
        assert!(t.contains("==> [3/13] host libvirt (no sandbox)"), "{t}");
        assert!(
            t.contains("hsw: libvirt qemu:///system; pool /var/lib/hsw/images"),
            "{t}"
        );
    }

    #[test]
    fn running_asks_status() {
        let runner = FakeRunner::new();
        runner.on(&["status"], 3, "not running");
        let f = Fixture::new(Some("sb"));
        assert!(!running(&f.ctx(&runner), "sb"));
        assert!(running(&f.ctx(&FakeRunner::new()), "sb"));
    }
}
