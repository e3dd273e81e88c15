//! Refresh and import: the state of a domain as libvirt has it, from the domain XML, hsw's metadata in it and
//! the seed sources in the VM's directory.

use crate::backend::libvirt::{AddressSource, Key};
use crate::framework::{Diagnostics, Value};
use crate::hsw::model::vm::{HostDev, VmSpec};

use super::inputs::Layout;
use super::{schema, VmResource};

/// hsw's metadata of a domain, parsed; `None` for domains hsw did not create.
pub(super) fn metadata_of(spec: &VmSpec) -> Option<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(&spec.metadata)
        .ok()
        .filter(|j| j.get("version").is_some())
}

impl VmResource {
    /// The state of the domain as libvirt has it; `None` when it does not exist.
    pub(super) async fn read_by(&self, key: &Key) -> Result<Option<Value>, Diagnostics> {
        let c = self.configured()?;
        let lv = &c.backend.libvirt;
        let Some(info) = lv.domain_lookup(key).await? else {
            return Ok(None);
        };
        let spec =
            VmSpec::from_xml(&info.xml).map_err(|m| Diagnostics::error("Cannot read the VM", m))?;
        let meta = metadata_of(&spec).ok_or_else(|| {
            Diagnostics::error(
                "Not an hsw VM",
                format!("Domain {} has no hsw metadata: it was not created by this provider, so hsw_vm cannot manage it.", info.name),
            )
        })?;
        let layout = Layout::new(&c.config.pool_dir, &info.name);
        let text = |k: &str| {
            meta.get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let int = |k: &str| meta.get(k).and_then(serde_json::Value::as_u64);
        let flag = |k: &str| {
            meta.get(k)
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false)
        };
        let seed = |file: &str, given: bool| {
            let path = layout.seed_dir.join(file);
            async move {
                if given {
                    c.backend
                        .storage
                        .read_text(&path)
                        .await
                        .map_err(|e| Diagnostics::error("Cannot read the cloud-init seed", e.0))
                } else {
                    Ok(None)
                }
            }
        };
        let mut addrs = Vec::new();
        if info.active {
            addrs = lv
                .domain_addresses(&info.name, AddressSource::Lease)
                .await
                .unwrap_or_default();
            if addrs.is_empty() {
                addrs = lv
                    .domain_addresses(&info.name, AddressSource::Arp)
                    .await
                    .unwrap_or_default();
            }
        }
        let meta_ifaces = meta
            .get("interfaces")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        let nics: Vec<Value> = spec
            .nics
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let m = meta_ifaces.get(i);
                let mut seen: Vec<String> = addrs
                    .iter()
                    .filter(|a| a.mac == n.mac)
                    .map(|a| a.ip.clone())
                    .collect();
                seen.dedup();
                Value::object([
                    ("network", Value::from(n.network.clone())),
                    ("mac", Value::from(n.mac.clone())),
                    (
                        "ip",
                        Value::from(
                            m.and_then(|m| m.get("ip"))
                                .and_then(serde_json::Value::as_str)
                                .map(str::to_owned),
                        ),
                    ),
                    (
                        "wait_for_ip",
                        Value::from(
                            m.and_then(|m| m.get("wait_for_ip"))
                                .and_then(serde_json::Value::as_bool),
                        ),
                    ),
                    (
                        "addresses",
                        Value::List(seen.into_iter().map(Value::from).collect()),
                    ),
                ])
            })
            .collect();
        let extra: Vec<Value> = meta
            .get("extra_disks")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(serde_json::Value::as_u64)
            .map(|g| Value::object([("size_gib", Value::from(g))]))
            .collect();
        let hostdevs: Vec<Value> = spec
            .hostdevs
            .iter()
            .map(|h| match h {
                HostDev::Mdev(u) => Value::object([
                    ("pci", Value::Null),
                    ("mdev", Value::from(u.clone())),
                    ("managed", Value::Null),
                ]),
                pci => Value::object([
                    ("pci", Value::from(pci.pci_string())),
                    ("mdev", Value::Null),
                    ("managed", Value::from(matches!(pci, HostDev::Pci(..)))),
                ]),
            })
            .collect();
        let keys = meta
            .get("ssh_authorized_keys")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                Value::List(
                    a.iter()
                        .filter_map(|k| k.as_str().map(Value::from))
                        .collect(),
                )
            });
        Ok(Some(
            schema()
                .block
                .null_object()
                .with("id", info.uuid.clone())
                .with("name", info.name.clone())
                .with("vcpu", i64::from(spec.vcpu))
                .with("memory", spec.memory_mib)
                .with(
                    "accelerator",
                    text("accelerator").unwrap_or_else(|| "auto".into()),
                )
                .with("accelerator_used", spec.accel.as_str())
                .with(
                    "cpu_mode",
                    text("cpu_mode").unwrap_or_else(|| "default".into()),
                )
                .with("base_image", text("base_image"))
                .with("disk_size_gib", int("disk_size_gib"))
                .with("kernel", spec.kernel.clone())
                .with("initrd", spec.initrd.clone())
                .with("cmdline", spec.cmdline.clone())
                .with("user_data", seed("user-data", flag("user_data")).await?)
                .with("meta_data", seed("meta-data", flag("meta_data")).await?)
                .with(
                    "network_config",
                    seed("network-config", flag("network_config")).await?,
                )
                .with("hostname", text("hostname"))
                .with("ssh_authorized_keys", keys.unwrap_or(Value::Null))
                .with("running", info.active)
                .with("autostart", info.autostart)
                .with("wait_for_ip_timeout", int("wait_for_ip_timeout"))
                .with("shutdown_timeout", int("shutdown_timeout"))
                .with("network_interface", Value::List(nics))
                .with("extra_disk", Value::List(extra))
                .with("hostdev", Value::List(hostdevs))
                .with("machine", spec.machine.as_str())
                .with("firmware", if spec.efi.is_some() { "efi" } else { "bios" })
                .with("mmio64_gib", int("mmio64_gib")),
        ))
    }
}
