//! Addresses: the static DHCP reservations hsw adds to networks for a VM, and the wait for a VM's address after a
//! start (which leases count as this boot's).

use std::time::{Duration, Instant};

use crate::backend::libvirt::{AddressSource, DhcpLease, Key, NetworkSection, UpdateCommand};
use crate::framework::{AttrPath, Context, Diagnostics};
use crate::hsw::libvirt_objects::lv_err;
use crate::hsw::model::network::{DhcpHost, NetworkSpec};
use crate::hsw::model::vm::VmSpec;
use crate::hsw::Configured;

use super::inputs::{Inputs, NicIn};
use super::read::metadata_of;
use super::{VmResource, DEFAULT_IP_TIMEOUT};

/// What an interface's DHCP leases looked like before its VM started (see `start_and_wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LeaseMark {
    /// Whether there was any lease.
    any: bool,
    /// The newest expiry among them (seconds since the epoch; 0 = never expires).
    newest: i64,
}

impl LeaseMark {
    fn of(leases: &[DhcpLease]) -> LeaseMark {
        LeaseMark {
            any: !leases.is_empty(),
            newest: leases.iter().map(|l| l.expiry).max().unwrap_or(0),
        }
    }

    /// Whether a renewal would be visible: false when the earlier leases never expire.
    fn shows_renewals(&self) -> bool {
        !self.any || self.newest != 0
    }

    /// Whether `lease` was granted or renewed after the mark was taken. A lease that never expires cannot show a
    /// renewal, so it counts only when there was none before.
    fn is_fresh(&self, lease: &DhcpLease) -> bool {
        !self.any || (lease.expiry != 0 && lease.expiry > self.newest)
    }
}

/// MACs of the interfaces of the domain in `xml` that have a static address reserved on `network` by hsw.
pub fn reserved_macs(xml: &str, network: &str) -> Vec<String> {
    let Ok(spec) = VmSpec::from_xml(xml) else {
        return Vec::new();
    };
    let Some(meta) = metadata_of(&spec) else {
        return Vec::new();
    };
    reservations(&spec, &meta)
        .into_iter()
        .filter(|(net, _)| net == network)
        .map(|(_, h)| h.mac)
        .collect()
}

/// The static leases hsw added for a domain: (network, host).
pub(super) fn reservations(spec: &VmSpec, meta: &serde_json::Value) -> Vec<(String, DhcpHost)> {
    let ifaces = meta
        .get("interfaces")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    spec.nics
        .iter()
        .zip(ifaces)
        .filter_map(|(nic, m)| {
            let ip = m.get("ip")?.as_str()?.parse().ok()?;
            Some((
                nic.network.clone(),
                DhcpHost {
                    mac: nic.mac.clone(),
                    ip,
                    hostname: None,
                },
            ))
        })
        .collect()
}

impl VmResource {
    /// Starts the domain and, for interfaces with `wait_for_ip`, waits for evidence that the guest has its address
    /// in this boot.
    ///
    /// A DHCP lease alone is not that evidence: leases outlive the guest, so right after a restart (a cpu or memory
    /// change, or a VM recreated with the same deterministic MAC) the lease from the previous boot is still listed.
    /// So the newest expiry of each interface's leases is noted before the start, and a lease counts only when it
    /// is new or its expiry moved forward (the guest asked again). The ARP table counts only for an interface that
    /// holds no lease at all (a guest with a static address) or only leases that never expire (whose renewal
    /// cannot be seen; the host's ARP entry may then still be the one from before the restart). When the backend cannot list leases with their
    /// expiry (libvirt's test driver), any lease or ARP entry counts, as before.
    pub(super) async fn start_and_wait(
        &self,
        ctx: &Context,
        c: &Configured,
        inp: &Inputs,
        creating: bool,
    ) -> Result<(), Diagnostics> {
        let lv = &c.backend.libvirt;
        let waiting: Vec<(usize, &NicIn)> = inp
            .nics
            .iter()
            .enumerate()
            .filter(|(_, n)| n.wait == Some(true))
            .collect();
        // Before the start: the leases from earlier boots (`None`: leases cannot be listed).
        let mut before = Vec::with_capacity(waiting.len());
        for (_, nic) in &waiting {
            before.push(
                lv.network_leases(&nic.network, &nic.mac)
                    .await
                    .ok()
                    .map(|l| LeaseMark::of(&l)),
            );
        }
        lv.domain_start(&inp.name).await.map_err(lv_err(
            "Cannot start the VM",
            format!("libvirt could not start {} (check its networks are active and its files readable by QEMU)", inp.name),
        ))?;
        if waiting.is_empty() {
            return Ok(());
        }
        let timeout = inp.ip_timeout.unwrap_or(DEFAULT_IP_TIMEOUT);
        let deadline = Instant::now() + Duration::from_secs(timeout);
        loop {
            let arp = lv
                .domain_addresses(&inp.name, AddressSource::Arp)
                .await
                .unwrap_or_default();
            let mut seen = Vec::new();
            let mut missing = None;
            for ((i, nic), mark) in waiting.iter().zip(&before) {
                let in_arp = arp.iter().any(|a| a.mac == nic.mac);
                let ok = match mark {
                    Some(mark) => {
                        let leases = lv
                            .network_leases(&nic.network, &nic.mac)
                            .await
                            .unwrap_or_default();
                        let ok = leases.iter().any(|l| mark.is_fresh(l))
                            || (in_arp && (leases.is_empty() || !mark.shows_renewals()));
                        seen.extend(leases.into_iter().map(|l| {
                            let stale = if mark.is_fresh(&l) {
                                ""
                            } else {
                                " (from an earlier boot)"
                            };
                            format!("{} {}{stale}", l.mac, l.ip)
                        }));
                        ok
                    }
                    None => {
                        let leases = lv
                            .domain_addresses(&inp.name, AddressSource::Lease)
                            .await
                            .unwrap_or_default();
                        let ok = in_arp || leases.iter().any(|a| a.mac == nic.mac);
                        seen.extend(
                            leases
                                .into_iter()
                                .filter(|a| a.mac == nic.mac)
                                .map(|a| format!("{} {}", a.mac, a.ip)),
                        );
                        ok
                    }
                };
                if !ok && missing.is_none() {
                    missing = Some((*i, *nic));
                }
            }
            let Some((i, nic)) = missing else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                let show = |v: Vec<String>| {
                    if v.is_empty() {
                        "none".to_owned()
                    } else {
                        v.join(", ")
                    }
                };
                let arp = arp.iter().map(|a| format!("{} {}", a.mac, a.ip)).collect();
                return Err(Diagnostics::error_at(
                    AttrPath::attr("network_interface").then_index(i).then_attr("wait_for_ip"),
                    "Timed out waiting for an IP address",
                    format!(
                        "VM {} got no IPv4 address on network {} for interface {} within {timeout} s. DHCP leases seen: {}. \
                         ARP entries seen: {}. Check that the guest boots (virsh console {}), runs a DHCP client on that \
                         interface, and that network {} has DHCP; or raise wait_for_ip_timeout. {}",
                        inp.name,
                        nic.network,
                        nic.mac,
                        show(seen),
                        show(arp),
                        inp.name,
                        nic.network,
                        if creating {
                            "The VM was removed."
                        } else {
                            "The VM keeps running with its new definition; Terraform keeps the previous state, so \
                             the next apply tries again."
                        }
                    ),
                ));
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = ctx.stopping() => return Err(Diagnostics::error("Interrupted", format!("Terraform was interrupted while waiting for the address of {}.", inp.name))),
            }
        }
    }
}

pub(super) async fn add_lease(
    c: &Configured,
    network: &str,
    host: &DhcpHost,
) -> Result<(), Diagnostics> {
    // A lease for this MAC left by an interrupted apply is ours (the MAC belongs to this VM): replace it.
    remove_lease(c, network, &host.mac).await?;
    c.backend
        .libvirt
        .network_update(network, UpdateCommand::Add, NetworkSection::DhcpHost, &host.to_xml())
        .await
        .map_err(|e| {
            Diagnostics::error(
                "Cannot reserve the address",
                format!("libvirt could not reserve {} for {} on network {network}: {}. Another host may hold that address: choose a free one.", host.ip, host.mac, e.message),
            )
        })
}

pub(super) async fn remove_lease(
    c: &Configured,
    network: &str,
    mac: &str,
) -> Result<(), Diagnostics> {
    let lv = &c.backend.libvirt;
    let Some(net) = lv.network_lookup(&Key::Name(network.to_owned())).await? else {
        return Ok(());
    };
    let Ok(spec) = NetworkSpec::from_xml(&net.xml) else {
        return Ok(());
    };
    for h in spec.dhcp_hosts.iter().filter(|h| h.mac == mac) {
        let only_mac = DhcpHost {
            hostname: None,
            ..h.clone()
        };
        lv.network_update(
            network,
            UpdateCommand::Delete,
            NetworkSection::DhcpHost,
            &only_mac.to_xml(),
        )
        .await
        .map_err(lv_err(
            "Cannot remove the address reservation",
            format!("libvirt could not remove the lease of {mac} from network {network}"),
        ))?;
    }
    Ok(())
}
