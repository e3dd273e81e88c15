//! `hsw-cli image build`: the offline Debian 12 guest images, one per role (`hpc`: Slurm, Munge, Open MPI;
//! `cloud`: containerd, PostgreSQL, Prometheus; both: OpenSSH, cloud-init, nftables, auditd,
//! unattended-upgrades, the node exporter), built by `scripts/build-image.sh --role ROLE` and cached by content
//! under `/var/cache/hsw/images/<key>/`. The package sets are the Packer templates': the script reads
//! `packer/packages/list.sh --csv ROLE` (the contract is in `packer/README.md`), so the two cannot drift.
//!
//! The script is run with `bash` and an argument vector; its progress (stderr) streams through, and its
//! `base=`, `kernel=`, `initrd=`, `manifest=` lines (stdout) say where the files are.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

use crate::error::Error;
use crate::exit;
use crate::runner::{Cmd, Runner, SystemRunner};

/// `hsw-cli image`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build a role's guest image (Debian 12 with packer/packages/<role>.list), or reuse the cached one.
    Build(BuildArgs),
}

/// An image role: which package list (`packer/packages/common.list` + `<role>.list`) goes in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum ImageRole {
    /// The Slurm cluster's VMs.
    #[default]
    Hpc,
    /// The Kubernetes cluster's VMs.
    Cloud,
}

impl ImageRole {
    /// The role's name, as `build-image.sh --role` and the package lists spell it (also the cluster key).
    pub fn as_str(self) -> &'static str {
        match self {
            ImageRole::Hpc => "hpc",
            ImageRole::Cloud => "cloud",
        }
    }
}

/// `hsw-cli image build`.
#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Which image: its package set is `packer/packages/list.sh --csv ROLE`.
    #[arg(long, value_enum, default_value_t = ImageRole::Hpc)]
    pub role: ImageRole,
    /// The cache directory (default `/var/cache/hsw/images`, or `HSW_IMAGE_DIR`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Rebuild even when the cache holds a complete image.
    #[arg(long)]
    pub force: bool,
    /// Bake this Kubernetes bundle (`hsw-cli bundle build`) into the image: binaries into /usr/local/bin, image
    /// archives and bundle.json into /var/lib/hsw/k8s (the image's cache key then covers the bundle).
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
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
                Err(e) => return e.report(),
            };
            match build(&SystemRunner, &repo, args, out) {
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
                Err(e) => e.report(),
            }
        }
    }
}

/// Builds (or finds in the cache) the guest image; the script's progress goes to stderr.
pub fn build(
    runner: &dyn Runner,
    repo: &Path,
    args: &BuildArgs,
    out: &mut dyn Write,
) -> Result<Image, Error> {
    let script = repo.join("scripts/build-image.sh");
    let cmd = Cmd::new("bash").arg(&script).args(build_args(args));
    let _ = writeln!(
        out,
        "hsw: {} guest image: {} --role {} (cached by content; a first build takes 2-4 minutes)",
        args.role.as_str(),
        script.display(),
        args.role.as_str()
    );
    let _ = out.flush();
    let mut lines = Vec::new();
    let status = runner
        .lines(&cmd, &mut |l| lines.push(l.to_owned()))
        .map_err(|e| {
            Error::invalid(format!(
                "cannot run bash {} ({e}); install bash and run scripts/install-deps.sh full",
                script.display()
            ))
        })?;
    if !status.success() {
        return Err(Error::invalid(format!(
            "scripts/build-image.sh failed ({status}); its messages above say why (it needs root and \
             `scripts/install-deps.sh full`, and a Debian mirror the first time)"
        )));
    }
    parse_paths(&lines)
}

/// The arguments of `scripts/build-image.sh` for these options (after the script's path).
pub fn build_args(args: &BuildArgs) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = vec!["--role".into(), args.role.as_str().into()];
    if let Some(dir) = &args.out {
        v.push("--out".into());
        v.push(dir.into());
    }
    if args.force {
        v.push("--force".into());
    }
    if let Some(dir) = &args.bundle {
        v.push("--bundle".into());
        v.push(dir.into());
    }
    v
}

/// The `key=path` lines build-image.sh prints, checked to exist.
pub fn parse_paths(lines: &[String]) -> Result<Image, Error> {
    let get = |key: &str| -> Result<PathBuf, Error> {
        let prefix = format!("{key}=");
        let path = lines
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(PathBuf::from)
            .ok_or_else(|| Error::invalid(format!("build-image.sh printed no `{key}=` line")))?;
        if !path.is_file() {
            return Err(Error::invalid(format!(
                "build-image.sh named {} as the image's {key}, but there is no such file",
                path.display()
            )));
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
pub fn repo_root() -> Result<PathBuf, Error> {
    let is_repo = |d: &Path| {
        d.join("scripts/sandbox.sh").is_file()
            && d.join("scripts/build-image.sh").is_file()
            && d.join("modules").is_dir()
    };
    if let Some(r) = std::env::var_os("HSW_REPO") {
        let r = PathBuf::from(r);
        if is_repo(&r) {
            return std::path::absolute(&r)
                .map_err(|e| Error::cannot_run(format!("cannot resolve HSW_REPO: {e}")));
        }
        return Err(Error::cannot_run(format!(
            "HSW_REPO is {}, which does not hold the hsw repository (scripts/sandbox.sh, modules/)",
            r.display()
        )));
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
    Err(Error::cannot_run(
        "cannot find the hsw repository (scripts/, modules/, ansible/): run hsw-cli from inside it or set HSW_REPO",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

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
        let err = parse_paths(&lines).unwrap_err();
        assert_eq!(err.code(), crate::exit::INVALID);
        assert!(err.to_string().contains("`kernel=`"), "{err}");
    }

    #[test]
    fn the_role_picks_the_package_list() {
        let args = BuildArgs {
            role: ImageRole::Cloud,
            out: Some(PathBuf::from("/cache")),
            force: true,
            bundle: Some(PathBuf::from("/b/k8s-1")),
        };
        let got: Vec<String> = build_args(&args)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            ["--role", "cloud", "--out", "/cache", "--force", "--bundle", "/b/k8s-1"]
        );
        let hpc = BuildArgs {
            role: ImageRole::default(),
            out: None,
            force: false,
            bundle: None,
        };
        assert_eq!(build_args(&hpc), ["--role", "hpc"]);
    }

    /// The script takes its package sets from the Packer lists, never from a list of its own.
    #[test]
    fn build_image_reads_the_packer_lists() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let script = std::fs::read_to_string(repo.join("scripts/build-image.sh"))
            .unwrap_or_else(|e| panic!("build-image.sh: {e}"));
        assert!(script.contains("packer/packages/list.sh"), "no list.sh");
        assert!(script.contains(r#"--csv "$role""#), "not per role");
        assert!(
            !script.contains("DEFAULT_EXTRA"),
            "a hard-coded default set is back"
        );
        for pkg in ["slurmd", "containerd", "postgresql", "prometheus"] {
            assert!(
                !script.contains(&format!("{pkg},")) && !script.contains(&format!(",{pkg}")),
                "build-image.sh lists {pkg} itself"
            );
        }
        // The cache key hashes the final package list: a role's key is that of its list given by hand, and
        // the two roles' keys differ.
        let run = |args: &[&str]| -> String {
            let o = Command::new("bash")
                .arg(repo.join("scripts/build-image.sh"))
                .args(args)
                .arg("--print-key")
                .output()
                .unwrap_or_else(|e| panic!("bash: {e}"));
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        };
        let list = |role: &str| -> String {
            let o = Command::new("bash")
                .arg(repo.join("packer/packages/list.sh"))
                .args(["--csv", role])
                .output()
                .unwrap_or_else(|e| panic!("bash: {e}"));
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        };
        let hpc = run(&["--role", "hpc"]);
        let cloud = run(&["--role", "cloud"]);
        assert_eq!(hpc.len(), 16, "{hpc}");
        assert_ne!(hpc, cloud);
        assert_eq!(run(&[]), hpc, "hpc is the default role");
        assert_eq!(run(&["--packages", &list("hpc")]), hpc);
        assert_eq!(
            run(&["--role", "cloud", "--packages", &list("cloud")]),
            cloud
        );
        // MLflow's venv goes into cloud images only: the hpc role with the cloud packages is another image.
        assert_ne!(run(&["--packages", &list("cloud")]), cloud);
        assert_ne!(run(&["--packages", &list("common")]), hpc);
    }
}
