//! `hsw-cli image build`: the offline Debian 12 guest image (cloud-init, OpenSSH, Slurm and Munge baked in),
//! built by `scripts/build-image.sh` and cached by content under `/var/cache/hsw/images/<key>/`.
//!
//! The script is run with `bash` and an argument vector; its progress (stderr) streams through, and its
//! `base=`, `kernel=`, `initrd=`, `manifest=` lines (stdout) say where the files are.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::{Args, Subcommand};

use crate::exit;

/// `hsw-cli image`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the guest image (Debian 12, cloud-init, OpenSSH, Slurm, Munge), or reuse the cached one.
    Build(BuildArgs),
}

/// `hsw-cli image build`.
#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// The cache directory (default `/var/cache/hsw/images`, or `HSW_IMAGE_DIR`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Rebuild even when the cache holds a complete image.
    #[arg(long)]
    pub force: bool,
}

/// Where a built image's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The root disk (qcow2).
    pub base: PathBuf,
    /// The kernel for direct kernel boot.
    pub kernel: PathBuf,
    /// Its initrd.
    pub initrd: PathBuf,
    /// The manifest (package versions, sha256 of the files).
    pub manifest: PathBuf,
}

/// Runs an `image` subcommand; returns the exit code.
pub fn run(cmd: &ImageCommand, out: &mut dyn Write) -> u8 {
    match cmd {
        ImageCommand::Build(args) => {
            let repo = match repo_root() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::CANNOT_RUN;
                }
            };
            match build(&repo, args, out) {
                Ok(image) => {
                    let _ = writeln!(
                        out,
                        "base={}\nkernel={}\ninitrd={}\nmanifest={}",
                        image.base.display(),
                        image.kernel.display(),
                        image.initrd.display(),
                        image.manifest.display()
                    );
                    exit::OK
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    exit::INVALID
                }
            }
        }
    }
}

/// Builds (or finds in the cache) the guest image; the script's progress goes to stderr.
pub fn build(repo: &Path, args: &BuildArgs, out: &mut dyn Write) -> Result<Image, String> {
    let script = repo.join("scripts/build-image.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script);
    if let Some(dir) = &args.out {
        cmd.arg("--out").arg(dir);
    }
    if args.force {
        cmd.arg("--force");
    }
    let _ = writeln!(
        out,
        "hsw: guest image: {} (cached by content; a first build takes 2-4 minutes)",
        script.display()
    );
    let _ = out.flush();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot run bash {} ({e}); install bash and run scripts/install-deps.sh full",
                script.display()
            )
        })?;
    let mut lines = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => lines.push(l),
                Err(e) => return Err(format!("cannot read the output of build-image.sh: {e}")),
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("build-image.sh did not finish: {e}"))?;
    if !status.success() {
        return Err(format!(
            "scripts/build-image.sh failed ({status}); its messages above say why (it needs root and \
             `scripts/install-deps.sh full`, and a Debian mirror the first time)"
        ));
    }
    parse_paths(&lines)
}

/// The `key=path` lines build-image.sh prints, checked to exist.
pub fn parse_paths(lines: &[String]) -> Result<Image, String> {
    let get = |key: &str| -> Result<PathBuf, String> {
        let prefix = format!("{key}=");
        let path = lines
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(PathBuf::from)
            .ok_or_else(|| format!("build-image.sh printed no `{key}=` line"))?;
        if !path.is_file() {
            return Err(format!(
                "build-image.sh named {} as the image's {key}, but there is no such file",
                path.display()
            ));
        }
        Ok(path)
    };
    Ok(Image {
        base: get("base")?,
        kernel: get("kernel")?,
        initrd: get("initrd")?,
        manifest: get("manifest")?,
    })
}

/// The repository root (it holds `scripts/`, `modules/` and `ansible/`): `HSW_REPO`, else the current
/// directory or one above it, else a directory above the binary (`target/debug/hsw-cli`).
pub fn repo_root() -> Result<PathBuf, String> {
    let is_repo = |d: &Path| {
        d.join("scripts/sandbox.sh").is_file()
            && d.join("scripts/build-image.sh").is_file()
            && d.join("modules").is_dir()
    };
    if let Some(r) = std::env::var_os("HSW_REPO") {
        let r = PathBuf::from(r);
        if is_repo(&r) {
            return std::path::absolute(&r).map_err(|e| format!("cannot resolve HSW_REPO: {e}"));
        }
        return Err(format!(
            "HSW_REPO is {}, which does not hold the hsw repository (scripts/sandbox.sh, modules/)",
            r.display()
        ));
    }
    let mut starts = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        starts.push(exe.canonicalize().unwrap_or(exe));
    }
    for start in starts {
        if let Some(found) = start.ancestors().find(|d| is_repo(d)) {
            return Ok(found.to_path_buf());
        }
    }
    Err(
        "cannot find the hsw repository (scripts/, modules/, ansible/): run hsw-cli from inside it or set HSW_REPO"
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_come_from_the_key_lines() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut lines = Vec::new();
        for f in ["base", "kernel", "initrd", "manifest"] {
            let p = dir.path().join(f);
            std::fs::write(&p, b"x").unwrap_or_else(|e| panic!("write: {e}"));
            lines.push(format!("{f}={}", p.display()));
        }
        let image = parse_paths(&lines).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(image.kernel, dir.path().join("kernel"));
        lines.remove(1);
        let err = parse_paths(&lines).err().unwrap_or_default();
        assert!(err.contains("`kernel=`"), "{err}");
    }
}
