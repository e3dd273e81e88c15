//! `hsw-cli provider install`: puts the provider where Terraform and OpenTofu find it with no CLI
//! configuration, so that `terraform init` (or `tofu init`) in `terraform/` just works.
//!
//! Both look, before any registry, in their implied local mirror directories: `terraform.d/plugins` in the
//! working directory, `~/.terraform.d/plugins` (OpenTofu: the same while `~/.terraform.d` exists, else
//! `$XDG_DATA_HOME/opentofu/plugins`), and the XDG data directories' `terraform/plugins`
//! (`~/.local/share/terraform/plugins`, `/usr/local/share/terraform/plugins`, `/usr/share/terraform/plugins`);
//! a provider found there is not asked of a registry. The default directory is `~/.terraform.d/plugins`,
//! which both read; `--dir /usr/local/share/terraform/plugins` serves every user of the machine. The binary
//! goes under both `registry.terraform.io/hyperscaler/hsw` (the full source the generated root and the modules
//! use) and `registry.opentofu.org/hyperscaler/hsw` (what a short `hyperscaler/hsw` means to OpenTofu), in
//! the layout of [`crate::provider_mirror`].

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::error::Error;
use crate::exit;
use crate::provider_mirror::{self as pm, PlaceError, Placed};

/// `hsw-cli provider ...`.
#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Install terraform-provider-hsw where Terraform and OpenTofu find it with no CLI configuration
    /// (default ~/.terraform.d/plugins, under registry.terraform.io and registry.opentofu.org).
    Install(InstallArgs),
    /// Print the provider's version, platform and file names, one `key value` a line (for scripts/release.sh).
    Layout,
}

/// `hsw-cli provider install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The plugin directory (default `~/.terraform.d/plugins`; `/usr/local/share/terraform/plugins` serves
    /// every user).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The provider binary (default: the terraform-provider-hsw built beside this hsw-cli).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Replace a different provider binary of the same version.
    #[arg(long)]
    pub force: bool,
}

/// Runs a `provider` subcommand.
pub fn run(cmd: &ProviderCommand, out: &mut dyn Write) -> u8 {
    match cmd {
        ProviderCommand::Layout => {
            let _ = out.write_all(layout().as_bytes());
            exit::OK
        }
        ProviderCommand::Install(args) => {
            let env = Env {
                home: std::env::var_os("HOME").map(PathBuf::from),
                exe: std::env::current_exe().ok(),
            };
            match install(args, &env, out) {
                Ok(()) => exit::OK,
                Err(e) => e.report(),
            }
        }
    }
}

/// `hsw-cli provider layout`: `key value` lines (version, platform, namespace/type, executable, release names).
pub fn layout() -> String {
    let mut lines = vec![
        ("version", pm::VERSION.to_owned()),
        ("platform", pm::platform()),
        ("namespace_type", pm::NAMESPACE_TYPE.to_owned()),
        ("executable", pm::executable()),
    ];
    lines.extend(pm::release_names());
    lines.iter().map(|(k, v)| format!("{k} {v}\n")).collect()
}

/// What `install` reads from the process: the home directory and hsw-cli's own path.
#[derive(Debug, Clone)]
pub struct Env {
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// The running hsw-cli.
    pub exe: Option<PathBuf>,
}

/// The implied local mirror directories Terraform and OpenTofu search on Unix, given `$HOME` (see the
/// module text); the working directory's `terraform.d/plugins` is left out.
pub fn implied_dirs(home: &Path, xdg_data_home: Option<&Path>) -> Vec<PathBuf> {
    let data = xdg_data_home.map_or_else(|| home.join(".local/share"), Path::to_path_buf);
    vec![
        home.join(".terraform.d/plugins"),
        data.join("terraform/plugins"),
        PathBuf::from("/usr/local/share/terraform/plugins"),
        PathBuf::from("/usr/share/terraform/plugins"),
    ]
}

/// Installs the provider (see the module text) and says what it did.
pub fn install(args: &InstallArgs, env: &Env, out: &mut dyn Write) -> Result<(), Error> {
    let bin = match (&args.binary, &env.exe) {
        (Some(b), _) => b.clone(),
        (None, Some(exe)) => exe.with_file_name(pm::BINARY),
        (None, None) => return Err(Error::cannot_run(
            "cannot tell where this hsw-cli is, so not where its provider is: give --binary PATH",
        )),
    };
    if !bin.is_file() {
        return Err(Error::cannot_run(format!(
            "the provider binary {} is not a file: build it (`cargo build --release -p terraform-provider-hsw`) \
             or give --binary PATH",
            bin.display()
        )));
    }
    let dir = match (&args.dir, &env.home) {
        (Some(d), _) => d.clone(),
        (None, Some(h)) => h.join(".terraform.d/plugins"),
        (None, None) => return Err(Error::cannot_run(
            "HOME is not set, so there is no ~/.terraform.d/plugins: set HOME or give --dir DIR",
        )),
    };
    let sha = pm::sha256_file(&bin)
        .map_err(|e| Error::cannot_run(format!("cannot read {}: {e}", bin.display())))?;
    let _ = writeln!(
        out,
        "provider {} {} for {} (sha256 {sha})",
        bin.display(),
        pm::VERSION,
        pm::platform()
    );
    let mut replaced = false;
    for host in [pm::TERRAFORM_HOST, pm::OPENTOFU_HOST] {
        let dest = pm::package_dir(&dir, host).join(pm::executable());
        let what = match pm::place(&bin, &dir, host, args.force) {
            Ok(Placed::Installed) => "installed",
            Ok(Placed::Unchanged) => "unchanged (already this binary)",
            Ok(Placed::Replaced) => {
                replaced = true;
                "replaced (--force)"
            }
            Err(e @ PlaceError::Differs { .. }) => {
                return Err(Error::invalid(format!(
                    "{}: {e}. Nothing was replaced; run `hsw-cli provider install --force` to replace it",
                    dest.display()
                )))
            }
            Err(PlaceError::Io(m)) => return Err(Error::cannot_run(m)),
        };
        let _ = writeln!(out, "{what}: {}", dest.display());
    }
    if replaced {
        let _ = writeln!(
            out,
            "a root initialized with the old binary has its checksum in .terraform.lock.hcl: run `terraform init \
             -upgrade` there"
        );
    }
    let home = env.home.as_deref().unwrap_or(Path::new("/nonexistent"));
    let xdg = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from);
    if implied_dirs(home, xdg.as_deref()).contains(&dir) {
        let _ = writeln!(
            out,
            "Terraform and OpenTofu now find {}/{} {} with no CLI configuration: `cd terraform && terraform init \
             && terraform plan`",
            pm::TERRAFORM_HOST,
            pm::NAMESPACE_TYPE,
            pm::VERSION
        );
    } else {
        let _ = writeln!(
            out,
            "{} is not a directory Terraform searches by itself: name it in a CLI configuration \
             (provider_installation {{ filesystem_mirror {{ path = \"{}\" }} direct {{}} }}), or run `terraform \
             init -plugin-dir {}`",
            dir.display(),
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: Option<&Path>, binary: Option<&Path>, force: bool) -> InstallArgs {
        InstallArgs {
            dir: dir.map(Path::to_path_buf),
            binary: binary.map(Path::to_path_buf),
            force,
        }
    }

    fn text(out: &[u8]) -> String {
        String::from_utf8_lossy(out).into_owned()
    }

    #[test]
    fn the_default_is_the_home_plugin_dir_and_the_binary_beside_hsw_cli() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let bin_dir = tmp.path().join("bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::fs::write(bin_dir.join("terraform-provider-hsw"), "P").unwrap();
        let env = Env {
            home: Some(home.clone()),
            exe: Some(bin_dir.join("hsw-cli")),
        };
        let mut out = Vec::new();
        install(&args(None, None, false), &env, &mut out).unwrap();
        let t = text(&out);
        for host in [pm::TERRAFORM_HOST, pm::OPENTOFU_HOST] {
            let dest =
                pm::package_dir(&home.join(".terraform.d/plugins"), host).join(pm::executable());
            assert_eq!(std::fs::read_to_string(&dest).unwrap(), "P");
            assert!(t.contains(&format!("installed: {}", dest.display())), "{t}");
        }
        assert!(t.contains("with no CLI configuration"), "{t}");
        // Again: nothing to do.
        let mut out = Vec::new();
        install(&args(None, None, false), &env, &mut out).unwrap();
        assert_eq!(
            text(&out)
                .matches("unchanged (already this binary)")
                .count(),
            2
        );
    }

    #[test]
    fn a_different_binary_is_refused_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::write(&a, "A").unwrap();
        std::fs::write(&b, "B").unwrap();
        let dir = tmp.path().join("plugins");
        let env = Env {
            home: None,
            exe: None,
        };
        install(&args(Some(&dir), Some(&a), false), &env, &mut Vec::new()).unwrap();
        let e = install(&args(Some(&dir), Some(&b), false), &env, &mut Vec::new()).unwrap_err();
        assert_eq!(e.code(), exit::INVALID);
        let m = e.to_string();
        assert!(
            m.contains("a different terraform-provider-hsw")
                && m.ends_with("run `hsw-cli provider install --force` to replace it"),
            "{m}"
        );
        let dest = pm::package_dir(&dir, pm::TERRAFORM_HOST).join(pm::executable());
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "A");
        let mut out = Vec::new();
        install(&args(Some(&dir), Some(&b), true), &env, &mut out).unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "B");
        let t = text(&out);
        assert_eq!(t.matches("replaced (--force)").count(), 2, "{t}");
        assert!(t.contains("terraform init -upgrade"), "{t}");
        assert!(
            t.contains("is not a directory Terraform searches by itself"),
            "{t}"
        );
    }

    #[test]
    fn missing_inputs_say_what_to_give() {
        let env = Env {
            home: None,
            exe: None,
        };
        let e = install(&args(None, None, false), &env, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().ends_with("give --binary PATH"), "{e}");
        let e = install(
            &args(None, Some(Path::new("/nonexistent/p")), false),
            &env,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(e.code(), exit::CANNOT_RUN);
        assert!(e
            .to_string()
            .starts_with("the provider binary /nonexistent/p is not a file"));
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("p");
        std::fs::write(&bin, "P").unwrap();
        let e = install(&args(None, Some(&bin), false), &env, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().ends_with("set HOME or give --dir DIR"), "{e}");
    }

    #[test]
    fn the_layout_names_version_platform_and_files() {
        let l = layout();
        let v = pm::VERSION;
        let p = pm::platform();
        assert_eq!(
            l,
            format!(
                "version {v}\nplatform {p}\nnamespace_type hyperscaler/hsw\nexecutable terraform-provider-hsw_v{v}\n\
                 zip terraform-provider-hsw_{v}_{p}.zip\nsums terraform-provider-hsw_{v}_SHA256SUMS\n\
                 manifest terraform-provider-hsw_{v}_manifest.json\n"
            )
        );
    }

    #[test]
    fn the_implied_dirs_follow_xdg() {
        let h = Path::new("/home/u");
        assert_eq!(
            implied_dirs(h, None)[..2],
            [
                PathBuf::from("/home/u/.terraform.d/plugins"),
                PathBuf::from("/home/u/.local/share/terraform/plugins")
            ]
        );
        assert_eq!(
            implied_dirs(h, Some(Path::new("/d")))[1],
            PathBuf::from("/d/terraform/plugins")
        );
    }
}
