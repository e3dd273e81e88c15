//! Create (with crash recovery), update (shutdown, redefine, start), delete: the files, the domain, its
//! reservations, and the state changes between them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backend::libvirt::{DomainInfo, ErrorKind, Key, LibvirtError};
use crate::framework::{AttrPath, Context, Diagnostics, Value};
use crate::hsw::libvirt_objects::lv_err;
use crate::hsw::locks::lock_name;
use crate::hsw::model::network::{DhcpHost, NetworkSpec};
use crate::hsw::model::vm::{Accel, VmSpec, METADATA_KEY, METADATA_NS, OVMF_VARS};
use crate::hsw::values::req_str;
use crate::hsw::{validate, Configured};

use super::inputs::{input_reservations, inputs, Inputs, Layout};
use super::leases::{add_lease, remove_lease, reservations};
use super::passthrough;
use super::read::metadata_of;
use super::{VmResource, DEFAULT_SHUTDOWN_TIMEOUT, GIB, VM_DIR_MODE};

impl VmResource {
    /// Checks a path is inside the pool directory once symbolic links are resolved, and exists.
    async fn check_file(
        &self,
        c: &Configured,
        attr: &str,
        path: &str,
    ) -> Result<PathBuf, Diagnostics> {
        let storage = &c.backend.storage;
        let at = AttrPath::attr(attr);
        let pool = storage
            .canonicalize(&c.config.pool_dir)
            .await
            .map_err(|e| {
                Diagnostics::error_at(
                    at.clone(),
                    "Pool directory missing",
                    format!("{} Create it, or set the provider's pool_dir.", e.0),
                )
            })?;
        let canonical = storage.canonicalize(Path::new(path)).await.map_err(|e| {
            Diagnostics::error_at(
                at.clone(),
                "File not found",
                format!("{} Check {attr}.", e.0),
            )
        })?;
        validate::inside_canonical(path, &canonical, &pool)
            .map_err(|m| Diagnostics::error_at(at.clone(), "Path outside the pool directory", m))?;
        if canonical.starts_with(pool.join("vms")) {
            return Err(Diagnostics::error_at(
                at,
                "Invalid path",
                format!(
                    "{path} resolves into the VMs' own directory {}.",
                    pool.join("vms").display()
                ),
            ));
        }
        Ok(canonical)
    }

    /// Removes a domain hsw made and everything it owns: the domain, its static leases, its directory.
    async fn remove_all(
        &self,
        c: &Configured,
        name: &str,
        info: Option<&DomainInfo>,
        extra: &[(String, DhcpHost)],
    ) -> Result<(), Diagnostics> {
        let lv = &c.backend.libvirt;
        let mut leases: Vec<(String, DhcpHost)> = extra.to_vec();
        if let Some(info) = info {
            if let Ok(spec) = VmSpec::from_xml(&info.xml) {
                if let Some(meta) = metadata_of(&spec) {
                    leases.extend(reservations(&spec, &meta));
                }
            }
            if info.active {
                done_if_off(lv.domain_destroy(name).await).map_err(lv_err(
                    "Cannot power off the VM",
                    format!("libvirt could not power off {name}"),
                ))?;
            }
            done_if_gone(lv.domain_undefine(name).await).map_err(lv_err(
                "Cannot remove the VM",
                format!("libvirt could not undefine {name}"),
            ))?;
        }
        let mut seen = HashSet::new();
        for (net, host) in leases {
            if seen.insert((net.clone(), host.mac.clone())) {
                remove_lease(c, &net, &host.mac).await?;
            }
        }
        let layout = Layout::new(&c.config.pool_dir, name);
        c.backend
            .storage
            .remove_all(&layout.dir)
            .await
            .map_err(|e| {
                Diagnostics::error(
                    "Cannot remove the VM's files",
                    format!("{} Remove {} by hand.", e.0, layout.dir.display()),
                )
            })
    }

    async fn wait_off(
        &self,
        ctx: &Context,
        c: &Configured,
        name: &str,
        timeout: u64,
    ) -> Result<(), Diagnostics> {
        let lv = &c.backend.libvirt;
        let is_active = || async {
            Ok::<bool, Diagnostics>(
                lv.domain_lookup(&Key::Name(name.to_owned()))
                    .await?
                    .is_some_and(|d| d.active),
            )
        };
        if !is_active().await? {
            return Ok(());
        }
        done_if_off(lv.domain_shutdown(name).await).map_err(lv_err(
            "Cannot shut the VM down",
            format!("libvirt could not ask {name} to shut down"),
        ))?;
        let deadline = Instant::now() + Duration::from_secs(timeout);
        while Instant::now() < deadline {
            if !is_active().await? {
                return Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                () = ctx.stopping() => return Err(Diagnostics::error("Interrupted", format!("Terraform was interrupted while {name} was shutting down."))),
            }
        }
        tracing::warn!(vm = name, "graceful shutdown timed out; powering off");
        done_if_off(lv.domain_destroy(name).await).map_err(lv_err(
            "Cannot power off the VM",
            format!(
                "{name} did not shut down within {timeout} s and libvirt could not power it off"
            ),
        ))
    }

    async fn resolve_accel(&self, c: &Configured, requested: &str) -> Result<Accel, Diagnostics> {
        if requested == "tcg" {
            return Ok(Accel::Tcg);
        }
        let host = c.backend.libvirt.host_info().await?;
        match (requested, host.kvm_usable) {
            (_, true) => Ok(Accel::Kvm),
            ("kvm", false) => Err(Diagnostics::error_at(
                AttrPath::attr("accelerator"),
                "KVM cannot run guests here",
                "accelerator is kvm, but libvirt offers no KVM guests on this host or its CPU shows no vmx/svm flag \
                 (nested virtualisation off). Use accelerator = \"auto\" or \"tcg\", or enable KVM."
                    .to_owned(),
            )),
            _ => Ok(Accel::Tcg),
        }
    }

    async fn create_inner(
        &self,
        ctx: &Context,
        c: &Configured,
        inp: &Inputs,
        creator: &str,
    ) -> Result<(), Diagnostics> {
        let lv = &c.backend.libvirt;
        let storage = &c.backend.storage;
        let layout = Layout::new(&c.config.pool_dir, &inp.name);
        let base = self.check_file(c, "base_image", &inp.base_image).await?;
        for (attr, p) in [("kernel", &inp.kernel), ("initrd", &inp.initrd)] {
            if let Some(p) = p {
                self.check_file(c, attr, p).await?;
            }
        }
        let accel = self.resolve_accel(c, &inp.accelerator).await?;
        // Networks and static addresses.
        for (i, nic) in inp.nics.iter().enumerate() {
            let at = AttrPath::attr("network_interface").then_index(i);
            let Some(net) = lv.network_lookup(&Key::Name(nic.network.clone())).await? else {
                return Err(Diagnostics::error_at(
                    at.then_attr("network"),
                    "Network not found",
                    format!(
                        "libvirt has no network {:?}. Create it (hsw_network) first.",
                        nic.network
                    ),
                ));
            };
            if let Some(ip) = nic.ip {
                let spec = NetworkSpec::from_xml(&net.xml).map_err(|m| {
                    Diagnostics::error_at(at.then_attr("network"), "Cannot read the network", m)
                })?;
                if !spec.subnet.contains(&ip) || spec.dhcp_range.is_none() || ip == spec.gateway {
                    return Err(Diagnostics::error_at(
                        at.then_attr("ip"),
                        "Address not usable",
                        format!("{ip} cannot be reserved on network {}: it needs DHCP (a dhcp block) and a free address of {} other than the gateway {}.", nic.network, spec.subnet, spec.gateway),
                    ));
                }
            }
        }
        // Files: the VM's directory, overlay, extra disks, seed.
        // `vms/` too: one made by an older version is 0755, and listing it shows every VM's files.
        for dir in [&layout.vms, &layout.dir] {
            storage
                .create_dir(dir, VM_DIR_MODE)
                .await
                .map_err(|e| Diagnostics::error("Cannot create the VM's directory", e.0))?;
        }
        let size = match inp.disk_size_gib {
            Some(g) => {
                let base_size = storage.image_size(&base).await.map_err(|e| {
                    Diagnostics::error_at(
                        AttrPath::attr("base_image"),
                        "Cannot read the base image",
                        e.0,
                    )
                })?;
                let want = g.saturating_mul(GIB);
                if want < base_size {
                    return Err(Diagnostics::error_at(
                        AttrPath::attr("disk_size_gib"),
                        "Disk smaller than its base image",
                        format!("disk_size_gib is {g} GiB, but the base image {} is {} bytes: give at least {} GiB, or leave it unset.", inp.base_image, base_size, base_size.div_ceil(GIB)),
                    ));
                }
                Some(want)
            }
            None => None,
        };
        storage
            .create_overlay(&base, &layout.root, size)
            .await
            .map_err(|e| {
                Diagnostics::error_at(
                    AttrPath::attr("base_image"),
                    "Cannot create the root disk",
                    e.0,
                )
            })?;
        for (i, g) in inp.extra_disks.iter().enumerate() {
            storage
                .create_disk(&layout.data(i), g.saturating_mul(GIB))
                .await
                .map_err(|e| {
                    Diagnostics::error_at(
                        AttrPath::attr("extra_disk").then_index(i),
                        "Cannot create the disk",
                        e.0,
                    )
                })?;
        }
        if inp.wants_seed() {
            storage
                .create_seed(&layout.seed_dir, &layout.iso, &inp.seed_files())
                .await
                .map_err(|e| Diagnostics::error("Cannot create the cloud-init seed", e.0))?;
        }
        if inp.efi {
            storage
                .copy_private(Path::new(OVMF_VARS), &layout.nvram)
                .await
                .map_err(|e| {
                    Diagnostics::error_at(
                        AttrPath::attr("firmware"),
                        "Cannot create the UEFI variable store",
                        format!(
                            "{} firmware = \"efi\" needs Debian's OVMF: install the ovmf package (scripts/install-deps.sh \
                             does).",
                            e.0
                        ),
                    )
                })?;
        }
        for (i, (net, host)) in input_reservations(inp).iter().enumerate() {
            add_lease(c, net, host).await.map_err(|mut d| {
                for x in &mut d.0 {
                    x.path = Some(
                        AttrPath::attr("network_interface")
                            .then_index(i)
                            .then_attr("ip"),
                    );
                }
                d
            })?;
        }
        // The domain, marked incomplete (by this create) until the end.
        let spec = inp.spec(&layout, accel, None, Some(creator));
        lv.domain_define(&spec.to_xml()).await.map_err(lv_err(
            "Cannot define the VM",
            format!("libvirt refused the definition of {}", inp.name),
        ))?;
        if inp.autostart {
            lv.domain_set_autostart(&inp.name, true).await?;
        }
        if inp.running {
            self.start_and_wait(ctx, c, inp, true).await?;
        }
        self.mark_complete(c, inp).await
    }

    async fn mark_complete(&self, c: &Configured, inp: &Inputs) -> Result<(), Diagnostics> {
        let xml = format!(
            "<vm>{}</vm>",
            crate::hsw::model::xml::escape(&inp.metadata(None))
        );
        c.backend
            .libvirt
            .domain_set_metadata(&inp.name, METADATA_KEY, METADATA_NS, Some(&xml))
            .await
            .map_err(lv_err(
                "Cannot record the VM's metadata",
                format!("libvirt could not update the metadata of {}", inp.name),
            ))
    }

    pub(super) async fn create_vm(
        &self,
        ctx: &Context,
        planned: &Value,
    ) -> Result<Value, Diagnostics> {
        let c = self.configured()?;
        let inp = inputs(planned, &c.config.pool_dir)?;
        // The host may have changed since the plan.
        passthrough::check(planned, Some(&c.config.sysfs_root)).into_result()?;
        let lv = &c.backend.libvirt;
        // Held until the create ends: another apply creating this name waits, and a domain left incomplete that is
        // found now was left by a create that is no longer running (a live one would hold the lock).
        let _lock = lock_name(ctx, c, "VM", &inp.name).await?;
        if let Some(existing) = lv.domain_lookup(&Key::Name(inp.name.clone())).await? {
            let meta = VmSpec::from_xml(&existing.xml)
                .ok()
                .as_ref()
                .and_then(metadata_of);
            match meta.as_ref().and_then(|m| m.get("complete")).and_then(serde_json::Value::as_bool) {
                Some(false) => {
                    tracing::info!(vm = %inp.name, creator = ?creator_of(&existing), "removing a VM left incomplete by an interrupted apply");
                    self.remove_all(c, &inp.name, Some(&existing), &[]).await?;
                }
                Some(true) => {
                    return Err(Diagnostics::error_at(
                        AttrPath::attr("name"),
                        "VM already exists",
                        format!("hsw already manages a VM named {} (UUID {}), not in this state. Import it with `terraform import <address> {}`, or choose another name.", inp.name, existing.uuid, inp.name),
                    ))
                }
                None => {
                    return Err(Diagnostics::error_at(
                        AttrPath::attr("name"),
                        "Domain name in use",
                        format!("libvirt already has a domain named {} that hsw did not create. Choose another name, or remove that domain.", inp.name),
                    ))
                }
            }
        }
        let creator = uuid::Uuid::new_v4().to_string();
        if let Err(e) = self.create_inner(ctx, c, &inp, &creator).await {
            let info = lv
                .domain_lookup(&Key::Name(inp.name.clone()))
                .await
                .ok()
                .flatten();
            // Clean up only what this create made: no domain yet, or the one marked with this create's id.
            if info
                .as_ref()
                .is_some_and(|i| creator_of(i).as_deref() != Some(creator.as_str()))
            {
                return Err(e);
            }
            if let Err(cleanup) = self
                .remove_all(c, &inp.name, info.as_ref(), &input_reservations(&inp))
                .await
            {
                let mut all = e;
                all.extend(cleanup);
                return Err(all);
            }
            return Err(e);
        }
        self.read_by(&Key::Name(inp.name.clone()))
            .await?
            .ok_or_else(|| {
                Diagnostics::error(
                    "VM vanished",
                    format!(
                        "VM {} was created but is gone: something else removed it.",
                        inp.name
                    ),
                )
            })
    }

    pub(super) async fn update_vm(
        &self,
        ctx: &Context,
        prior: &Value,
        planned: &Value,
    ) -> Result<Value, Diagnostics> {
        let c = self.configured()?;
        let lv = &c.backend.libvirt;
        let old = inputs(prior, &c.config.pool_dir)?;
        let new = inputs(planned, &c.config.pool_dir)?;
        let id = req_str(prior, "id", &AttrPath::root())?;
        let info = lv.domain_lookup(&Key::Uuid(id.clone())).await?.ok_or_else(|| {
            Diagnostics::error("VM not found", format!("VM {} (UUID {id}) no longer exists. Run terraform apply again to recreate it.", new.name))
        })?;
        let shutdown_timeout = new.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);
        let layout = Layout::new(&c.config.pool_dir, &new.name);
        if old.hardware() != new.hardware() {
            passthrough::check(planned, Some(&c.config.sysfs_root)).into_result()?;
            let accel = self.resolve_accel(c, &new.accelerator).await?;
            self.wait_off(ctx, c, &new.name, shutdown_timeout).await?;
            let spec = new.spec(&layout, accel, Some(info.uuid.clone()), None);
            lv.domain_define(&spec.to_xml()).await.map_err(lv_err(
                "Cannot redefine the VM",
                format!("libvirt refused the new definition of {}", new.name),
            ))?;
            if new.running {
                self.start_and_wait(ctx, c, &new, false).await?;
            }
        } else {
            if old.metadata(None) != new.metadata(None) {
                self.mark_complete(c, &new).await?;
            }
            let active = lv
                .domain_lookup(&Key::Uuid(id.clone()))
                .await?
                .is_some_and(|d| d.active);
            match (active, new.running) {
                (true, false) => self.wait_off(ctx, c, &new.name, shutdown_timeout).await?,
                (false, true) => self.start_and_wait(ctx, c, &new, false).await?,
                _ => {}
            }
        }
        if info.autostart != new.autostart {
            lv.domain_set_autostart(&new.name, new.autostart).await?;
        }
        self.read_by(&Key::Uuid(id)).await?.ok_or_else(|| {
            Diagnostics::error(
                "VM vanished",
                format!(
                    "VM {} disappeared during the update: something else removed it.",
                    new.name
                ),
            )
        })
    }

    pub(super) async fn delete_vm(&self, state: &Value) -> Result<(), Diagnostics> {
        let c = self.configured()?;
        let name = req_str(state, "name", &AttrPath::root())?;
        validate::name(&name).map_err(|m| Diagnostics::error("Invalid VM name in state", m))?;
        let info = match state.get("id").as_str() {
            Some(id) => {
                c.backend
                    .libvirt
                    .domain_lookup(&Key::Uuid(id.to_owned()))
                    .await?
            }
            None => None,
        };
        let from_state: Vec<(String, DhcpHost)> = inputs(state, &c.config.pool_dir)
            .map(|i| input_reservations(&i))
            .unwrap_or_default();
        self.remove_all(c, &name, info.as_ref(), &from_state).await
    }
}

/// The id of the create that marked a domain incomplete (hsw's metadata), if any.
fn creator_of(info: &DomainInfo) -> Option<String> {
    let meta = metadata_of(&VmSpec::from_xml(&info.xml).ok()?)?;
    meta.get("creator")?.as_str().map(str::to_owned)
}

/// A power call's result, with libvirt's "invalid state" (the domain is already off) counted as done.
fn done_if_off(r: Result<(), LibvirtError>) -> Result<(), LibvirtError> {
    match r {
        Err(e) if e.kind == ErrorKind::InvalidState => Ok(()),
        r => r,
    }
}

/// A removal's result, with "not found" (the domain is already gone) counted as done.
fn done_if_gone(r: Result<(), LibvirtError>) -> Result<(), LibvirtError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        r => r,
    }
}
