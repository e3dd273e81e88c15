//! `hsw_vm`: a libvirt domain booted from a copy-on-write qcow2 overlay of a base image, with cloud-init.
//!
//! Files: everything a VM owns lives in `<pool_dir>/vms/<name>/`: `root.qcow2` (the overlay), `data-N.qcow2`
//! (extra disks), `cidata.iso` and `cidata/` (the NoCloud seed and its sources). Every file is created 0600 (never
//! readable by others, not even for a moment), `cidata/` is 0700, and `vms/` and each VM's directory are
//! [`VM_DIR_MODE`] (0711: traversable, not listable). Static addresses are
//! DHCP reservations added to the network with `virNetworkUpdate`. Destroy removes the domain, the directory and
//! the reservations.
//!
//! Import and read: every attribute comes back from libvirt, from the domain XML or from hsw's metadata in it
//! (JSON in `<metadata>`, see [`crate::hsw::model::vm`]), except the cloud-init texts, read from the seed sources
//! (they may hold secrets, so they are not put in the domain XML).
//!
//! Crash safety: create holds the name's lock ([`crate::hsw::locks`]) throughout; the domain is defined with
//! `"complete": false` and this create's random `"creator"` id in its metadata, and marked complete when create
//! finishes. A create that finds a domain of the same name that hsw left incomplete holds the lock, so that
//! domain's creator is no longer running (the provider died mid-create): it removes it and its files and starts
//! over. A create still running elsewhere keeps its lock, and a second create of the name waits for it, then fails
//! saying so. A failed create cleans up only a domain carrying its own id; files and reservations have names derived from the VM name and are
//! replaced, so a retry converges with no orphan. A complete hsw domain or a foreign domain of the same name is
//! never touched: create fails and says to import it or choose another name.
//!
//! Updates: `vcpu`, `memory`, `accelerator`, `cpu_mode`, `mmio64_gib` and `hostdev` apply by a graceful shutdown (ACPI), up to
//! `shutdown_timeout` seconds, then a forced power-off, a redefinition and a start. `running`, `autostart` and the
//! timeouts change in place. Anything else replaces the VM.
//!
//! Machine and firmware: `pc` + SeaBIOS unless asked (today's domains unchanged); `q35` gets a 64-bit PCI MMIO window
//! (`<pcihole64>` on its `pcie-root`), `efi` gets Debian's OVMF code and a 0600 copy of its variable store,
//! `nvram.fd`, in the VM's directory. A `hostdev.pci` whose IOMMU group holds a device the host still drives is
//! refused at plan and at apply ([`passthrough`]).
//!
//! Code map: [`schema`] (attributes and descriptions), [`inputs`] (plan-time checks, config → domain input, plan
//! defaults, file layout), [`lifecycle`] (create with crash recovery, update, delete), [`leases`] (static DHCP
//! reservations and the wait for an address), [`read`] (refresh and import).

mod inputs;
mod leases;
mod lifecycle;
mod passthrough;
mod read;
mod schema;

use std::path::Path;

use crate::backend::libvirt::Key;
use crate::framework::{
    async_trait, Context, Diagnostics, PlanOutcome, PlanRequest, Resource, Schema, Value,
};

use super::libvirt_objects::{imported, state_key, Kind};
use super::{configured, Configured, Shared};

pub use inputs::default_mac;
pub use leases::reserved_macs;
pub use schema::schema;

/// Seconds to wait for an address when `wait_for_ip_timeout` is not set.
pub const DEFAULT_IP_TIMEOUT: u64 = 300;
/// Seconds to wait for a graceful shutdown when `shutdown_timeout` is not set.
pub const DEFAULT_SHUTDOWN_TIMEOUT: u64 = 120;
/// Bytes in a GiB (disk sizes are given in GiB).
pub(super) const GIB: u64 = 1 << 30;
/// The mode of `<pool_dir>/vms/` and of each VM's directory: others may traverse them (a QEMU running as an
/// unprivileged user under libvirt's dynamic ownership opens the files libvirt hands it) but not list them.
pub const VM_DIR_MODE: u32 = 0o711;

/// How messages name a VM.
const VM: Kind = Kind {
    title: "VM",
    libvirt: "domain",
    list: "virsh list --all",
};

/// The `hsw_vm` resource.
#[derive(Debug)]
pub struct VmResource {
    shared: Shared,
}

impl VmResource {
    /// The resource, reaching the provider's backend through `shared`.
    pub fn new(shared: Shared) -> VmResource {
        VmResource { shared }
    }

    fn configured(&self) -> Result<&Configured, Diagnostics> {
        configured(&self.shared)
    }

    /// The pool directory, once the provider is configured (plan-time checks of paths need it).
    fn pool_dir(&self) -> Option<&Path> {
        self.shared.get().map(|c| c.config.pool_dir.as_path())
    }
}

#[async_trait]
impl Resource for VmResource {
    fn type_name(&self) -> &str {
        "hsw_vm"
    }

    fn schema(&self) -> Schema {
        schema()
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        inputs::check(config, self.pool_dir())
    }

    fn plan(&self, req: &PlanRequest<'_>) -> Result<PlanOutcome, Diagnostics> {
        let out = inputs::plan(req, self.pool_dir())?;
        let sysfs = self.shared.get().map(|c| c.config.sysfs_root.as_path());
        passthrough::check(req.config, sysfs).into_result()?;
        Ok(out)
    }

    async fn create(&self, ctx: &Context, planned: &Value) -> Result<Value, Diagnostics> {
        self.create_vm(ctx, planned).await
    }

    async fn update(
        &self,
        ctx: &Context,
        prior: &Value,
        planned: &Value,
    ) -> Result<Value, Diagnostics> {
        self.update_vm(ctx, prior, planned).await
    }

    async fn delete(&self, _ctx: &Context, state: &Value) -> Result<(), Diagnostics> {
        self.delete_vm(state).await
    }

    async fn read(&self, _ctx: &Context, state: &Value) -> Result<Option<Value>, Diagnostics> {
        self.read_by(&state_key(state)?).await
    }

    async fn import(&self, _ctx: &Context, id: &str) -> Result<Vec<Value>, Diagnostics> {
        imported(VM, id, self.read_by(&Key::parse(id)).await?)
    }
}
