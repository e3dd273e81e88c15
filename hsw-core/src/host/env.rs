//! The host as a rooted tree ([`Host`]), plus the few facts that are not files.
//!
//! Every host path is a default method built from [`Host::root`], so the same code reads the real
//! machine (root `/`) and a fixture tree (root `tests/fixtures/hosts/<case>`). What is not a file
//! (the user, free disk space, whether `/dev/kvm` answers an ioctl, running a tool) is a narrow
//! method with a default implementation that works on any root; [`FixtureHost`] pins those facts
//! for tests. Nothing here decides anything: [`super::check`] and [`super::prepare`] do.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::parse;
use super::run::{CommandSpec, RunOutcome, Runner, SkipRunner, SystemRunner};

/// Directories searched for tools, under the root (the process's `PATH` is added after these).
pub const STANDARD_PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The user whose access the checks judge (and whom `prepare` adds to groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Numeric uid, when known (from the process or `<root>/etc/passwd`).
    pub uid: Option<u32>,
    /// Primary gid, when known (from `<root>/etc/passwd`).
    pub gid: Option<u32>,
}

impl User {
    /// Whether this is the superuser (who needs no group membership).
    pub fn is_root(&self) -> bool {
        match self.uid {
            Some(uid) => uid == 0,
            None => self.name == "root",
        }
    }
}

/// What opening `/dev/kvm` and asking it `KVM_GET_API_VERSION` showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmProbe {
    /// There is no `/dev/kvm` (the kvm module is not loaded, or there is no hardware virtualization).
    Missing,
    /// It exists but could not be opened read-write (usually permissions).
    NotOpenable(String),
    /// A character device that answered `KVM_GET_API_VERSION` with this version (12 on every
    /// kernel since 2.6.22).
    Answered(i32),
    /// A character device that opened but refused the ioctl.
    IoctlFailed(String),
    /// Not a character device (a fixture tree carries a regular file): it opened read-write, but a
    /// regular file cannot answer an ioctl, so only open-ability was checked.
    OpenedNotDevice,
}

/// Free space on the filesystem that holds a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFree {
    /// The host path measured: the wanted path, or its nearest existing ancestor.
    pub measured: String,
    /// Bytes available to unprivileged users (`f_bavail * f_frsize`).
    pub free_bytes: u64,
}

/// The host, seen through one root directory.
///
/// The one required method is [`Host::root`]; every path and every non-file fact has a default
/// that resolves under it, so a fixture tree and the real machine go through the same code.
pub trait Host: std::fmt::Debug {
    /// The directory every host path is resolved under (`/` on the real machine).
    fn root(&self) -> &Path;

    /// An absolute host path (`/proc/cpuinfo`) resolved under the root. `..` never climbs above
    /// the root and `.` is dropped, so config values cannot point outside it.
    fn path(&self, abs: &str) -> PathBuf {
        under(self.root(), abs)
    }

    /// Whether the root is the real machine's `/`: only then are commands run.
    fn is_real_root(&self) -> bool {
        self.root() == Path::new("/")
    }

    /// `/proc/cpuinfo`.
    fn proc_cpuinfo(&self) -> PathBuf {
        self.path("/proc/cpuinfo")
    }
    /// `/proc/meminfo`.
    fn proc_meminfo(&self) -> PathBuf {
        self.path("/proc/meminfo")
    }
    /// `/proc/modules`.
    fn proc_modules(&self) -> PathBuf {
        self.path("/proc/modules")
    }
    /// `/proc/cmdline`.
    fn proc_cmdline(&self) -> PathBuf {
        self.path("/proc/cmdline")
    }
    /// `/proc/net/route`.
    fn proc_net_route(&self) -> PathBuf {
        self.path("/proc/net/route")
    }
    /// `/sys/kernel/iommu_groups`.
    fn sys_iommu_groups(&self) -> PathBuf {
        self.path("/sys/kernel/iommu_groups")
    }
    /// `/sys/class/net`.
    fn sys_class_net(&self) -> PathBuf {
        self.path("/sys/class/net")
    }
    /// `/sys/bus/pci/devices`.
    fn sys_bus_pci_devices(&self) -> PathBuf {
        self.path("/sys/bus/pci/devices")
    }
    /// `/dev/kvm`.
    fn dev_kvm(&self) -> PathBuf {
        self.path("/dev/kvm")
    }
    /// `/etc/group`.
    fn etc_group(&self) -> PathBuf {
        self.path("/etc/group")
    }
    /// `/etc/gshadow`.
    fn etc_gshadow(&self) -> PathBuf {
        self.path("/etc/gshadow")
    }
    /// `/etc/passwd`.
    fn etc_passwd(&self) -> PathBuf {
        self.path("/etc/passwd")
    }
    /// `/etc/modprobe.d` (the administrator's modprobe configuration).
    fn etc_modprobe_d(&self) -> PathBuf {
        self.path("/etc/modprobe.d")
    }
    /// `/usr/lib/modprobe.d` and `/lib/modprobe.d` (packages' modprobe configuration).
    fn lib_modprobe_d(&self) -> Vec<PathBuf> {
        vec![
            self.path("/usr/lib/modprobe.d"),
            self.path("/lib/modprobe.d"),
        ]
    }
    /// `/etc/default/grub`.
    fn etc_default_grub(&self) -> PathBuf {
        self.path("/etc/default/grub")
    }
    /// `/etc/libvirt/qemu.conf` (how the host's libvirtd runs QEMU).
    fn etc_libvirt_qemu_conf(&self) -> PathBuf {
        self.path("/etc/libvirt/qemu.conf")
    }
    /// `/sys/module/apparmor/parameters/enabled` (`Y` when the kernel runs AppArmor).
    fn sys_apparmor_enabled(&self) -> PathBuf {
        self.path("/sys/module/apparmor/parameters/enabled")
    }
    /// `/sys/fs/selinux/enforce` (present when the kernel runs SELinux).
    fn sys_selinux_enforce(&self) -> PathBuf {
        self.path("/sys/fs/selinux/enforce")
    }
    /// `/var/lib/dpkg/status`.
    fn var_lib_dpkg_status(&self) -> PathBuf {
        self.path("/var/lib/dpkg/status")
    }
    /// `/var/lib/hsw/prepare`: where `prepare --apply` keeps backups and manifests.
    fn prepare_state_dir(&self) -> PathBuf {
        self.path(PREPARE_STATE_DIR)
    }

    /// Directories searched for tools, resolved under the root: [`STANDARD_PATH`], then the
    /// absolute entries of the process's `PATH`.
    fn search_path(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<String> = STANDARD_PATH.iter().map(|s| (*s).to_owned()).collect();
        if let Some(p) = std::env::var_os("PATH") {
            for d in std::env::split_paths(&p) {
                if let Some(s) = d.to_str() {
                    if s.starts_with('/') && !dirs.iter().any(|x| x == s) {
                        dirs.push(s.to_owned());
                    }
                }
            }
        }
        dirs.iter().map(|d| self.path(d)).collect()
    }

    /// The first executable named `name` on [`Host::search_path`], as a host path (`/usr/bin/virsh`).
    fn find_tool(&self, name: &str) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        for dir in self.search_path() {
            let p = dir.join(name);
            if let Ok(meta) = fs::metadata(&p) {
                if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                    return Some(host_path(self.root(), &p));
                }
            }
        }
        None
    }

    /// The user whose access is judged: the process's effective uid, named from `<root>/etc/passwd`.
    fn current_user(&self) -> User {
        let uid = rustix::process::geteuid().as_raw();
        user_by_uid(self, uid)
    }

    /// Free bytes on the filesystem holding `abs` (a host path), or its nearest existing ancestor.
    fn disk_free(&self, abs: &str) -> io::Result<DiskFree> {
        let (measured, real) = nearest_existing(self, abs);
        let st = rustix::fs::statvfs(&real).map_err(io::Error::from)?;
        Ok(DiskFree {
            measured,
            free_bytes: st.f_bavail.saturating_mul(st.f_frsize),
        })
    }

    /// Opens `/dev/kvm` read-write and, when it is a character device, asks `KVM_GET_API_VERSION`.
    fn kvm_probe(&self) -> KvmProbe {
        let path = self.dev_kvm();
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return KvmProbe::Missing,
            Err(e) => return KvmProbe::NotOpenable(e.to_string()),
        };
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) => return KvmProbe::NotOpenable(e.to_string()),
        };
        if !meta.file_type().is_char_device() {
            return KvmProbe::OpenedNotDevice;
        }
        match kvm_api_version(&file) {
            Ok(v) => KvmProbe::Answered(v),
            Err(e) => KvmProbe::IoctlFailed(e.to_string()),
        }
    }

    /// The runner for commands: the real one on root `/`, one that runs nothing elsewhere.
    fn runner(&self) -> &dyn Runner {
        if self.is_real_root() {
            &SystemRunner
        } else {
            &SkipRunner
        }
    }
}

/// Where `prepare --apply` keeps its runs, as a host path.
pub const PREPARE_STATE_DIR: &str = "/var/lib/hsw/prepare";

/// The real machine, or any directory standing for it.
#[derive(Debug, Clone)]
pub struct SystemHost {
    root: PathBuf,
    user: Option<String>,
}

impl SystemHost {
    /// A host rooted at `root` (canonicalized). Fails with a sentence when the root is not a directory.
    pub fn new(root: &Path) -> Result<SystemHost, String> {
        let canonical = fs::canonicalize(root).map_err(|e| {
            format!(
                "the host root {} cannot be used ({e}): pass an existing directory to --root or HSW_ROOT",
                root.display()
            )
        })?;
        if !canonical.is_dir() {
            return Err(format!(
                "the host root {} is not a directory: pass a directory to --root or HSW_ROOT",
                root.display()
            ));
        }
        Ok(SystemHost {
            root: canonical,
            user: None,
        })
    }

    /// Judge (and, in `prepare`, change) this user instead of the process's own.
    pub fn with_user(mut self, name: Option<String>) -> SystemHost {
        self.user = name.filter(|n| !n.is_empty());
        self
    }
}

impl Host for SystemHost {
    fn root(&self) -> &Path {
        &self.root
    }

    fn current_user(&self) -> User {
        match &self.user {
            Some(name) => user_by_name(self, name),
            None => user_by_uid(self, rustix::process::geteuid().as_raw()),
        }
    }
}

/// A fixture tree with the non-file facts pinned: the user, the free disk space, and a runner
/// that records what it was asked and runs nothing. For tests and reproducible golden files.
#[derive(Debug)]
pub struct FixtureHost {
    root: PathBuf,
    /// The user the checks judge (looked up in the tree's `etc/passwd`).
    pub user: String,
    /// Bytes reported free for any path.
    pub free_bytes: u64,
    /// Every command the code under test asked to run.
    pub runner: RecordingRunner,
}

impl FixtureHost {
    /// A fixture host over `root`, judging `user`, with `free_bytes` free everywhere.
    pub fn new(root: &Path, user: &str, free_bytes: u64) -> FixtureHost {
        FixtureHost {
            root: root.to_path_buf(),
            user: user.to_owned(),
            free_bytes,
            runner: RecordingRunner::default(),
        }
    }
}

impl Host for FixtureHost {
    fn root(&self) -> &Path {
        &self.root
    }

    fn current_user(&self) -> User {
        user_by_name(self, &self.user)
    }

    fn disk_free(&self, abs: &str) -> io::Result<DiskFree> {
        let (measured, _) = nearest_existing(self, abs);
        Ok(DiskFree {
            measured,
            free_bytes: self.free_bytes,
        })
    }

    fn runner(&self) -> &dyn Runner {
        &self.runner
    }
}

/// A runner that records every command and answers each with [`RunOutcome::Skipped`].
#[derive(Debug, Default)]
pub struct RecordingRunner {
    calls: Mutex<Vec<CommandSpec>>,
}

impl RecordingRunner {
    /// The commands asked for so far.
    pub fn calls(&self) -> Vec<CommandSpec> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Runner for RecordingRunner {
    fn run(&self, cmd: &CommandSpec, _timeout: Duration) -> RunOutcome {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(cmd.clone());
        }
        RunOutcome::Skipped("recorded by a test runner".into())
    }
}

/// `abs` under `root`, normalized lexically: `.` dropped, `..` pops but never above the root.
pub fn under(root: &Path, abs: &str) -> PathBuf {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in Path::new(abs).components() {
        match c {
            Component::Normal(s) => parts.push(s),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let mut out = root.to_path_buf();
    for p in parts {
        out.push(p);
    }
    out
}

/// The host path (`/usr/bin/x`) of a path under `root`.
pub fn host_path(root: &Path, real: &Path) -> String {
    match real.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => real.display().to_string(),
    }
}

/// The nearest existing ancestor of host path `abs` (itself when it exists): (host path, real path).
fn nearest_existing<H: Host + ?Sized>(host: &H, abs: &str) -> (String, PathBuf) {
    let mut p = host.path(abs);
    loop {
        if p.exists() || p == host.root() {
            return (host_path(host.root(), &p), p);
        }
        match p.parent() {
            Some(parent) => p = parent.to_path_buf(),
            None => return (host_path(host.root(), &p), p),
        }
    }
}

/// Reads a text file under the root: `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> io::Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn user_by_uid<H: Host + ?Sized>(host: &H, uid: u32) -> User {
    let passwd = read_optional(&host.etc_passwd())
        .ok()
        .flatten()
        .unwrap_or_default();
    match parse::passwd(&passwd).into_iter().find(|e| e.uid == uid) {
        Some(e) => User {
            name: e.name,
            uid: Some(uid),
            gid: Some(e.gid),
        },
        None if uid == 0 => User {
            name: "root".into(),
            uid: Some(0),
            gid: Some(0),
        },
        None => User {
            name: uid.to_string(),
            uid: Some(uid),
            gid: None,
        },
    }
}

fn user_by_name<H: Host + ?Sized>(host: &H, name: &str) -> User {
    let passwd = read_optional(&host.etc_passwd())
        .ok()
        .flatten()
        .unwrap_or_default();
    match parse::passwd(&passwd).into_iter().find(|e| e.name == name) {
        Some(e) => User {
            name: e.name,
            uid: Some(e.uid),
            gid: Some(e.gid),
        },
        None => User {
            name: name.to_owned(),
            uid: if name == "root" { Some(0) } else { None },
            gid: None,
        },
    }
}

/// `KVM_GET_API_VERSION` (`_IO(0xAE, 0x00)`) on an open `/dev/kvm`.
///
/// This is the crate's one `unsafe` block: the workspace denies `unsafe_code`, and no safe
/// wrapper returns the ioctl's value (rustix's `NoArg` pattern discards it).
#[allow(unsafe_code)]
fn kvm_api_version(file: &File) -> io::Result<i32> {
    use std::os::fd::AsRawFd;
    const KVM_GET_API_VERSION: u64 = 0xAE00;
    // SAFETY: KVM_GET_API_VERSION takes no argument and writes no user memory; it only returns an
    // int. The descriptor is borrowed from `file`, which outlives the call.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), KVM_GET_API_VERSION as _, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_root() {
        let root = Path::new("/tmp/r");
        assert_eq!(
            under(root, "/proc/cpuinfo"),
            PathBuf::from("/tmp/r/proc/cpuinfo")
        );
        assert_eq!(
            under(root, "/var/../../etc/./group"),
            PathBuf::from("/tmp/r/etc/group")
        );
        assert_eq!(under(Path::new("/"), "/dev/kvm"), PathBuf::from("/dev/kvm"));
        assert_eq!(host_path(root, Path::new("/tmp/r/usr/bin/x")), "/usr/bin/x");
    }

    #[test]
    fn root_user_is_root_without_passwd() {
        let dir = tempfile::tempdir().unwrap();
        let h = FixtureHost::new(dir.path(), "root", 1);
        assert!(h.current_user().is_root());
        let h = FixtureHost::new(dir.path(), "alice", 1);
        let u = h.current_user();
        assert!(!u.is_root());
        assert_eq!(u.uid, None);
    }

    #[test]
    fn a_regular_file_kvm_reports_open_ability_only() {
        let dir = tempfile::tempdir().unwrap();
        let h = FixtureHost::new(dir.path(), "root", 1);
        assert_eq!(h.kvm_probe(), KvmProbe::Missing);
        fs::create_dir_all(dir.path().join("dev")).unwrap();
        fs::write(dir.path().join("dev/kvm"), b"").unwrap();
        assert_eq!(h.kvm_probe(), KvmProbe::OpenedNotDevice);
    }
}
