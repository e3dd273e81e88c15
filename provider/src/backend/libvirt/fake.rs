//! An in-memory [`Libvirt`] that enforces libvirt's rules and reports its errors, for tests.
//!
//! What it checks, as libvirt does: unique names and UUIDs (a redefinition must keep both), bridge names in use,
//! `kvm` domains only where KVM is offered, starting a started object, stopping a stopped one, `virNetworkUpdate`
//! entries that already exist or cannot be found, domains started on inactive or missing networks or with missing
//! disk, kernel or initrd files. Stricter than libvirt: undefining an active object is refused (libvirt would turn
//! it transient), so code that passes here removes objects in the right order.
//!
//! Knobs for tests: [`FakeLibvirt::set_acpi_ignored`] (a guest that ignores the power button),
//! [`FakeLibvirt::set_leases`] (whether guests get addresses), [`FakeLibvirt::calls`] (what was called).
//!
//! DHCP leases behave as dnsmasq's: a running guest on an active network takes (or renews) one the first time its
//! addresses or leases are asked for in a boot, while guests get leases; the lease stays listed after the guest
//! stops or restarts, with its old expiry, until it is renewed. The ARP table shows only guests that took or renewed
//! a lease in their current boot (guests that talk). Expiry times come from a fake clock that advances one second
//! per lease.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    AddressSource, DhcpLease, DomainInfo, DomainState, ErrorKind, GuestAddress, HostInfo, Key,
    Libvirt, LibvirtError, NetworkInfo, NetworkSection, UpdateCommand,
};
use crate::hsw::model::xml::escape;

/// Answers whether a file exists (the fake's view of the disk, shared with the fake storage).
pub type FileCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

#[derive(Debug, Clone)]
struct Net {
    uuid: String,
    xml: String,
    bridge: String,
    active: bool,
    autostart: bool,
}

#[derive(Debug, Clone)]
struct Dom {
    uuid: String,
    xml: String,
    active: bool,
    autostart: bool,
    /// Its current (or last) boot, unique in the fake; 0 if never started.
    boot: u64,
}

/// A DHCP lease in the fake's dnsmasq.
#[derive(Debug, Clone)]
struct Lease {
    network: String,
    ip: String,
    expiry: i64,
    /// The domain and its boot that took or last renewed it.
    domain: String,
    boot: u64,
}

/// How long a fake lease lasts (dnsmasq's default under libvirt: one hour).
const LEASE_SECONDS: i64 = 3600;

struct Inner {
    nets: BTreeMap<String, Net>,
    doms: BTreeMap<String, Dom>,
    host: HostInfo,
    acpi_ignored: HashSet<String>,
    leases: bool,
    /// The DHCP leases by MAC (lower case).
    lease_table: BTreeMap<String, Lease>,
    /// The fake clock, seconds since the epoch: one second passes per lease and per domain start (which also
    /// names the boot).
    clock: i64,
    calls: Vec<String>,
}

/// The fake. Cheap to clone: clones share their state.
#[derive(Clone)]
pub struct FakeLibvirt {
    inner: Arc<Mutex<Inner>>,
    files: Option<FileCheck>,
}

impl std::fmt::Debug for FakeLibvirt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeLibvirt").finish_non_exhaustive()
    }
}

impl Default for FakeLibvirt {
    fn default() -> FakeLibvirt {
        FakeLibvirt::new()
    }
}

fn e(kind: ErrorKind, msg: impl Into<String>) -> LibvirtError {
    LibvirtError::new(kind, msg)
}

fn parse(xml: &str) -> Result<roxmltree::Document<'_>, LibvirtError> {
    roxmltree::Document::parse(xml).map_err(|x| e(ErrorKind::Invalid, format!("XML error: {x}")))
}

fn child_text(node: roxmltree::Node<'_, '_>, tag: &str) -> Option<String> {
    node.children()
        .find(|n| n.is_element() && n.has_tag_name(tag))
        .map(|n| n.text().unwrap_or_default().trim().to_owned())
}

/// Inserts `fragment` right after the first `</name>` (where libvirt puts the UUID and the bridge).
fn insert_after_name(xml: &str, fragment: &str) -> String {
    match xml.find("</name>") {
        Some(i) => {
            let at = i + "</name>".len();
            format!("{}{fragment}{}", &xml[..at], &xml[at..])
        }
        None => xml.to_owned(),
    }
}

/// Appends `fragment` as the last child of the element spanning `range` (named `tag`) in `xml`.
fn append_child(xml: &str, range: std::ops::Range<usize>, tag: &str, fragment: &str) -> String {
    let elem = &xml[range.clone()];
    if let Some(body) = elem.strip_suffix("/>") {
        format!(
            "{}{body}>{fragment}</{tag}>{}",
            &xml[..range.start],
            &xml[range.end..]
        )
    } else {
        let at = range.end - format!("</{tag}>").len();
        format!("{}{fragment}{}", &xml[..at], &xml[at..])
    }
}

fn uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl FakeLibvirt {
    /// An empty fake host (no networks, no domains; KVM not usable).
    pub fn new() -> FakeLibvirt {
        FakeLibvirt {
            inner: Arc::new(Mutex::new(Inner {
                nets: BTreeMap::new(),
                doms: BTreeMap::new(),
                host: HostInfo {
                    libvirt_version: "9.0.0".into(),
                    hypervisor_version: "7.2.0".into(),
                    driver: "QEMU".into(),
                    cpus: 2,
                    memory_mib: 24 * 1024,
                    kvm_usable: false,
                },
                acpi_ignored: HashSet::new(),
                leases: true,
                lease_table: BTreeMap::new(),
                clock: 1_700_000_000,
                calls: Vec::new(),
            })),
            files: None,
        }
    }

    /// The same fake, checking at domain start that disk, kernel and initrd files exist.
    #[must_use]
    pub fn with_files(mut self, files: FileCheck) -> FakeLibvirt {
        self.files = Some(files);
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a test panicked while holding it; the data is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets whether KVM is usable (and offered) on the fake host.
    pub fn set_kvm_usable(&self, usable: bool) {
        self.lock().host.kvm_usable = usable;
    }

    /// Makes a domain ignore ACPI shutdown requests (like a guest without acpid), or not.
    pub fn set_acpi_ignored(&self, name: &str, ignored: bool) {
        let mut g = self.lock();
        if ignored {
            g.acpi_ignored.insert(name.to_owned());
        } else {
            g.acpi_ignored.remove(name);
        }
    }

    /// Sets whether running guests get DHCP leases (their reservation, or an address from the range).
    pub fn set_leases(&self, on: bool) {
        self.lock().leases = on;
    }

    /// The calls made so far that change something, as `"verb name"` (e.g. `"domain_shutdown node1"`).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Names of all networks.
    pub fn network_names(&self) -> Vec<String> {
        self.lock().nets.keys().cloned().collect()
    }

    /// Names of all domains.
    pub fn domain_names(&self) -> Vec<String> {
        self.lock().doms.keys().cloned().collect()
    }

    fn record(g: &mut Inner, what: &str, name: &str) {
        g.calls.push(format!("{what} {name}"));
    }

    fn dom_networks(xml: &str) -> Vec<(String, String)> {
        let Ok(doc) = roxmltree::Document::parse(xml) else {
            return Vec::new();
        };
        doc.descendants()
            .filter(|n| n.has_tag_name("interface") && n.attribute("type") == Some("network"))
            .filter_map(|i| {
                let net = i
                    .children()
                    .find(|c| c.has_tag_name("source"))?
                    .attribute("network")?;
                let mac = i
                    .children()
                    .find(|c| c.has_tag_name("mac"))?
                    .attribute("address")?;
                Some((net.to_owned(), mac.to_ascii_lowercase()))
            })
            .collect()
    }

    /// The running guest `name` takes or renews its leases, if guests get leases and it has none from this boot.
    fn dhcp(g: &mut Inner, name: &str) {
        let Some(d) = g.doms.get(name) else { return };
        if !d.active || !g.leases {
            return;
        }
        let boot = d.boot;
        for (net, mac) in Self::dom_networks(&d.xml) {
            let current = g
                .lease_table
                .get(&mac)
                .is_some_and(|l| l.domain == name && l.boot == boot && l.network == net);
            if current {
                continue;
            }
            if let Some(ip) = Self::lease_for(g, &net, &mac) {
                g.clock += 1;
                let expiry = g.clock + LEASE_SECONDS;
                g.lease_table.insert(
                    mac,
                    Lease {
                        network: net,
                        ip,
                        expiry,
                        domain: name.to_owned(),
                        boot,
                    },
                );
            }
        }
    }

    /// The leases listed for the running domain `name` (stale ones included), or, for `current_boot`, only those
    /// taken or renewed in its current boot.
    fn listed(g: &Inner, name: &str, current_boot: bool) -> Vec<GuestAddress> {
        let Some(d) = g.doms.get(name).filter(|d| d.active) else {
            return Vec::new();
        };
        Self::dom_networks(&d.xml)
            .into_iter()
            .filter_map(|(net, mac)| {
                let l = g.lease_table.get(&mac)?;
                let net_up = g.nets.get(&net).is_some_and(|n| n.active);
                let fresh = l.domain == name && l.boot == d.boot;
                (l.network == net && net_up && (fresh || !current_boot)).then(|| GuestAddress {
                    mac,
                    ip: l.ip.clone(),
                })
            })
            .collect()
    }

    fn lease_for(g: &Inner, net: &str, mac: &str) -> Option<String> {
        let n = g.nets.get(net)?;
        if !n.active {
            return None;
        }
        let doc = roxmltree::Document::parse(&n.xml).ok()?;
        let dhcp = doc.descendants().find(|d| d.has_tag_name("dhcp"))?;
        for h in dhcp.children().filter(|c| c.has_tag_name("host")) {
            if h.attribute("mac")
                .is_some_and(|m| m.eq_ignore_ascii_case(mac))
            {
                return h.attribute("ip").map(str::to_owned);
            }
        }
        let range = dhcp.children().find(|c| c.has_tag_name("range"))?;
        let start: std::net::Ipv4Addr = range.attribute("start")?.parse().ok()?;
        let end: std::net::Ipv4Addr = range.attribute("end")?.parse().ok()?;
        let span = u32::from(end).checked_sub(u32::from(start))? + 1;
        let sum: u32 = mac.bytes().map(u32::from).sum();
        Some(std::net::Ipv4Addr::from(u32::from(start) + sum % span).to_string())
    }
}

#[async_trait]
impl Libvirt for FakeLibvirt {
    async fn host_info(&self) -> Result<HostInfo, LibvirtError> {
        Ok(self.lock().host.clone())
    }

    async fn network_define(&self, xml: &str) -> Result<NetworkInfo, LibvirtError> {
        let doc = parse(xml)?;
        let root = doc.root_element();
        if !root.has_tag_name("network") {
            return Err(e(
                ErrorKind::Invalid,
                "XML error: expected root element <network>",
            ));
        }
        let name = child_text(root, "name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| e(ErrorKind::Invalid, "XML error: missing network name"))?;
        let uuid = child_text(root, "uuid");
        let bridge = root
            .children()
            .find(|n| n.has_tag_name("bridge"))
            .and_then(|b| b.attribute("name"))
            .map(str::to_owned);
        let mut g = self.lock();
        if let Some(u) = &uuid {
            if let Some((other, _)) = g.nets.iter().find(|(n, net)| &net.uuid == u && **n != name) {
                return Err(e(
                    ErrorKind::Conflict,
                    format!("operation failed: network '{other}' is already defined with uuid {u}"),
                ));
            }
        }
        let existing = g.nets.get(&name).cloned();
        if let (Some(ex), Some(u)) = (&existing, &uuid) {
            if &ex.uuid != u {
                return Err(e(
                    ErrorKind::Conflict,
                    format!(
                        "operation failed: network '{name}' already exists with uuid {}",
                        ex.uuid
                    ),
                ));
            }
        }
        let bridge = match bridge {
            Some(b) => {
                if g.nets.iter().any(|(n, net)| *n != name && net.bridge == b) {
                    return Err(e(
                        ErrorKind::Conflict,
                        format!("bridge name '{b}' already in use."),
                    ));
                }
                b
            }
            None => match &existing {
                Some(ex) => ex.bridge.clone(),
                None => (0..)
                    .map(|i| format!("virbr{i}"))
                    .find(|b| !g.nets.values().any(|n| &n.bridge == b))
                    .unwrap_or_default(),
            },
        };
        let uuid = uuid
            .or_else(|| existing.as_ref().map(|ex| ex.uuid.clone()))
            .unwrap_or_else(uuid_v4);
        let mut stored = xml.to_owned();
        if child_text(root, "uuid").is_none() {
            stored = insert_after_name(&stored, &format!("<uuid>{uuid}</uuid>"));
        }
        if !root.children().any(|n| n.has_tag_name("bridge")) {
            stored = insert_after_name(
                &stored,
                &format!("<bridge name='{}' stp='on' delay='0'/>", escape(&bridge)),
            );
        }
        let net = Net {
            uuid,
            xml: stored,
            bridge,
            active: existing.as_ref().is_some_and(|x| x.active),
            autostart: existing.as_ref().is_some_and(|x| x.autostart),
        };
        Self::record(&mut g, "network_define", &name);
        g.nets.insert(name.clone(), net.clone());
        Ok(NetworkInfo {
            name,
            uuid: net.uuid,
            active: net.active,
            autostart: net.autostart,
            xml: net.xml,
        })
    }

    async fn network_lookup(&self, key: &Key) -> Result<Option<NetworkInfo>, LibvirtError> {
        let g = self.lock();
        let found = match key {
            Key::Name(n) => g.nets.get_key_value(n),
            Key::Uuid(u) => g.nets.iter().find(|(_, n)| n.uuid.eq_ignore_ascii_case(u)),
        };
        Ok(found.map(|(name, n)| NetworkInfo {
            name: name.clone(),
            uuid: n.uuid.clone(),
            active: n.active,
            autostart: n.autostart,
            xml: n.xml.clone(),
        }))
    }

    async fn network_start(&self, name: &str) -> Result<(), LibvirtError> {
        let mut g = self.lock();
        let n = g.nets.get_mut(name).ok_or_else(|| no_network(name))?;
        if n.active {
            return Err(e(
                ErrorKind::InvalidState,
                "Requested operation is not valid: network is already active",
            ));
        }
        n.active = true;
        Self::record(&mut g, "network_start", name);
        Ok(())
    }

    async fn network_stop(&self, name: &str) -> Result<(), LibvirtError> {
        let mut g = self.lock();
        let n = g.nets.get_mut(name).ok_or_else(|| no_network(name))?;
        if !n.active {
            return Err(e(
                ErrorKind::InvalidState,
                format!("Requested operation is not valid: network '{name}' is not active"),
            ));
        }
        n.active = false;
        Self::record(&mut g, "network_stop", name);
        Ok(())
    }

    async fn network_undefine(&self, name: &str) -> Result<(), LibvirtError> {
        let mut g = self.lock();
        let n = g.nets.get(name).ok_or_else(|| no_network(name))?;
        if n.active {
            return Err(e(
                ErrorKind::InvalidState,
                format!("network '{name}' is still active: stop it before removing its definition"),
            ));
        }
        g.nets.remove(name);
        Self::record(&mut g, "network_undefine", name);
        Ok(())
    }

    async fn network_set_autostart(&self, name: &str, autostart: bool) -> Result<(), LibvirtError> {
        let mut g = self.lock();
        g.nets
            .get_mut(name)
            .ok_or_else(|| no_network(name))?
            .autostart = autostart;
        Self::record(&mut g, "network_set_autostart", name);
        Ok(())
    }

    async fn network_leases(&self, name: &str, mac: &str) -> Result<Vec<DhcpLease>, LibvirtError> {
        let mut g = self.lock();
        if !g.nets.contains_key(name) {
            return Err(no_network(name));
        }
        let mac = mac.to_ascii_lowercase();
        let owners: Vec<String> = g
            .doms
            .iter()
            .filter(|(_, d)| Self::dom_networks(&d.xml).contains(&(name.to_owned(), mac.clone())))
            .map(|(n, _)| n.clone())
            .collect();
        for owner in owners {
            Self::dhcp(&mut g, &owner);
        }
        Ok(g.lease_table
            .get(&mac)
            .filter(|l| l.network == name)
            .map(|l| DhcpLease {
                mac: mac.clone(),
                ip: l.ip.clone(),
                expiry: l.expiry,
            })
            .into_iter()
            .collect())
    }

    async fn network_update(
        &self,
        name: &str,
        command: UpdateCommand,
        section: NetworkSection,
        xml: &str,
    ) -> Result<(), LibvirtError> {
        let mut g = self.lock();
        let net = g.nets.get(name).ok_or_else(|| no_network(name))?;
        let frag_doc = parse(xml)?;
        let frag = frag_doc.root_element();
        if !frag.has_tag_name("host") {
            return Err(e(
                ErrorKind::Invalid,
                format!(
                    "XML error: expected <host> element, got <{}>",
                    frag.tag_name().name()
                ),
            ));
        }
        let doc = parse(&net.xml)?;
        let root = doc.root_element();
        let new_xml = match section {
            NetworkSection::DhcpHost => {
                let (mac, ip, host_name) = (
                    frag.attribute("mac"),
                    frag.attribute("ip"),
                    frag.attribute("name"),
                );
                if mac.is_none() && host_name.is_none() {
                    return Err(e(
                        ErrorKind::Invalid,
                        "XML error: static host definition lacks mac or name attribute",
                    ));
                }
                let ipdef = root
                    .children()
                    .find(|n| n.has_tag_name("ip") && n.attribute("family").is_none_or(|f| f == "ipv4"))
                    .ok_or_else(|| {
                        e(ErrorKind::Invalid, format!("Requested operation is not valid: network '{name}' has no IPv4 address"))
                    })?;
                let dhcp = ipdef.children().find(|n| n.has_tag_name("dhcp"));
                let hosts: Vec<_> = dhcp
                    .map(|d| d.children().filter(|h| h.has_tag_name("host")).collect())
                    .unwrap_or_default();
                let same = |a: Option<&str>, b: Option<&str>| match (a, b) {
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    _ => false,
                };
                match command {
                    UpdateCommand::Add => {
                        if hosts.iter().any(|h| {
                            same(h.attribute("mac"), mac)
                                || same(h.attribute("name"), host_name)
                                || same(h.attribute("ip"), ip)
                        }) {
                            return Err(e(
                                ErrorKind::InvalidState,
                                format!("Requested operation is not valid: there is an existing dhcp host entry in network '{name}' that matches \"{}\"", xml.trim()),
                            ));
                        }
                        match dhcp {
                            Some(d) => append_child(&net.xml, d.range(), "dhcp", xml.trim()),
                            None => append_child(
                                &net.xml,
                                ipdef.range(),
                                "ip",
                                &format!("<dhcp>{}</dhcp>", xml.trim()),
                            ),
                        }
                    }
                    UpdateCommand::Delete => {
                        let m = hosts.iter().find(|h| {
                            (mac.is_none() || same(h.attribute("mac"), mac))
                                && (host_name.is_none() || same(h.attribute("name"), host_name))
                                && (ip.is_none() || same(h.attribute("ip"), ip))
                        });
                        let m = m.ok_or_else(|| {
                            e(ErrorKind::InvalidState, format!("Requested operation is not valid: couldn't locate a matching dhcp host entry in network '{name}'"))
                        })?;
                        let r = m.range();
                        format!("{}{}", &net.xml[..r.start], &net.xml[r.end..])
                    }
                }
            }
            NetworkSection::DnsHost => {
                let ip = frag.attribute("ip").ok_or_else(|| {
                    e(
                        ErrorKind::Invalid,
                        "XML error: missing IP address in network DNS HOST record",
                    )
                })?;
                let dns = root.children().find(|n| n.has_tag_name("dns"));
                let hosts: Vec<_> = dns
                    .map(|d| d.children().filter(|h| h.has_tag_name("host")).collect())
                    .unwrap_or_default();
                let found = hosts.iter().find(|h| h.attribute("ip") == Some(ip));
                match (command, found) {
                    (UpdateCommand::Add, Some(_)) => {
                        return Err(e(
                            ErrorKind::InvalidState,
                            format!("Requested operation is not valid: there is already at least one DNS HOST record with a matching field in network {name}"),
                        ))
                    }
                    (UpdateCommand::Add, None) => match dns {
                        Some(d) => append_child(&net.xml, d.range(), "dns", xml.trim()),
                        None => append_child(&net.xml, root.range(), "network", &format!("<dns>{}</dns>", xml.trim())),
                    },
                    (UpdateCommand::Delete, Some(h)) => {
                        let r = h.range();
                        format!("{}{}", &net.xml[..r.start], &net.xml[r.end..])
                    }
                    (UpdateCommand::Delete, None) => {
                        return Err(e(
                            ErrorKind::InvalidState,
                            format!("Requested operation is not valid: couldn't locate a matching DNS HOST record in network {name}"),
                        ))
                    }
                }
            }
        };
        parse(&new_xml)?;
        if let Some(n) = g.nets.get_mut(name) {
            n.xml = new_xml;
        }
        Self::record(&mut g, "network_update", name);
        Ok(())
    }

    async fn domain_define(&self, xml: &str) -> Result<DomainInfo, LibvirtError> {
        let doc = parse(xml)?;
        let root = doc.root_element();
        if !root.has_tag_name("domain") {
            return Err(e(
                ErrorKind::Invalid,
                "XML error: expected root element <domain>",
            ));
        }
        let name = child_text(root, "name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                e(
                    ErrorKind::Invalid,
                    "XML error: missing domain name information",
                )
            })?;
        let mut g = self.lock();
        match root.attribute("type") {
            Some("qemu") => {}
            Some("kvm") if g.host.kvm_usable => {}
            Some(t) => {
                return Err(e(
                    ErrorKind::Invalid,
                    format!("invalid argument: could not find capabilities for domaintype={t}"),
                ))
            }
            None => {
                return Err(e(
                    ErrorKind::Invalid,
                    "XML error: missing domain type attribute",
                ))
            }
        }
        for tag in ["memory", "vcpu"] {
            if child_text(root, tag)
                .and_then(|t| t.parse::<u64>().ok())
                .is_none_or(|v| v == 0)
            {
                return Err(e(
                    ErrorKind::Invalid,
                    format!("XML error: invalid or missing <{tag}>"),
                ));
            }
        }
        let uuid = child_text(root, "uuid");
        if let Some(u) = &uuid {
            if let Some((other, _)) = g.doms.iter().find(|(n, d)| &d.uuid == u && **n != name) {
                return Err(e(
                    ErrorKind::Conflict,
                    format!("operation failed: domain '{other}' is already defined with uuid {u}"),
                ));
            }
        }
        let existing = g.doms.get(&name).cloned();
        if let (Some(ex), Some(u)) = (&existing, &uuid) {
            if &ex.uuid != u {
                return Err(e(
                    ErrorKind::Conflict,
                    format!(
                        "operation failed: domain '{name}' already exists with uuid {}",
                        ex.uuid
                    ),
                ));
            }
        }
        let uuid = uuid
            .or_else(|| existing.as_ref().map(|x| x.uuid.clone()))
            .unwrap_or_else(uuid_v4);
        let stored = if child_text(root, "uuid").is_none() {
            insert_after_name(xml, &format!("<uuid>{uuid}</uuid>"))
        } else {
            xml.to_owned()
        };
        let dom = Dom {
            uuid,
            xml: stored,
            active: existing.as_ref().is_some_and(|x| x.active),
            autostart: existing.as_ref().is_some_and(|x| x.autostart),
            boot: existing.as_ref().map_or(0, |x| x.boot),
        };
        Self::record(&mut g, "domain_define", &name);
        g.doms.insert(name.clone(), dom.clone());
        Ok(dom_info(&name, &dom))
    }

    async fn domain_lookup(&self, key: &Key) -> Result<Option<DomainInfo>, LibvirtError> {
        let g = self.lock();
        let found = match key {
            Key::Name(n) => g.doms.get_key_value(n),
            Key::Uuid(u) => g.doms.iter().find(|(_, d)| d.uuid.eq_ignore_ascii_case(u)),
        };
        Ok(found.map(|(name, d)| dom_info(name, d)))
    }

    async fn domain_list(&self) -> Result<Vec<String>, LibvirtError> {
        Ok(self.domain_names())
    }

    async fn domain_start(&self, name: &str) -> Result<(), LibvirtError> {
        let mut g = self.lock();
        let d = g.doms.get(name).ok_or_else(|| no_domain(name))?;
        if d.active {
            return Err(e(
                ErrorKind::InvalidState,
                "Requested operation is not valid: domain is already running",
            ));
        }
        for (net, _) in Self::dom_networks(&d.xml) {
            match g.nets.get(&net) {
                None => return Err(no_network(&net)),
                Some(n) if !n.active => {
                    return Err(e(
                        ErrorKind::InvalidState,
                        format!("Requested operation is not valid: network '{net}' is not active"),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(files) = &self.files {
            let doc = parse(&d.xml)?;
            let mut paths: Vec<String> = doc
                .descendants()
                .filter(|n| n.has_tag_name("source"))
                .filter_map(|n| n.attribute("file").map(str::to_owned))
                .collect();
            paths.extend(
                doc.descendants()
                    .filter(|n| n.has_tag_name("kernel") || n.has_tag_name("initrd"))
                    .filter_map(|n| n.text().map(|t| t.trim().to_owned())),
            );
            if let Some(p) = paths.iter().find(|p| !files(p)) {
                return Err(e(
                    ErrorKind::Other,
                    format!("Cannot access storage file '{p}': No such file or directory"),
                ));
            }
        }
        g.clock += 1;
        let boot = u64::try_from(g.clock).unwrap_or_default();
        if let Some(d) = g.doms.get_mut(name) {
            d.active = true;
            d.boot = boot;
        }
        Self::record(&mut g, "domain_start", name);
        Ok(())
    }

    async fn domain_shutdown(&self, name: &str) -> Result<(), LibvirtError> {
        let mut g = self.lock();
        let ignored = g.acpi_ignored.contains(name);
        let d = g.doms.get_mut(name).ok_or_else(|| no_domain(name))?;
        if !d.active {
            return Err(e(
                ErrorKind::InvalidState,
                "Requested operation is not valid: domain is not running",
            ));
        }
        if !ignored {
            d.active = false;
        }
        Self::record(&mut g, "domain_shutdown", name);
        Ok(())
    }

    async fn domain_destroy(&self, name: &str) -> Result<(), LibvirtError> {
        let mut g = self.lock();
        let d = g.doms.get_mut(name).ok_or_else(|| no_domain(name))?;
        if !d.active {
            return Err(e(
                ErrorKind::InvalidState,
                "Requested operation is not valid: domain is not running",
            ));
        }
        d.active = false;
        Self::record(&mut g, "domain_destroy", name);
        Ok(())
    }

    async fn domain_undefine(&self, name: &str) -> Result<(), LibvirtError> {
        let mut g = self.lock();
        let d = g.doms.get(name).ok_or_else(|| no_domain(name))?;
        if d.active {
            return Err(e(
                ErrorKind::InvalidState,
                format!(
                    "domain '{name}' is still running: power it off before removing its definition"
                ),
            ));
        }
        g.doms.remove(name);
        Self::record(&mut g, "domain_undefine", name);
        Ok(())
    }

    async fn domain_set_autostart(&self, name: &str, autostart: bool) -> Result<(), LibvirtError> {
        let mut g = self.lock();
        g.doms
            .get_mut(name)
            .ok_or_else(|| no_domain(name))?
            .autostart = autostart;
        Self::record(&mut g, "domain_set_autostart", name);
        Ok(())
    }

    async fn domain_set_metadata(
        &self,
        name: &str,
        key: &str,
        uri: &str,
        xml: Option<&str>,
    ) -> Result<(), LibvirtError> {
        let mut g = self.lock();
        let d = g.doms.get(name).ok_or_else(|| no_domain(name))?;
        // Like libvirt: drop the element of namespace `uri`, then add the new one under prefix `key`. The fake
        // supports elements holding text only.
        let doc = parse(&d.xml)?;
        let root = doc.root_element();
        let meta = root.children().find(|n| n.has_tag_name("metadata"));
        let mut xml_now = d.xml.clone();
        if let Some(old) = meta.and_then(|m| {
            m.children()
                .find(|c| c.is_element() && c.tag_name().namespace() == Some(uri))
        }) {
            let r = old.range();
            xml_now = format!("{}{}", &xml_now[..r.start], &xml_now[r.end..]);
        }
        if let Some(new) = xml {
            let frag_doc = parse(new)?;
            let frag = frag_doc.root_element();
            let tag = frag.tag_name().name();
            let element = format!(
                "<{key}:{tag} xmlns:{key}=\"{}\">{}</{key}:{tag}>",
                escape(uri),
                escape(frag.text().unwrap_or_default())
            );
            let doc = parse(&xml_now)?;
            let root = doc.root_element();
            xml_now = match root.children().find(|n| n.has_tag_name("metadata")) {
                Some(m) => append_child(&xml_now, m.range(), "metadata", &element),
                None => insert_after_name(&xml_now, &format!("<metadata>{element}</metadata>")),
            };
        }
        parse(&xml_now)?;
        if let Some(d) = g.doms.get_mut(name) {
            d.xml = xml_now;
        }
        Self::record(&mut g, "domain_set_metadata", name);
        Ok(())
    }

    async fn domain_addresses(
        &self,
        name: &str,
        source: AddressSource,
    ) -> Result<Vec<GuestAddress>, LibvirtError> {
        let mut g = self.lock();
        g.doms.get(name).ok_or_else(|| no_domain(name))?;
        Self::dhcp(&mut g, name);
        Ok(Self::listed(&g, name, source == AddressSource::Arp))
    }
}

fn dom_info(name: &str, d: &Dom) -> DomainInfo {
    DomainInfo {
        name: name.to_owned(),
        uuid: d.uuid.clone(),
        state: if d.active {
            DomainState::Running
        } else {
            DomainState::ShutOff
        },
        active: d.active,
        autostart: d.autostart,
        xml: d.xml.clone(),
    }
}

fn no_network(name: &str) -> LibvirtError {
    e(
        ErrorKind::NotFound,
        format!("Network not found: no network with matching name '{name}'"),
    )
}

fn no_domain(name: &str) -> LibvirtError {
    e(
        ErrorKind::NotFound,
        format!("Domain not found: no domain with matching name '{name}'"),
    )
}
