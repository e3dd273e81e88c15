//! A backup's manifest (`manifest.json`, written last): the deployment it is of, its libvirt objects, and every
//! piece with its size, sha256 and the mode its original had; and [`verify`], which checks a backup against it.
//!
//! A piece's path is relative to the backup and starts with its kind's directory (`state/`, `pool/`, ...); where
//! it came from, and where `restore` puts it back, follows from the deployment's directories (see
//! [`Kind::top`]), so a manifest never names a path outside them.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The manifest's format; a backup of another format is refused with the reason.
pub const FORMAT: u32 = 1;
/// The format of an encrypted backup's manifest ([`FORMAT`] with `encryption`): an hsw-cli that cannot open
/// it refuses it instead of restoring encrypted bytes.
pub const FORMAT_ENCRYPTED: u32 = 2;
/// The manifest's file name in a backup.
pub const MANIFEST: &str = "manifest.json";
/// The most a manifest may weigh (a backup lists at most [`MAX_PIECES`] pieces).
const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// The most pieces one backup holds (a walk that finds more stops with an error).
pub const MAX_PIECES: usize = 100_000;

/// What a piece is, and so where it goes back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The cluster definition (`config/cluster.yaml`).
    Config,
    /// A file of hsw's state directory: keys, passwords, inventory, the Terraform root and its state.
    State,
    /// A file of the Terraform root module when it is outside the state directory (`--terraform-dir`).
    Terraform,
    /// A libvirt domain's XML.
    Domain,
    /// A libvirt network's XML.
    Network,
    /// A file of the pool directory: the VMs' disks, seeds and firmware variables, the guest images.
    Disk,
    /// A file of the simulated GPU backend's state (the MIG instances the provider made).
    Gpu,
    /// An application dump taken inside a guest.
    Dump,
}

impl Kind {
    /// The backup's directory for this kind.
    pub fn top(self) -> &'static str {
        match self {
            Kind::Config => "config",
            Kind::State => "state",
            Kind::Terraform => "terraform",
            Kind::Domain | Kind::Network => "libvirt",
            Kind::Disk => "pool",
            Kind::Gpu => "gpu",
            Kind::Dump => "dumps",
        }
    }
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// Its path in the backup (relative, under [`Kind::top`]).
    pub path: String,
    /// What it is.
    pub kind: Kind,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, lowercase hex.
    pub sha256: String,
    /// The permission bits of the file it was taken from (restore gives them back).
    pub mode: u32,
    /// The VM it belongs to, when it belongs to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
}

/// A directory of a tree the backup took (its pieces' parents), with the mode it had: restore makes it again so
/// (QEMU's user must get through the pool's directories to a VM's disk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dir {
    /// Its path in the backup (relative, under [`Kind::top`]).
    pub path: String,
    /// The tree it is in.
    pub kind: Kind,
    /// Its permission bits.
    pub mode: u32,
}

/// Where the deployment was, so that `restore` puts it back in the same places.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The sandbox (`None`: the host's libvirt).
    pub sandbox: Option<String>,
    /// hsw's state directory.
    pub state_dir: PathBuf,
    /// The Terraform root module.
    pub terraform_dir: PathBuf,
    /// libvirt's URI at backup time.
    pub libvirt_uri: String,
    /// The pool directory (disks, seeds, images).
    pub pool_dir: PathBuf,
    /// The simulated GPU backend's state directory, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_state_dir: Option<PathBuf>,
    /// The name the config was read under (its path, or the embedded default's name).
    pub config_name: String,
    /// The sha256 of the config's text (the `config/cluster.yaml` piece).
    pub config_sha256: String,
}

/// A libvirt domain as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRecord {
    /// Its name.
    pub name: String,
    /// Its UUID (Terraform's state knows the VM by it).
    pub uuid: String,
    /// Whether it ran (restore starts it again).
    pub running: bool,
    /// Whether libvirt starts it at boot.
    pub autostart: bool,
    /// How its disks were taken.
    pub disks: String,
}

/// A libvirt network as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// Its name.
    pub name: String,
    /// Whether it was active.
    pub active: bool,
    /// Whether libvirt starts it at boot.
    pub autostart: bool,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The hsw-cli that wrote it.
    pub hsw_version: String,
    /// When it was taken: `YYYYMMDDTHHMMSSZ` (also the backup's directory name).
    pub created: String,
    /// When it was taken, seconds since the epoch.
    pub created_unix: u64,
    /// The deployment it is of.
    pub deployment: Deployment,
    /// The domains.
    pub domains: Vec<DomainRecord>,
    /// The networks.
    pub networks: Vec<NetworkRecord>,
    /// Every piece.
    pub pieces: Vec<Piece>,
    /// The directories of the trees taken, with their modes.
    #[serde(default)]
    pub dirs: Vec<Dir>,
    /// What was left out, each with the reason (a dump whose service was not there, a link).
    #[serde(default)]
    pub skipped: Vec<String>,
    /// How the pieces are encrypted (`None`: they are not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<super::crypt::Encryption>,
}

impl Manifest {
    /// The sum of the pieces' sizes.
    pub fn size(&self) -> u64 {
        self.pieces.iter().map(|p| p.size).sum()
    }

    /// The pieces of one kind.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Piece> {
        self.pieces.iter().filter(move |p| p.kind == kind)
    }
}

/// The sum of the sizes of the pieces of one kind.
pub fn size_of(pieces: &[Piece], kind: Kind) -> u64 {
    pieces
        .iter()
        .filter(|p| p.kind == kind)
        .map(|p| p.size)
        .sum()
}

/// A piece's path as it must be: relative, plain components only (no `..`, no root, no `.`, no doubled or
/// trailing `/`), at most 4096 bytes, under its kind's directory. Returns it as a path.
pub fn checked_path(piece: &Piece) -> Result<PathBuf, String> {
    checked(&piece.path, piece.kind)
}

/// [`checked_path`] of a path and its kind.
pub fn checked(path: &str, kind: Kind) -> Result<PathBuf, String> {
    let p = Path::new(path);
    let plain = !path.is_empty()
        && path.len() <= 4096
        && !path.contains('\0')
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        // Written as its components would write it: no `./`, `//` or trailing `/`.
        && p.components().collect::<PathBuf>().as_os_str() == p.as_os_str();
    if !plain {
        return Err(format!(
            "the manifest lists `{}`, which is not a plain relative path",
            path.escape_debug()
        ));
    }
    let mut parts = p.components();
    let top = parts.next().map(|c| c.as_os_str().to_string_lossy());
    if top.as_deref() != Some(kind.top()) || parts.next().is_none() {
        return Err(format!(
            "the manifest lists the {kind:?} `{path}` outside `{}/`",
            kind.top()
        ));
    }
    Ok(p.to_path_buf())
}

/// The path of a piece below its kind's directory (`pool/a/b` → `a/b`), for where it goes back to.
pub fn below_top(path: &Path) -> PathBuf {
    path.components().skip(1).collect()
}

/// Reads and parses a backup's manifest (bounded in size), and checks its format and its pieces' paths.
pub fn read(backup: &Path) -> Result<Manifest, String> {
    let path = backup.join(MANIFEST);
    let f = std::fs::File::open(&path).map_err(|e| {
        format!(
            "{} has no readable {MANIFEST} ({e}): is it a backup `hsw-cli backup` finished?",
            backup.display()
        )
    })?;
    let bytes = hsw_core::fsx::read_at_most(f, MAX_MANIFEST_BYTES)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .ok_or_else(|| {
            format!(
                "{} is larger than {} MiB, more than any backup's manifest",
                path.display(),
                MAX_MANIFEST_BYTES >> 20
            )
        })?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} does not read as a backup manifest: {e}", path.display()))?;
    let expected = if m.encryption.is_some() {
        FORMAT_ENCRYPTED
    } else {
        FORMAT
    };
    if m.format != expected {
        return Err(format!(
            "{} is of format {}, this hsw-cli reads {FORMAT} (and {FORMAT_ENCRYPTED} when encrypted): use the \
             hsw-cli that wrote it ({})",
            path.display(),
            m.format,
            m.hsw_version
        ));
    }
    if m.pieces.len() > MAX_PIECES {
        return Err(format!(
            "{} lists {} pieces, more than the {MAX_PIECES} a backup holds",
            path.display(),
            m.pieces.len()
        ));
    }
    if m.dirs.len() > MAX_PIECES {
        return Err(format!(
            "{} lists {} directories, more than the {MAX_PIECES} a backup holds",
            path.display(),
            m.dirs.len()
        ));
    }
    for p in &m.pieces {
        checked_path(p)?;
    }
    for d in &m.dirs {
        checked(&d.path, d.kind)?;
    }
    Ok(m)
}

/// What [`verify`] found wrong, each a sentence naming the piece.
pub type Problems = Vec<String>;

/// Checks a backup: the manifest reads; every piece is a regular file (never a link) with its size and sha256;
/// no file is there that the manifest does not list; the config piece is the config the deployment names;
/// each domain and network has its XML, naming it; the Terraform state is there. `progress` is told each
/// piece as it is read.
pub fn verify(backup: &Path, progress: &mut dyn FnMut(&Piece)) -> Result<Manifest, Problems> {
    let m = read(backup).map_err(|e| vec![e])?;
    let mut problems = Vec::new();
    let mut listed = BTreeSet::new();
    for piece in &m.pieces {
        progress(piece);
        let rel = match checked_path(piece) {
            Ok(r) => r,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        if !listed.insert(rel.clone()) {
            problems.push(format!("the manifest lists {} twice", piece.path));
            continue;
        }
        let file = backup.join(&rel);
        match std::fs::symlink_metadata(&file) {
            Ok(meta) if meta.file_type().is_file() => {}
            Ok(_) => {
                problems.push(format!("{} is not a regular file", piece.path));
                continue;
            }
            Err(e) => {
                problems.push(format!("{} is missing ({e})", piece.path));
                continue;
            }
        }
        match hsw_core::fsx::file_sha256(&file) {
            Ok((size, sum)) if size == piece.size && sum == piece.sha256 => {}
            Ok((size, sum)) => problems.push(format!(
                "{} is damaged: {size} bytes with sha256 {sum}, the manifest says {} bytes with sha256 {}",
                piece.path, piece.size, piece.sha256
            )),
            Err(e) => problems.push(format!("{} cannot be read ({e})", piece.path)),
        }
    }
    if let Some(enc) = &m.encryption {
        listed.insert(PathBuf::from(super::crypt::KEY_FILE));
        match hsw_core::fsx::file_sha256(&backup.join(super::crypt::KEY_FILE)) {
            Ok((_, sum)) if sum == enc.key_sha256 => {}
            Ok((_, sum)) => problems.push(format!(
                "{} is damaged: sha256 {sum}, the manifest says {}",
                super::crypt::KEY_FILE,
                enc.key_sha256
            )),
            Err(e) => problems.push(format!("{} is missing ({e})", super::crypt::KEY_FILE)),
        }
    }
    problems.extend(unlisted(backup, &listed));
    problems.extend(fit(&m));
    if problems.is_empty() {
        Ok(m)
    } else {
        Err(problems)
    }
}

/// Files (or anything else) in the backup that the manifest does not list.
fn unlisted(backup: &Path, listed: &BTreeSet<PathBuf>) -> Problems {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    let mut seen = 0usize;
    while let Some(rel) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(backup.join(&rel)) else {
            out.push(format!("{} cannot be listed", backup.join(&rel).display()));
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > MAX_PIECES * 2 {
                out.push(format!(
                    "{} holds more than {} entries; it is not a backup hsw wrote",
                    backup.display(),
                    MAX_PIECES * 2
                ));
                return out;
            }
            let r = rel.join(e.file_name());
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(r),
                _ if r == Path::new(MANIFEST) || listed.contains(&r) => {}
                _ => out.push(format!(
                    "{} is in the backup but not in its manifest",
                    r.display()
                )),
            }
        }
    }
    out
}

/// Whether the pieces are of one deployment: the config has the deployment's hash, every domain and network
/// has its XML, and the Terraform state is there.
fn fit(m: &Manifest) -> Problems {
    let mut out = Vec::new();
    match m.of_kind(Kind::Config).next() {
        // Encrypted, its hash is of the encrypted bytes: restore checks the config once opened.
        Some(_) if m.encryption.is_some() => {}
        Some(c) if c.sha256 == m.deployment.config_sha256 => {}
        Some(c) => out.push(format!(
            "{} has sha256 {}, but the deployment was made from a config with sha256 {}: the pieces are of \
             different deployments",
            c.path, c.sha256, m.deployment.config_sha256
        )),
        None => out.push("the backup holds no config (config/cluster.yaml)".to_owned()),
    }
    for d in &m.domains {
        if !m.pieces.iter().any(|p| p.path == domain_xml(&d.name)) {
            out.push(format!("the domain {} has no XML in the backup", d.name));
        }
    }
    for n in &m.networks {
        if !m.pieces.iter().any(|p| p.path == network_xml(&n.name)) {
            out.push(format!("the network {} has no XML in the backup", n.name));
        }
    }
    if !m.pieces.iter().any(|p| {
        matches!(p.kind, Kind::State | Kind::Terraform) && p.path.ends_with("/terraform.tfstate")
    }) {
        out.push("the backup holds no Terraform state (terraform.tfstate)".to_owned());
    }
    out
}

/// The backup path of a domain's XML.
pub fn domain_xml(name: &str) -> String {
    format!("libvirt/domain-{name}.xml")
}

/// The backup path of a network's XML.
pub fn network_xml(name: &str) -> String {
    format!("libvirt/network-{name}.xml")
}

/// An empty piece at `path`, for the tests.
#[cfg(test)]
pub fn piece(path: &str, kind: Kind) -> Piece {
    Piece {
        path: path.into(),
        kind,
        size: 0,
        sha256: String::new(),
        mode: 0o600,
        vm: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_paths_are_plain_and_under_their_kind() {
        assert_eq!(
            checked_path(&piece("pool/vm/root.qcow2", Kind::Disk)).unwrap(),
            Path::new("pool/vm/root.qcow2")
        );
        for (bad, kind) in [
            ("/etc/passwd", Kind::State),
            ("state/../../etc/passwd", Kind::State),
            ("state/./x", Kind::State),
            ("state//x", Kind::State),
            ("state/x/", Kind::State),
            ("", Kind::State),
            ("state", Kind::State),
            ("pool/x", Kind::State),
            ("state/a\0b", Kind::State),
        ] {
            assert!(checked_path(&piece(bad, kind)).is_err(), "{bad:?} passed");
        }
        assert_eq!(below_top(Path::new("pool/a/b")), Path::new("a/b"));
    }
}
