//! The one place that knows where the hsw provider sits in a Terraform/OpenTofu local mirror (the "unpacked"
//! layout `HOST/hyperscaler/hsw/VERSION/OS_ARCH/terraform-provider-hsw_vVERSION`), and how a binary is put
//! there: `up`'s private mirror, `provider install` and `scripts/release.sh`'s names all come from here.

use std::path::{Path, PathBuf};

/// The provider's namespace and type, as a source address names them after its host.
pub const NAMESPACE_TYPE: &str = "hyperscaler/hsw";
/// The Terraform registry host: the full source the generated root and the modules use.
pub const TERRAFORM_HOST: &str = "registry.terraform.io";
/// OpenTofu's default registry host (what a short `hyperscaler/hsw` means to OpenTofu).
pub const OPENTOFU_HOST: &str = "registry.opentofu.org";
/// The provider's version: the workspace's, which the provider binary built beside hsw-cli carries too.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The provider binary's name as cargo builds it.
pub const BINARY: &str = "terraform-provider-hsw";

/// Terraform's name of this machine's platform (`linux_amd64`, `linux_arm64`, ...).
pub fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("{}_{arch}", std::env::consts::OS)
}

/// The executable's name inside a mirror: `terraform-provider-hsw_v<VERSION>`.
pub fn executable() -> String {
    format!("{BINARY}_v{VERSION}")
}

/// The release files of this version and platform (`scripts/release.sh` asks `hsw-cli provider layout` for
/// them): the zip, the SHA256SUMS and the manifest, named as Terraform's registries and mirrors expect.
pub fn release_names() -> [(&'static str, String); 3] {
    [
        ("zip", format!("{BINARY}_{VERSION}_{}.zip", platform())),
        ("sums", format!("{BINARY}_{VERSION}_SHA256SUMS")),
        ("manifest", format!("{BINARY}_{VERSION}_manifest.json")),
    ]
}

/// `mirror/HOST/hyperscaler/hsw/VERSION/PLATFORM`: the package directory of this version and platform.
pub fn package_dir(mirror: &Path, host: &str) -> PathBuf {
    mirror
        .join(host)
        .join(NAMESPACE_TYPE)
        .join(VERSION)
        .join(platform())
}

/// The sha256 of the file at `path`, in hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    hsw_core::fsx::file_sha256(path).map(|(_, sum)| sum)
}

/// What [`place`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// There was none: copied.
    Installed,
    /// The same binary (same sha256) was there already: nothing written.
    Unchanged,
    /// Another binary was there and `replace` allowed replacing it.
    Replaced,
}

/// Why [`place`] did not place the binary.
#[derive(Debug)]
pub enum PlaceError {
    /// Another binary is at the destination and `replace` was false.
    Differs {
        /// The sha256 of the binary there.
        there: String,
        /// The sha256 of the binary to place.
        ours: String,
    },
    /// Reading, creating the directory or writing failed; the sentence names the path.
    Io(String),
}

impl std::fmt::Display for PlaceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlaceError::Differs { there, ours } => write!(
                f,
                "a different {BINARY} {VERSION} is installed there (sha256 {there}; this one is {ours})"
            ),
            PlaceError::Io(m) => f.write_str(m),
        }
    }
}

/// Copies the executable `bin` into `mirror`'s package directory for `host` (created as needed) with mode
/// 0755, through [`hsw_core::fsx::copy_atomic`] (never through a link). The same binary already there is left
/// alone; a different one is replaced only when `replace`.
pub fn place(bin: &Path, mirror: &Path, host: &str, replace: bool) -> Result<Placed, PlaceError> {
    let dir = package_dir(mirror, host);
    let dest = dir.join(executable());
    let ours = sha256_file(bin)
        .map_err(|e| PlaceError::Io(format!("cannot read the provider {}: {e}", bin.display())))?;
    let there = match std::fs::symlink_metadata(&dest) {
        Ok(m) if m.is_file() => Some(
            sha256_file(&dest)
                .map_err(|e| PlaceError::Io(format!("cannot read {}: {e}", dest.display())))?,
        ),
        // A link or a directory: copy_atomic refuses it below, with the fix.
        Ok(_) => Some(String::new()),
        Err(_) => None,
    };
    let outcome = match there {
        Some(t) if t == ours => return Ok(Placed::Unchanged),
        Some(t) if !replace && !t.is_empty() => return Err(PlaceError::Differs { there: t, ours }),
        Some(_) => Placed::Replaced,
        None => Placed::Installed,
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| PlaceError::Io(format!("cannot create {}: {e}", dir.display())))?;
    hsw_core::fsx::copy_atomic(bin, &dest, 0o755).map_err(|e| {
        PlaceError::Io(format!(
            "cannot copy {} to {}: {e}",
            bin.display(),
            dest.display()
        ))
    })?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_host_namespace_type_version_platform() {
        let d = package_dir(Path::new("/m"), TERRAFORM_HOST);
        assert_eq!(
            d,
            Path::new(&format!(
                "/m/registry.terraform.io/hyperscaler/hsw/{VERSION}/{}",
                platform()
            ))
        );
        assert_eq!(executable(), format!("terraform-provider-hsw_v{VERSION}"));
        assert_eq!(
            release_names()[0].1,
            format!("terraform-provider-hsw_{VERSION}_{}.zip", platform())
        );
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        assert_eq!(platform(), "linux_amd64");
    }

    #[test]
    fn place_installs_keeps_refuses_and_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::write(&a, "provider A").unwrap();
        std::fs::write(&b, "provider B").unwrap();
        let m = tmp.path().join("mirror");
        let dest = package_dir(&m, OPENTOFU_HOST).join(executable());
        assert_eq!(
            place(&a, &m, OPENTOFU_HOST, false).unwrap(),
            Placed::Installed
        );
        assert_eq!(
            place(&a, &m, OPENTOFU_HOST, false).unwrap(),
            Placed::Unchanged
        );
        match place(&b, &m, OPENTOFU_HOST, false) {
            Err(PlaceError::Differs { there, ours }) => {
                assert_eq!(there, sha256_file(&a).unwrap());
                assert_eq!(ours, sha256_file(&b).unwrap());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "provider A");
        assert_eq!(
            place(&b, &m, OPENTOFU_HOST, true).unwrap(),
            Placed::Replaced
        );
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "provider B");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }

    #[test]
    fn place_never_writes_through_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        std::fs::write(&bin, "provider").unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let m = tmp.path().join("mirror");
        let dir = package_dir(&m, TERRAFORM_HOST);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(executable())).unwrap();
        for replace in [false, true] {
            match place(&bin, &m, TERRAFORM_HOST, replace) {
                Err(PlaceError::Io(e)) => assert!(e.contains("symbolic link"), "{e}"),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }
}
