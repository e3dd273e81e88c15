//! `hsw_network`: a libvirt network with one IPv4 subnet, optional DHCP (range and static leases) and DNS.
//!
//! In place: `dhcp_host` and `dns_host` entries (through `virNetworkUpdate`, live and persistent) and `autostart`.
//! Everything else replaces the network. The id is the network's UUID; import takes a name or a UUID.
//! Static leases that `hsw_vm` adds for its interfaces' `ip` are not part of this resource's state.
//!
//! Create holds the name's lock ([`super::locks`]) and records its random creator id in hsw's network metadata.
//! A network of the same name is adopted only when it is identical, inactive and marked as hsw's (an apply that
//! died between define and start; a live one would hold the lock); a running or unmarked one is refused, never
//! undefined.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use crate::backend::libvirt::{Key, NetworkInfo, NetworkSection, UpdateCommand};
use crate::backend::Backend;
use crate::framework::{
    async_trait, AttrPath, Attribute, Block, Context, Diagnostic, Diagnostics, NestedBlock,
    Nesting, PlanOutcome, PlanRequest, Resource, Schema, Type, Value,
};

use super::libvirt_objects::{imported, lv_err, state_key, Kind};
use super::locks::lock_name;
use super::model::network::{first_usable, parse_subnet, DhcpHost, DnsHost, NetMode, NetworkSpec};
use super::planning::{default_attr, plan_with};
use super::values::{opt_str, opt_u64, problems, req_str, str_list};
use super::{configured, validate, Shared};

/// How messages name a network.
const NETWORK: Kind = Kind {
    title: "Network",
    libvirt: "network",
    list: "virsh net-list --all",
};

/// The `hsw_network` resource.
#[derive(Debug)]
pub struct NetworkResource {
    shared: Shared,
}

impl NetworkResource {
    /// The resource, reaching the provider's backend through `shared`.
    pub fn new(shared: Shared) -> NetworkResource {
        NetworkResource { shared }
    }
}

/// The schema of `hsw_network`.
pub fn schema() -> Schema {
    Schema::new(
        Block::new()
            .describe(
                "A libvirt network: a Linux bridge with one IPv4 subnet, optionally NAT or routing to the outside, \
                 DHCP with static leases, and DNS served by libvirt's dnsmasq. DHCP and DNS host entries and \
                 `autostart` change in place; any other change replaces the network.",
            )
            .attribute(Attribute::computed("id", Type::String).describe("The network's libvirt UUID."))
            .attribute(
                Attribute::required("name", Type::String)
                    .requires_replace()
                    .describe("The libvirt network name: 1 to 64 letters, digits, `_`, `.` or `-`, starting with a letter or digit."),
            )
            .attribute(
                Attribute::optional_computed("mode", Type::String)
                    .requires_replace()
                    .describe("How guests reach the outside: `isolated` (host and guests only; the default), `nat`, `route`, or `open` (routed, no firewall rules from libvirt)."),
            )
            .attribute(
                Attribute::optional_computed("bridge", Type::String)
                    .requires_replace()
                    .describe("The bridge interface name (at most 15 characters). libvirt picks `virbrN` when not set."),
            )
            .attribute(
                Attribute::required("subnet", Type::String)
                    .requires_replace()
                    .describe("The IPv4 subnet in CIDR form, such as `10.20.0.0/24` (prefix 8 to 30, no host bits)."),
            )
            .attribute(
                Attribute::optional_computed("gateway", Type::String)
                    .requires_replace()
                    .describe("The host's address on the bridge, which guests use as gateway and DNS server. Defaults to the subnet's first usable address."),
            )
            .attribute(
                Attribute::optional("mtu", Type::Number)
                    .requires_replace()
                    .describe("The bridge MTU (68 to 65535). libvirt's default when not set."),
            )
            .attribute(
                Attribute::optional("dns_domain", Type::String)
                    .requires_replace()
                    .describe("The DNS domain of the guests; libvirt's dnsmasq answers for it and does not forward it."),
            )
            .attribute(
                Attribute::optional_computed("autostart", Type::Bool)
                    .describe("Whether libvirt starts the network when libvirtd starts. Default `false`. Changes in place."),
            )
            .block(
                NestedBlock::new(
                    "dhcp",
                    Nesting::Single,
                    Block::new()
                        .describe("DHCP on the network: the range of dynamic addresses. Without this block the network has no DHCP.")
                        .attribute(Attribute::required("start", Type::String).requires_replace().describe("The first dynamic address."))
                        .attribute(Attribute::required("end", Type::String).requires_replace().describe("The last dynamic address.")),
                ),
            )
            .block(NestedBlock::new(
                "dhcp_host",
                Nesting::Set,
                Block::new()
                    .describe("A static DHCP lease (needs the `dhcp` block). Added and removed in place.")
                    .attribute(Attribute::required("mac", Type::String).describe("The client's MAC address."))
                    .attribute(Attribute::required("ip", Type::String).describe("The address it always gets, inside the subnet."))
                    .attribute(Attribute::optional("hostname", Type::String).describe("The host name handed out and resolved by the network's DNS.")),
            ))
            .block(NestedBlock::new(
                "dns_host",
                Nesting::Set,
                Block::new()
                    .describe("Extra DNS names the network's dnsmasq resolves. Added and removed in place.")
                    .attribute(Attribute::required("ip", Type::String).describe("The address."))
                    .attribute(Attribute::required("hostnames", Type::list(Type::String)).describe("Names resolving to it.")),
            )),
    )
}

/// Reads the DHCP hosts of a configuration or state value.
fn dhcp_hosts(v: &Value) -> Result<Vec<DhcpHost>, String> {
    let mut out = Vec::new();
    for h in v.get("dhcp_host").as_slice().unwrap_or_default() {
        let mac = validate::mac(h.get("mac").as_str().unwrap_or_default())?;
        let ip = validate::ipv4(h.get("ip").as_str().unwrap_or_default())?;
        let hostname = h.get("hostname").as_str().map(str::to_owned);
        if let Some(n) = &hostname {
            validate::hostname(n)?;
        }
        out.push(DhcpHost { mac, ip, hostname });
    }
    out.sort();
    Ok(out)
}

fn dns_hosts(v: &Value) -> Result<Vec<DnsHost>, String> {
    let mut out = Vec::new();
    for h in v.get("dns_host").as_slice().unwrap_or_default() {
        let ip = validate::ipv4(h.get("ip").as_str().unwrap_or_default())?;
        let hostnames = str_list(h, "hostnames");
        if hostnames.is_empty() {
            return Err(format!(
                "The DNS entry for {ip} has no host names: give at least one."
            ));
        }
        for n in &hostnames {
            validate::hostname(n)?;
        }
        out.push(DnsHost { ip, hostnames });
    }
    out.sort();
    Ok(out)
}

/// Checks what is known of a configuration (plan-time validation).
fn check(config: &Value) -> Diagnostics {
    let mut d = Diagnostics::new();
    let mut bad =
        |attr: AttrPath, summary: &str, m: String| d.push(Diagnostic::error(summary, m).at(attr));
    if let Some(n) = config.get("name").as_str() {
        if let Err(m) = validate::name(n) {
            bad(AttrPath::attr("name"), "Invalid network name", m);
        }
    }
    if let Some(m) = config.get("mode").as_str() {
        if NetMode::parse(m).is_none() {
            bad(
                AttrPath::attr("mode"),
                "Invalid network mode",
                format!(
                    "{} is not a mode: use one of {}.",
                    validate::quote(m),
                    NetMode::ALL.join(", ")
                ),
            );
        }
    }
    if let Some(b) = config.get("bridge").as_str() {
        if let Err(m) = validate::bridge(b) {
            bad(AttrPath::attr("bridge"), "Invalid bridge name", m);
        }
    }
    if let Some(s) = config.get("subnet").as_str() {
        if let Err(m) = parse_subnet(s) {
            bad(AttrPath::attr("subnet"), "Invalid subnet", m);
        }
    }
    for (path, v) in [
        (AttrPath::attr("gateway"), config.get("gateway")),
        (
            AttrPath::attr("dhcp").then_attr("start"),
            config.get("dhcp").get("start"),
        ),
        (
            AttrPath::attr("dhcp").then_attr("end"),
            config.get("dhcp").get("end"),
        ),
    ] {
        if let Some(s) = v.as_str() {
            if let Err(m) = validate::ipv4(s) {
                bad(path, "Invalid address", m);
            }
        }
    }
    if let Some(dom) = config.get("dns_domain").as_str() {
        if let Err(m) = validate::hostname(dom) {
            bad(AttrPath::attr("dns_domain"), "Invalid DNS domain", m);
        }
    }
    if let Some(mtu) = config.get("mtu").as_number() {
        if mtu.as_u64().is_none_or(|m| !(68..=65535).contains(&m)) {
            bad(
                AttrPath::attr("mtu"),
                "Invalid MTU",
                format!("The MTU {mtu} is not a whole number from 68 to 65535."),
            );
        }
    }
    if config.get("dhcp_host").is_wholly_known() {
        if let Err(m) = dhcp_hosts(config) {
            bad(AttrPath::attr("dhcp_host"), "Invalid static lease", m);
        }
    }
    if config.get("dns_host").is_wholly_known() {
        if let Err(m) = dns_hosts(config) {
            bad(AttrPath::attr("dns_host"), "Invalid DNS entry", m);
        }
    }
    if !d.has_errors() && config.is_wholly_known() {
        let mut filled = config.clone();
        if filled.get("gateway").is_null() {
            if let Some(Ok(net)) = config.get("subnet").as_str().map(parse_subnet) {
                filled.set("gateway", first_usable(net).to_string());
            }
        }
        if let Ok(spec) = spec_from(&filled) {
            d.extend(problems("Invalid network", &AttrPath::root(), spec.check()));
        }
    }
    d
}

/// Builds the spec from a planned (or configured, fully known) value.
fn spec_from(v: &Value) -> Result<NetworkSpec, Diagnostics> {
    let root = AttrPath::root();
    let name = req_str(v, "name", &root)?;
    validate::name(&name)
        .map_err(|m| Diagnostics::error_at(AttrPath::attr("name"), "Invalid network name", m))?;
    let mode =
        NetMode::parse(opt_str(v, "mode").as_deref().unwrap_or("isolated")).ok_or_else(|| {
            Diagnostics::error_at(
                AttrPath::attr("mode"),
                "Invalid network mode",
                format!("Use one of {}.", NetMode::ALL.join(", ")),
            )
        })?;
    let bridge = opt_str(v, "bridge");
    if let Some(b) = &bridge {
        validate::bridge(b).map_err(|m| {
            Diagnostics::error_at(AttrPath::attr("bridge"), "Invalid bridge name", m)
        })?;
    }
    let subnet = parse_subnet(&req_str(v, "subnet", &root)?)
        .map_err(|m| Diagnostics::error_at(AttrPath::attr("subnet"), "Invalid subnet", m))?;
    let gateway = match opt_str(v, "gateway") {
        Some(g) => validate::ipv4(&g)
            .map_err(|m| Diagnostics::error_at(AttrPath::attr("gateway"), "Invalid address", m))?,
        None => first_usable(subnet),
    };
    let dhcp = v.get("dhcp");
    let dhcp_range = if dhcp.is_null() {
        None
    } else {
        let at = AttrPath::attr("dhcp");
        let ip = |n: &str| -> Result<Ipv4Addr, Diagnostics> {
            validate::ipv4(&req_str(dhcp, n, &at)?)
                .map_err(|m| Diagnostics::error_at(at.then_attr(n), "Invalid address", m))
        };
        Some((ip("start")?, ip("end")?))
    };
    let dns_domain = opt_str(v, "dns_domain");
    if let Some(d) = &dns_domain {
        validate::hostname(d).map_err(|m| {
            Diagnostics::error_at(AttrPath::attr("dns_domain"), "Invalid DNS domain", m)
        })?;
    }
    let mtu = opt_u64(v, "mtu", &root, 68, 65535)?.and_then(|m| u32::try_from(m).ok());
    Ok(NetworkSpec {
        name,
        uuid: None,
        mode,
        bridge,
        subnet,
        gateway,
        dhcp_range,
        dhcp_hosts: dhcp_hosts(v).map_err(|m| {
            Diagnostics::error_at(AttrPath::attr("dhcp_host"), "Invalid static lease", m)
        })?,
        dns_domain,
        dns_hosts: dns_hosts(v).map_err(|m| {
            Diagnostics::error_at(AttrPath::attr("dns_host"), "Invalid DNS entry", m)
        })?,
        mtu,
        creator: None,
    })
}

/// The state of a network as libvirt has it. `vm_macs` are the MACs of static leases owned by `hsw_vm`s, left out.
fn state_from(info: &NetworkInfo, vm_macs: &HashSet<String>) -> Result<Value, Diagnostics> {
    let spec = NetworkSpec::from_xml(&info.xml)
        .map_err(|m| Diagnostics::error("Cannot read the network", m))?;
    let block = schema().block;
    let dhcp = match spec.dhcp_range {
        Some((s, e)) => Value::object([
            ("start", Value::from(s.to_string())),
            ("end", Value::from(e.to_string())),
        ]),
        None => Value::Null,
    };
    let hosts = spec
        .dhcp_hosts
        .iter()
        .filter(|h| !vm_macs.contains(&h.mac))
        .map(|h| {
            Value::object([
                ("mac", Value::from(h.mac.clone())),
                ("ip", Value::from(h.ip.to_string())),
                ("hostname", Value::from(h.hostname.clone())),
            ])
        })
        .collect();
    let dns = spec
        .dns_hosts
        .iter()
        .map(|h| {
            Value::object([
                ("ip", Value::from(h.ip.to_string())),
                (
                    "hostnames",
                    Value::List(h.hostnames.iter().cloned().map(Value::from).collect()),
                ),
            ])
        })
        .collect();
    Ok(block
        .null_object()
        .with("id", info.uuid.clone())
        .with("name", spec.name)
        .with("mode", spec.mode.as_str())
        .with("bridge", spec.bridge)
        .with("subnet", spec.subnet.to_string())
        .with("gateway", spec.gateway.to_string())
        .with("mtu", spec.mtu.map(i64::from))
        .with("dns_domain", spec.dns_domain)
        .with("autostart", info.autostart)
        .with("dhcp", dhcp)
        .with("dhcp_host", Value::Set(hosts))
        .with("dns_host", Value::Set(dns)))
}

/// The MACs of static leases on `network` that belong to `hsw_vm` interfaces (recorded in their metadata).
async fn vm_reservations(backend: &Backend, network: &str) -> Result<HashSet<String>, Diagnostics> {
    let mut out = HashSet::new();
    for name in backend.libvirt.domain_list().await? {
        if let Some(d) = backend.libvirt.domain_lookup(&Key::Name(name)).await? {
            out.extend(super::vm::reserved_macs(&d.xml, network));
        }
    }
    Ok(out)
}

fn same_network(a: &NetworkSpec, b: &NetworkSpec) -> bool {
    let norm = |s: &NetworkSpec| {
        let mut s = s.clone();
        s.uuid = None;
        s.creator = None;
        s.dhcp_hosts.sort();
        s.dns_hosts.sort();
        s
    };
    let (mut a, b) = (norm(a), norm(b));
    if a.bridge.is_none() {
        a.bridge.clone_from(&b.bridge);
    }
    a == b
}

#[async_trait]
impl Resource for NetworkResource {
    fn type_name(&self) -> &str {
        "hsw_network"
    }

    fn schema(&self) -> Schema {
        schema()
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        check(config)
    }

    fn plan(&self, req: &PlanRequest<'_>) -> Result<PlanOutcome, Diagnostics> {
        Ok(plan_with(req, |proposed, config| {
            default_attr(proposed, config, "mode", "isolated");
            default_attr(proposed, config, "autostart", false);
            if let Some(Ok(net)) = config.get("subnet").as_str().map(parse_subnet) {
                default_attr(proposed, config, "gateway", first_usable(net).to_string());
            }
        }))
    }

    async fn create(&self, ctx: &Context, planned: &Value) -> Result<Value, Diagnostics> {
        let c = configured(&self.shared)?;
        let lv = &c.backend.libvirt;
        let mut spec = spec_from(planned)?;
        let p = problems("Invalid network", &AttrPath::root(), spec.check());
        if p.has_errors() {
            return Err(p);
        }
        let autostart = planned.get("autostart").as_bool().unwrap_or(false);
        // Held until the network is started: another apply creating this name waits, and a network found
        // inactive with hsw's creator id now was left by a create that died (a live one would hold the lock).
        let _lock = lock_name(ctx, c, "network", &spec.name).await?;
        let info = match lv.network_lookup(&Key::Name(spec.name.clone())).await? {
            Some(existing) => {
                let left = NetworkSpec::from_xml(&existing.xml)
                    .ok()
                    .filter(|s| s.creator.is_some() && !existing.active && same_network(&spec, s));
                if left.is_none() {
                    return Err(Diagnostics::error_at(
                        AttrPath::attr("name"),
                        "Network already exists",
                        format!(
                            "A libvirt network named {} already exists (UUID {}), and it is not one an interrupted hsw \
                             apply left behind (those are inactive, identical, and marked in hsw's metadata). Import it \
                             with `terraform import <address> {}`, remove it (virsh net-destroy / net-undefine), or \
                             choose another name.",
                            spec.name, existing.uuid, spec.name
                        ),
                    ));
                }
                tracing::info!(network = %spec.name, "adopting a network left inactive by an interrupted apply");
                existing
            }
            None => {
                spec.creator = Some(uuid::Uuid::new_v4().to_string());
                lv.network_define(&spec.to_xml()).await.map_err(|e| {
                    Diagnostics::error(
                        "Cannot define the network",
                        format!("libvirt refused network {}: {}. Check the name and bridge are not used by another network.", spec.name, e.message),
                    )
                })?
            }
        };
        if !info.active {
            if let Err(e) = lv.network_start(&spec.name).await {
                // Only an hsw network reaches here: one this create defined, or a dead create's leftover.
                let _ = lv.network_undefine(&spec.name).await;
                return Err(Diagnostics::error(
                    "Cannot start the network",
                    format!(
                        "libvirt could not start network {}: {}. The definition was removed. Check that the bridge \
                         name and subnet are not used by another interface on the host.",
                        spec.name, e.message
                    ),
                ));
            }
        }
        if info.autostart != autostart {
            lv.network_set_autostart(&spec.name, autostart).await?;
        }
        self.read_by(&Key::Name(spec.name)).await?.ok_or_else(|| {
            Diagnostics::error(
                "Network vanished",
                "The network was created but is gone: something else removed it.",
            )
        })
    }

    async fn update(
        &self,
        _ctx: &Context,
        prior: &Value,
        planned: &Value,
    ) -> Result<Value, Diagnostics> {
        let backend = &configured(&self.shared)?.backend;
        let lv = &backend.libvirt;
        let name = req_str(planned, "name", &AttrPath::root())?;
        let at_hosts = |m: String| {
            Diagnostics::error_at(AttrPath::attr("dhcp_host"), "Invalid static lease", m)
        };
        let at_dns =
            |m: String| Diagnostics::error_at(AttrPath::attr("dns_host"), "Invalid DNS entry", m);
        let (old_h, new_h) = (
            dhcp_hosts(prior).map_err(at_hosts)?,
            dhcp_hosts(planned).map_err(at_hosts)?,
        );
        let (old_d, new_d) = (
            dns_hosts(prior).map_err(at_dns)?,
            dns_hosts(planned).map_err(at_dns)?,
        );
        let failed = |what: &str, e: crate::backend::libvirt::LibvirtError| {
            Diagnostics::error(
                "Cannot update the network",
                format!("libvirt could not {what} in network {name}: {}. Run terraform apply again after fixing the conflict.", e.message),
            )
        };
        for h in old_h.iter().filter(|h| !new_h.contains(h)) {
            lv.network_update(
                &name,
                UpdateCommand::Delete,
                NetworkSection::DhcpHost,
                &h.to_xml(),
            )
            .await
            .map_err(|e| failed(&format!("remove the static lease of {}", h.mac), e))?;
        }
        for h in new_h.iter().filter(|h| !old_h.contains(h)) {
            lv.network_update(
                &name,
                UpdateCommand::Add,
                NetworkSection::DhcpHost,
                &h.to_xml(),
            )
            .await
            .map_err(|e| failed(&format!("add the static lease of {}", h.mac), e))?;
        }
        for h in old_d.iter().filter(|h| !new_d.contains(h)) {
            lv.network_update(
                &name,
                UpdateCommand::Delete,
                NetworkSection::DnsHost,
                &h.to_xml(),
            )
            .await
            .map_err(|e| failed(&format!("remove the DNS entry of {}", h.ip), e))?;
        }
        for h in new_d.iter().filter(|h| !old_d.contains(h)) {
            lv.network_update(
                &name,
                UpdateCommand::Add,
                NetworkSection::DnsHost,
                &h.to_xml(),
            )
            .await
            .map_err(|e| failed(&format!("add the DNS entry of {}", h.ip), e))?;
        }
        let autostart = planned.get("autostart").as_bool().unwrap_or(false);
        if prior.get("autostart").as_bool() != Some(autostart) {
            lv.network_set_autostart(&name, autostart).await?;
        }
        let key = Key::Uuid(req_str(prior, "id", &AttrPath::root())?);
        self.read_by(&key).await?.ok_or_else(|| {
            Diagnostics::error(
                "Network vanished",
                format!("Network {name} disappeared during the update: something else removed it."),
            )
        })
    }

    async fn delete(&self, _ctx: &Context, state: &Value) -> Result<(), Diagnostics> {
        let lv = &configured(&self.shared)?.backend.libvirt;
        let key = Key::Uuid(req_str(state, "id", &AttrPath::root())?);
        let Some(info) = lv.network_lookup(&key).await? else {
            return Ok(());
        };
        if info.active {
            lv.network_stop(&info.name).await?;
        }
        lv.network_undefine(&info.name).await.map_err(lv_err(
            "Cannot remove the network",
            format!("libvirt could not undefine network {}", info.name),
        ))?;
        Ok(())
    }

    async fn read(&self, _ctx: &Context, state: &Value) -> Result<Option<Value>, Diagnostics> {
        self.read_by(&state_key(state)?).await
    }

    async fn import(&self, _ctx: &Context, id: &str) -> Result<Vec<Value>, Diagnostics> {
        imported(NETWORK, id, self.read_by(&Key::parse(id)).await?)
    }
}

impl NetworkResource {
    async fn read_by(&self, key: &Key) -> Result<Option<Value>, Diagnostics> {
        let backend = &configured(&self.shared)?.backend;
        let Some(info) = backend.libvirt.network_lookup(key).await? else {
            return Ok(None);
        };
        let macs = vm_reservations(backend, &info.name).await?;
        state_from(&info, &macs).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_well_formed() {
        schema().check().unwrap();
    }

    #[test]
    fn validation_names_paths() {
        let cfg = schema()
            .block
            .null_object()
            .with("name", "lab</name><x>")
            .with("subnet", "10.0.0.1/24")
            .with("bridge", "br;rm -rf");
        let d = check(&cfg);
        let paths: Vec<String> = d
            .iter()
            .filter_map(|d| d.path.as_ref().map(ToString::to_string))
            .collect();
        assert_eq!(paths, ["name", "bridge", "subnet"], "{d}");
    }
}
