//! vGPUs through sysfs: classic mediated devices (mdev) and NVIDIA's vendor-specific VFIO (vGPU 17+ on Ada,
//! Hopper and newer), behind the [`MdevBackend`] trait.
//!
//! Every path is built from one root ([`SysfsRoot`]; `/` in production, `HSW_SYSFS_ROOT` or the provider's
//! `sysfs_root` otherwise), like mdevctl's `MDEVCTL_ENV_ROOT`, so tests run against fake trees ([`fake`]):
//!
//! - classic: `<root>/sys/class/mdev_bus/<parent>/mdev_supported_types/<type>/{name, description,
//!   available_instances, device_api, create}`; devices `<root>/sys/bus/mdev/devices/<uuid>` with an
//!   `mdev_type` link and a `remove` file;
//! - vendor VFIO: `<root>/sys/bus/pci/devices/<VF>/nvidia/{creatable_vgpu_types, current_vgpu_type,
//!   gpu_instance_id}`; a vGPU is the VF itself (no UUID), given to a VM as a PCI host device;
//! - persistence: mdevctl's format, `<root>/etc/mdevctl.d/<parent>/<uuid>` (JSON: `mdev_type`, `start`,
//!   `attrs`), which `mdevctl` starts at boot.
//!
//! vGPU types are resolved by their `name` (`GRID A100-2-10C`, `NVIDIA H200X-1-18C`), never by the `nvidia-NNN`
//! directory, whose number is arbitrary.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, GpuError, Result};
use crate::mig::normalize_pci;

/// The file whose presence marks a fake tree: after each write, [`fake::settle`] does what the kernel would.
pub const FAKE_KERNEL_MARKER: &str = ".hsw-fake-kernel";

/// The root every sysfs and /etc path is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsRoot {
    root: PathBuf,
}

impl SysfsRoot {
    /// A root directory (`/` for the real system).
    pub fn new(root: impl Into<PathBuf>) -> SysfsRoot {
        SysfsRoot { root: root.into() }
    }

    /// `HSW_SYSFS_ROOT`, else `/`.
    pub fn from_env() -> SysfsRoot {
        SysfsRoot::new(
            std::env::var_os("HSW_SYSFS_ROOT")
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from("/"), PathBuf::from),
        )
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/sys/class/mdev_bus`.
    pub fn mdev_bus(&self) -> PathBuf {
        self.root.join("sys/class/mdev_bus")
    }

    /// `<root>/sys/bus/mdev/devices`.
    pub fn mdev_devices(&self) -> PathBuf {
        self.root.join("sys/bus/mdev/devices")
    }

    /// `<root>/sys/bus/pci/devices`.
    pub fn pci_devices(&self) -> PathBuf {
        self.root.join("sys/bus/pci/devices")
    }

    /// `<root>/etc/mdevctl.d`.
    pub fn mdevctl_dir(&self) -> PathBuf {
        self.root.join("etc/mdevctl.d")
    }

    fn is_fake(&self) -> bool {
        self.root != Path::new("/") && self.root.join(FAKE_KERNEL_MARKER).is_file()
    }
}

/// How a vGPU is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VgpuFlavor {
    /// A mediated device (UUID), created through `mdev_supported_types/<type>/create`.
    Mdev,
    /// NVIDIA vendor-specific VFIO: the VF's `nvidia/current_vgpu_type`.
    VendorVfio,
}

impl VgpuFlavor {
    /// `mdev` or `vendor_vfio`.
    pub fn as_str(self) -> &'static str {
        match self {
            VgpuFlavor::Mdev => "mdev",
            VgpuFlavor::VendorVfio => "vendor_vfio",
        }
    }
}

/// A vGPU type a parent offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgpuType {
    /// Parent PCI address (GPU or VF).
    pub parent: String,
    /// The type's id: the `mdev_supported_types` directory (`nvidia-63`) or the vendor type number (`1414`).
    pub id: String,
    /// The type's name (`GRID A100-2-10C`).
    pub name: String,
    /// `description`, when there is one.
    pub description: Option<String>,
    /// `available_instances` (classic mdev only).
    pub available_instances: Option<u32>,
    /// `device_api` (classic mdev only).
    pub device_api: Option<String>,
    /// How vGPUs of this type are made.
    pub flavor: VgpuFlavor,
}

/// A vGPU that exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vgpu {
    /// Parent PCI address (GPU or VF).
    pub parent: String,
    /// The mdev UUID (classic mdev only).
    pub uuid: Option<String>,
    /// Its type's id.
    pub type_id: String,
    /// Its type's name, when sysfs still says it (a vendor VF may no longer list its own type).
    pub type_name: Option<String>,
    /// How it was made.
    pub flavor: VgpuFlavor,
    /// Whether mdevctl's configuration defines it (`/etc/mdevctl.d/<parent>/<uuid>`).
    pub persistent: bool,
}

impl Vgpu {
    /// The id hsw uses: the UUID for an mdev, the VF's PCI address for a vendor VFIO vGPU.
    pub fn id(&self) -> String {
        self.uuid.clone().unwrap_or_else(|| self.parent.clone())
    }
}

/// mdevctl's persistent definition (`/etc/mdevctl.d/<parent>/<uuid>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdevctlConfig {
    /// The type directory name (`nvidia-63`).
    pub mdev_type: String,
    /// `auto` (start at boot) or `manual`.
    pub start: String,
    /// Device attributes (none for NVIDIA vGPUs).
    #[serde(default)]
    pub attrs: Vec<serde_json::Value>,
}

/// What hsw needs from the kernel for vGPUs.
pub trait MdevBackend: Send + Sync + std::fmt::Debug {
    /// The vGPU types every parent offers.
    fn types(&self) -> Result<Vec<VgpuType>>;
    /// The vGPUs that exist.
    fn vgpus(&self) -> Result<Vec<Vgpu>>;
    /// Creates a vGPU of the type named `type_name` on `parent` (with `uuid` for an mdev, else a new one), and
    /// defines it for mdevctl when `persistent`.
    fn create(
        &self,
        parent: &str,
        type_name: &str,
        uuid: Option<&str>,
        persistent: bool,
    ) -> Result<Vgpu>;
    /// Removes a vGPU (and its mdevctl definition). Already gone is success.
    fn remove(&self, vgpu: &Vgpu) -> Result<()>;
    /// Adds or removes the mdevctl definition of an mdev.
    fn set_persistent(&self, vgpu: &Vgpu, persistent: bool) -> Result<()>;

    /// The vGPU with this id (mdev UUID or VF PCI address).
    fn find(&self, id: &str) -> Result<Option<Vgpu>> {
        let want = id.trim().to_ascii_lowercase();
        let pci = normalize_pci(&want);
        Ok(self.vgpus()?.into_iter().find(|v| {
            v.uuid
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(&want))
                || (v.flavor == VgpuFlavor::VendorVfio && pci.as_deref() == Some(v.parent.as_str()))
        }))
    }
}

/// The sysfs implementation.
#[derive(Debug, Clone)]
pub struct SysfsMdev {
    root: SysfsRoot,
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Parses `creatable_vgpu_types`: lines `1414 : NVIDIA H200X-1-18C` (a header line is skipped).
pub fn parse_creatable(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (id, name) = l.split_once(':')?;
            let id = id.trim();
            (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
                .then(|| (id.to_owned(), name.trim().to_owned()))
        })
        .collect()
}

fn check_uuid(u: &str) -> Result<String> {
    uuid::Uuid::parse_str(u)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| {
            GpuError::new(
                ErrorKind::InvalidArgument,
                format!("{u:?} is not a UUID: write it as 8-4-4-4-12 hexadecimal digits."),
            )
        })
}

impl SysfsMdev {
    /// The backend over `root`.
    pub fn new(root: SysfsRoot) -> SysfsMdev {
        SysfsMdev { root }
    }

    /// The root.
    pub fn root(&self) -> &SysfsRoot {
        &self.root
    }

    fn write(&self, path: &Path, value: &str, what: &str) -> Result<()> {
        std::fs::write(path, value).map_err(|e| GpuError::io(what, path, &e))?;
        if self.root.is_fake() {
            fake::settle(self.root.root());
        }
        Ok(())
    }

    fn classic_types(&self) -> Vec<VgpuType> {
        let mut out = Vec::new();
        for parent in entries(&self.root.mdev_bus()) {
            let pname = file_name(&parent);
            for t in entries(&parent.join("mdev_supported_types")) {
                let Some(name) = read_trim(&t.join("name")) else {
                    continue;
                };
                out.push(VgpuType {
                    parent: normalize_pci(&pname).unwrap_or(pname.clone()),
                    id: file_name(&t),
                    name,
                    description: read_trim(&t.join("description")),
                    available_instances: read_trim(&t.join("available_instances"))
                        .and_then(|s| s.parse().ok()),
                    device_api: read_trim(&t.join("device_api")),
                    flavor: VgpuFlavor::Mdev,
                });
            }
        }
        out
    }

    fn vendor_types(&self) -> Vec<VgpuType> {
        let mut out = Vec::new();
        for vf in entries(&self.root.pci_devices()) {
            let Some(text) = read_trim(&vf.join("nvidia/creatable_vgpu_types")) else {
                continue;
            };
            let pname = file_name(&vf);
            for (id, name) in parse_creatable(&text) {
                out.push(VgpuType {
                    parent: normalize_pci(&pname).unwrap_or(pname.clone()),
                    id,
                    name,
                    description: None,
                    available_instances: None,
                    device_api: None,
                    flavor: VgpuFlavor::VendorVfio,
                });
            }
        }
        out
    }

    fn parent_dir(&self, parent: &str) -> Option<PathBuf> {
        let want = normalize_pci(parent)?;
        entries(&self.root.mdev_bus())
            .into_iter()
            .find(|p| normalize_pci(&file_name(p)).as_deref() == Some(want.as_str()))
    }

    fn vf_dir(&self, parent: &str) -> Option<PathBuf> {
        let want = normalize_pci(parent)?;
        entries(&self.root.pci_devices()).into_iter().find(|p| {
            normalize_pci(&file_name(p)).as_deref() == Some(want.as_str())
                && p.join("nvidia/current_vgpu_type").exists()
        })
    }

    fn persist_path(&self, parent: &str, uuid: &str) -> PathBuf {
        self.root.mdevctl_dir().join(parent).join(uuid)
    }
}

/// Whether two vGPU type names name the same type: case and a leading `GRID ` or `NVIDIA ` aside (hsw's catalog
/// writes `A100DX-1-10C`, classic mdev `GRID A100DX-1-10C`, vendor VFIO `NVIDIA H200X-1-18C`).
pub fn same_type(a: &str, b: &str) -> bool {
    let n = hsw_core::gpu::vgpu::normalise_type_name;
    n(a) == n(b)
}

fn no_type(parent: &str, type_name: &str, offered: &[VgpuType]) -> GpuError {
    let names: Vec<&str> = offered.iter().map(|t| t.name.as_str()).collect();
    GpuError::new(
        ErrorKind::NotFound,
        format!(
            "{parent} offers no vGPU type named {type_name:?}; it offers {}. Types are matched by name, as \
             `cat mdev_supported_types/*/name` or `nvidia/creatable_vgpu_types` shows them.",
            if names.is_empty() {
                "none (is the NVIDIA vGPU host driver loaded, and SR-IOV enabled for vendor VFIO?)".to_owned()
            } else {
                names.join(", ")
            }
        ),
    )
}

impl MdevBackend for SysfsMdev {
    fn types(&self) -> Result<Vec<VgpuType>> {
        let mut t = self.classic_types();
        t.extend(self.vendor_types());
        Ok(t)
    }

    fn vgpus(&self) -> Result<Vec<Vgpu>> {
        let mut out = Vec::new();
        for dev in entries(&self.root.mdev_devices()) {
            let uuid = file_name(&dev);
            let Ok(type_dir) = std::fs::canonicalize(dev.join("mdev_type")) else {
                continue;
            };
            let type_id = file_name(&type_dir);
            let parent = type_dir
                .parent()
                .and_then(Path::parent)
                .map(file_name)
                .unwrap_or_default();
            let parent = normalize_pci(&parent).unwrap_or(parent);
            let persistent = self.persist_path(&parent, &uuid).is_file();
            out.push(Vgpu {
                type_name: read_trim(&type_dir.join("name")),
                parent,
                uuid: Some(uuid),
                type_id,
                flavor: VgpuFlavor::Mdev,
                persistent,
            });
        }
        let vendor_types = self.vendor_types();
        for vf in entries(&self.root.pci_devices()) {
            let Some(cur) = read_trim(&vf.join("nvidia/current_vgpu_type")) else {
                continue;
            };
            if cur.is_empty() || cur == "0" {
                continue;
            }
            let pname = file_name(&vf);
            let parent = normalize_pci(&pname).unwrap_or(pname);
            // The VF may stop listing its own type once created: look in every VF's list.
            let type_name = vendor_types
                .iter()
                .find(|t| t.parent == parent && t.id == cur)
                .or_else(|| vendor_types.iter().find(|t| t.id == cur))
                .map(|t| t.name.clone());
            out.push(Vgpu {
                parent,
                uuid: None,
                type_id: cur,
                type_name,
                flavor: VgpuFlavor::VendorVfio,
                persistent: false,
            });
        }
        Ok(out)
    }

    fn create(
        &self,
        parent: &str,
        type_name: &str,
        uuid: Option<&str>,
        persistent: bool,
    ) -> Result<Vgpu> {
        let pci = normalize_pci(parent).ok_or_else(|| {
            GpuError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{parent:?} is not a PCI address: write it as dddd:bb:dd.f, e.g. 0000:41:00.0."
                ),
            )
        })?;
        let types = self.types()?;
        let offered: Vec<VgpuType> = types.into_iter().filter(|t| t.parent == pci).collect();
        let Some(t) = offered
            .iter()
            .find(|t| t.name == type_name.trim())
            .or_else(|| offered.iter().find(|t| same_type(&t.name, type_name)))
        else {
            if self.parent_dir(&pci).is_none() && self.vf_dir(&pci).is_none() {
                return Err(GpuError::new(
                    ErrorKind::NotFound,
                    format!(
                        "{pci} is not a vGPU parent: neither {} nor {} exists. Install the NVIDIA vGPU host \
                         driver, and for vendor VFIO enable the VFs (`/usr/lib/nvidia/sriov-manage -e {pci}`).",
                        self.root.mdev_bus().join(&pci).display(),
                        self.root.pci_devices().join(&pci).join("nvidia").display()
                    ),
                ));
            }
            return Err(no_type(&pci, type_name, &offered));
        };
        match t.flavor {
            VgpuFlavor::Mdev => {
                if t.available_instances == Some(0) {
                    return Err(GpuError::new(
                        ErrorKind::InsufficientResources,
                        format!(
                            "{pci} has no room for another {:?} vGPU (available_instances is 0): remove a vGPU \
                             of this parent or pick a smaller type.",
                            t.name
                        ),
                    ));
                }
                let uuid = match uuid {
                    Some(u) => check_uuid(u)?,
                    None => uuid::Uuid::new_v4().hyphenated().to_string(),
                };
                if self.root.mdev_devices().join(&uuid).exists() {
                    return Err(GpuError::new(
                        ErrorKind::InUse,
                        format!(
                            "An mdev with UUID {uuid} already exists: import it (`terraform import hsw_mdev.NAME \
                             {uuid}`) or choose another UUID."
                        ),
                    ));
                }
                let dir = self
                    .parent_dir(&pci)
                    .unwrap_or_else(|| self.root.mdev_bus().join(&pci));
                let create = dir.join("mdev_supported_types").join(&t.id).join("create");
                self.write(&create, &uuid, &format!("create a {:?} mdev", t.name))?;
                if !self.root.mdev_devices().join(&uuid).exists() {
                    return Err(GpuError::new(
                        ErrorKind::Other,
                        format!(
                            "Writing {uuid} to {} did not create the mdev: see `dmesg` for the NVIDIA driver's \
                             reason.",
                            create.display()
                        ),
                    ));
                }
                let v = Vgpu {
                    parent: pci,
                    uuid: Some(uuid),
                    type_id: t.id.clone(),
                    type_name: Some(t.name.clone()),
                    flavor: VgpuFlavor::Mdev,
                    persistent: false,
                };
                if persistent {
                    if let Err(e) = self.set_persistent(&v, true) {
                        let _ = self.remove(&v);
                        return Err(e);
                    }
                }
                Ok(Vgpu { persistent, ..v })
            }
            VgpuFlavor::VendorVfio => {
                if persistent {
                    return Err(GpuError::new(
                        ErrorKind::NotSupported,
                        format!(
                            "{pci} is a vendor-VFIO vGPU parent: mdevctl cannot make its vGPU persistent (it is \
                             not an mdev). Set persistent = false; hsw recreates it on the next apply after a \
                             reboot."
                        ),
                    ));
                }
                if uuid.is_some() {
                    return Err(GpuError::new(
                        ErrorKind::InvalidArgument,
                        format!(
                            "{pci} is a vendor-VFIO vGPU parent: its vGPU is the VF itself and has no UUID. Leave \
                             uuid unset and give the VF to the VM as a PCI host device."
                        ),
                    ));
                }
                let vf = self
                    .vf_dir(&pci)
                    .unwrap_or_else(|| self.root.pci_devices().join(&pci));
                let cur_path = vf.join("nvidia/current_vgpu_type");
                let cur = read_trim(&cur_path).unwrap_or_default();
                if !cur.is_empty() && cur != "0" {
                    return Err(GpuError::new(
                        ErrorKind::InUse,
                        format!(
                            "VF {pci} already carries vGPU type {cur}: remove it first (write 0 to {}) or use \
                             another VF.",
                            cur_path.display()
                        ),
                    ));
                }
                self.write(&cur_path, &t.id, &format!("create a {:?} vGPU", t.name))?;
                Ok(Vgpu {
                    parent: pci,
                    uuid: None,
                    type_id: t.id.clone(),
                    type_name: Some(t.name.clone()),
                    flavor: VgpuFlavor::VendorVfio,
                    persistent: false,
                })
            }
        }
    }

    fn remove(&self, vgpu: &Vgpu) -> Result<()> {
        match vgpu.flavor {
            VgpuFlavor::Mdev => {
                let Some(uuid) = &vgpu.uuid else {
                    return Ok(());
                };
                let dev = self.root.mdev_devices().join(uuid);
                if dev.exists() {
                    let remove = dev.join("remove");
                    std::fs::write(&remove, "1").map_err(|e| {
                        let mut err = GpuError::io(&format!("remove mdev {uuid}"), &remove, &e);
                        if e.raw_os_error() == Some(16) {
                            err.kind = ErrorKind::InUse;
                            err.message = format!(
                                "mdev {uuid} is in use (EBUSY): shut down or detach it from the VM using it \
                                 (`virsh list`, `virsh dumpxml`) first."
                            );
                        }
                        err
                    })?;
                    if self.root.is_fake() {
                        fake::settle(self.root.root());
                    }
                }
                let p = self.persist_path(&vgpu.parent, uuid);
                if p.exists() {
                    std::fs::remove_file(&p)
                        .map_err(|e| GpuError::io("remove the mdevctl definition", &p, &e))?;
                }
                Ok(())
            }
            VgpuFlavor::VendorVfio => {
                let Some(vf) = self.vf_dir(&vgpu.parent) else {
                    return Ok(());
                };
                let cur_path = vf.join("nvidia/current_vgpu_type");
                if read_trim(&cur_path).is_some_and(|c| !c.is_empty() && c != "0") {
                    self.write(
                        &cur_path,
                        "0",
                        &format!("remove the vGPU of VF {}", vgpu.parent),
                    )?;
                }
                Ok(())
            }
        }
    }

    fn set_persistent(&self, vgpu: &Vgpu, persistent: bool) -> Result<()> {
        let Some(uuid) = &vgpu.uuid else {
            return if persistent {
                Err(GpuError::new(
                    ErrorKind::NotSupported,
                    format!(
                        "The vendor-VFIO vGPU on {} cannot be made persistent by mdevctl.",
                        vgpu.parent
                    ),
                ))
            } else {
                Ok(())
            };
        };
        let p = self.persist_path(&vgpu.parent, uuid);
        if persistent {
            let cfg = MdevctlConfig {
                mdev_type: vgpu.type_id.clone(),
                start: "auto".into(),
                attrs: Vec::new(),
            };
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| GpuError::io("create the mdevctl directory", dir, &e))?;
            }
            let text = serde_json::to_string_pretty(&cfg).unwrap_or_default();
            hsw_core::fsx::write_atomic(&p, format!("{text}\n").as_bytes(), 0o644)
                .map_err(|e| GpuError::io("write the mdevctl definition", &p, &e))
        } else if p.exists() {
            std::fs::remove_file(&p)
                .map_err(|e| GpuError::io("remove the mdevctl definition", &p, &e))
        } else {
            Ok(())
        }
    }
}

/// Fake sysfs trees for tests (as mdevctl's tests build them), and the fake kernel that makes them behave.
///
/// A fake tree holds [`FAKE_KERNEL_MARKER`] at its root; [`SysfsMdev`] then calls [`settle`] after every write,
/// which does what the kernel would: a UUID written to a type's `create` becomes
/// `sys/bus/mdev/devices/<uuid>` (a link to `sys/devices/<parent>/<uuid>`, with `mdev_type` and `remove`), and
/// `available_instances` goes down; `1` written to a device's `remove` takes it away again.
pub mod fake {
    use std::path::{Path, PathBuf};

    use super::{entries, file_name, read_trim, FAKE_KERNEL_MARKER};

    /// A fake tree under a directory.
    #[derive(Debug, Clone)]
    pub struct FakeTree {
        root: PathBuf,
    }

    impl FakeTree {
        /// Marks `root` as a fake tree (creating it).
        pub fn new(root: &Path) -> std::io::Result<FakeTree> {
            std::fs::create_dir_all(root)?;
            std::fs::write(root.join(FAKE_KERNEL_MARKER), "")?;
            std::fs::create_dir_all(root.join("sys/bus/mdev/devices"))?;
            Ok(FakeTree {
                root: root.to_owned(),
            })
        }

        /// The root.
        pub fn root(&self) -> &Path {
            &self.root
        }

        /// A classic mdev parent with types `(directory, name, available_instances)`.
        pub fn add_mdev_parent(
            &self,
            pci: &str,
            types: &[(&str, &str, u32)],
        ) -> std::io::Result<()> {
            for (dir, name, avail) in types {
                let t = self
                    .root
                    .join("sys/class/mdev_bus")
                    .join(pci)
                    .join("mdev_supported_types")
                    .join(dir);
                std::fs::create_dir_all(&t)?;
                std::fs::write(t.join("name"), format!("{name}\n"))?;
                std::fs::write(
                    t.join("description"),
                    format!(
                        "num_heads=1, frl_config=60, framebuffer=10240M, max_instance={avail}\n"
                    ),
                )?;
                std::fs::write(t.join("available_instances"), format!("{avail}\n"))?;
                std::fs::write(t.join("device_api"), "vfio-pci\n")?;
                std::fs::write(t.join("create"), "")?;
            }
            Ok(())
        }

        /// A vendor-VFIO VF with creatable types `(id, name)`.
        pub fn add_vendor_vf(&self, pci: &str, types: &[(u32, &str)]) -> std::io::Result<()> {
            let d = self
                .root
                .join("sys/bus/pci/devices")
                .join(pci)
                .join("nvidia");
            std::fs::create_dir_all(&d)?;
            let mut text = String::from("ID    : vGPU Name\n");
            for (id, name) in types {
                text.push_str(&format!("{id}  : {name}\n"));
            }
            std::fs::write(d.join("creatable_vgpu_types"), text)?;
            std::fs::write(d.join("current_vgpu_type"), "0\n")?;
            std::fs::write(d.join("gpu_instance_id"), "0\n")?;
            Ok(())
        }

        /// Removes an mdev behind everyone's back (as `echo 1 > remove` by hand would).
        pub fn remove_behind_back(&self, uuid: &str) -> std::io::Result<()> {
            std::fs::write(
                self.root
                    .join("sys/bus/mdev/devices")
                    .join(uuid)
                    .join("remove"),
                "1",
            )?;
            settle(&self.root);
            Ok(())
        }
    }

    fn bump(avail: &Path, delta: i64) {
        if let Some(n) = read_trim(avail).and_then(|s| s.parse::<i64>().ok()) {
            let _ = std::fs::write(avail, format!("{}\n", (n + delta).max(0)));
        }
    }

    /// Does what the kernel would after writes to a fake tree's `create` and `remove` files.
    pub fn settle(root: &Path) {
        let devices = root.join("sys/bus/mdev/devices");
        for parent in entries(&root.join("sys/class/mdev_bus")) {
            let pname = file_name(&parent);
            for t in entries(&parent.join("mdev_supported_types")) {
                let create = t.join("create");
                let Some(text) = read_trim(&create) else {
                    continue;
                };
                if text.is_empty() {
                    continue;
                }
                let _ = std::fs::write(&create, "");
                for uuid in text.split_whitespace() {
                    if uuid::Uuid::parse_str(uuid).is_err() || devices.join(uuid).exists() {
                        continue;
                    }
                    let dev = root.join("sys/devices").join(&pname).join(uuid);
                    if std::fs::create_dir_all(&dev).is_err() {
                        continue;
                    }
                    let _ = std::os::unix::fs::symlink(&t, dev.join("mdev_type"));
                    let _ = std::fs::write(dev.join("remove"), "");
                    let _ = std::fs::create_dir_all(&devices);
                    let _ = std::os::unix::fs::symlink(&dev, devices.join(uuid));
                    bump(&t.join("available_instances"), -1);
                }
            }
        }
        for link in entries(&devices) {
            if read_trim(&link.join("remove")).as_deref() != Some("1") {
                continue;
            }
            if let Ok(t) = std::fs::canonicalize(link.join("mdev_type")) {
                bump(&t.join("available_instances"), 1);
            }
            if let Ok(dev) = std::fs::canonicalize(&link) {
                let _ = std::fs::remove_dir_all(dev);
            }
            let _ = std::fs::remove_file(&link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeTree;
    use super::*;

    fn tree() -> (tempfile::TempDir, FakeTree, SysfsMdev) {
        let dir = tempfile::tempdir().unwrap();
        let t = FakeTree::new(dir.path()).unwrap();
        t.add_mdev_parent(
            "0000:41:00.4",
            &[
                ("nvidia-63", "GRID A100-2-10C", 1),
                ("nvidia-62", "GRID A100-1-5C", 2),
            ],
        )
        .unwrap();
        t.add_vendor_vf(
            "0000:c1:00.4",
            &[(1414, "NVIDIA H200X-1-18C"), (1415, "NVIDIA H200X-2-35C")],
        )
        .unwrap();
        let m = SysfsMdev::new(SysfsRoot::new(dir.path()));
        (dir, t, m)
    }

    #[test]
    fn types_are_found_by_name_on_both_flavors() {
        let (_d, _t, m) = tree();
        let types = m.types().unwrap();
        assert_eq!(types.len(), 4);
        let a = types.iter().find(|t| t.name == "GRID A100-2-10C").unwrap();
        assert_eq!(
            (a.id.as_str(), a.available_instances),
            ("nvidia-63", Some(1))
        );
        let h = types
            .iter()
            .find(|t| t.name == "NVIDIA H200X-1-18C")
            .unwrap();
        assert_eq!((h.id.as_str(), h.flavor), ("1414", VgpuFlavor::VendorVfio));
    }

    #[test]
    fn classic_mdev_life_cycle_with_mdevctl_persistence() {
        let (d, t, m) = tree();
        let v = m
            .create(
                "41:00.4",
                "GRID A100-2-10C",
                Some("C2177883-F1BB-47F0-914D-32A22E3A8804"),
                true,
            )
            .unwrap();
        assert_eq!(
            v.uuid.as_deref(),
            Some("c2177883-f1bb-47f0-914d-32a22e3a8804")
        );
        let cfg = d
            .path()
            .join("etc/mdevctl.d/0000:41:00.4/c2177883-f1bb-47f0-914d-32a22e3a8804");
        let parsed: MdevctlConfig =
            serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        assert_eq!(parsed.mdev_type, "nvidia-63");
        assert_eq!(parsed.start, "auto");
        let found = m
            .find("c2177883-f1bb-47f0-914d-32a22e3a8804")
            .unwrap()
            .unwrap();
        assert_eq!(found, v);
        // The type is now full.
        let e = m
            .create("0000:41:00.4", "GRID A100-2-10C", None, false)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InsufficientResources, "{e}");
        let e = m
            .create("0000:41:00.4", "GRID A100-9-99C", None, false)
            .unwrap_err();
        assert!(e.message.contains("GRID A100-1-5C"), "{e}");
        m.remove(&v).unwrap();
        assert!(m.vgpus().unwrap().is_empty());
        assert!(!cfg.exists());
        // Behind our back.
        let v = m
            .create("0000:41:00.4", "GRID A100-1-5C", None, false)
            .unwrap();
        t.remove_behind_back(v.uuid.as_deref().unwrap()).unwrap();
        assert_eq!(m.find(&v.id()).unwrap(), None);
        m.remove(&v).unwrap();
    }

    #[test]
    fn vendor_vfio_life_cycle() {
        let (_d, _t, m) = tree();
        let e = m
            .create("0000:c1:00.4", "NVIDIA H200X-1-18C", None, true)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotSupported);
        let v = m
            .create("0000:c1:00.4", "NVIDIA H200X-1-18C", None, false)
            .unwrap();
        assert_eq!(v.type_id, "1414");
        assert_eq!(m.find("0000:c1:00.4").unwrap(), Some(v.clone()));
        let e = m
            .create("0000:c1:00.4", "NVIDIA H200X-2-35C", None, false)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InUse);
        m.remove(&v).unwrap();
        assert_eq!(m.find("0000:c1:00.4").unwrap(), None);
        let e = m
            .create("0000:99:00.0", "NVIDIA H200X-1-18C", None, false)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.message.contains("sriov-manage"), "{e}");
    }

    #[test]
    fn creatable_lines_parse() {
        assert_eq!(
            parse_creatable("ID    : vGPU Name\n1414  : NVIDIA H200X-1-18C\nbad\n"),
            vec![("1414".to_owned(), "NVIDIA H200X-1-18C".to_owned())]
        );
    }
}
