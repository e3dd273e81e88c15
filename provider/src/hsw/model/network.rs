//! The network model: what `hsw_network` asks libvirt for, its checks, its XML, and reading it back.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::xml::{read, XmlWriter};
use crate::hsw::validate;

/// How the network reaches the outside (libvirt's `<forward mode=...>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// No `<forward>`: guests reach each other and the host only.
    Isolated,
    /// NAT to the host's default route.
    Nat,
    /// Routed, no NAT.
    Route,
    /// Routed, and libvirt adds no firewall rules.
    Open,
}

impl NetMode {
    /// Every mode, as written in configuration.
    pub const ALL: [&'static str; 4] = ["isolated", "nat", "route", "open"];

    /// Reads a mode as written in configuration.
    pub fn parse(s: &str) -> Option<NetMode> {
        Some(match s {
            "isolated" => NetMode::Isolated,
            "nat" => NetMode::Nat,
            "route" => NetMode::Route,
            "open" => NetMode::Open,
            _ => return None,
        })
    }

    /// The mode as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            NetMode::Isolated => "isolated",
            NetMode::Nat => "nat",
            NetMode::Route => "route",
            NetMode::Open => "open",
        }
    }
}

/// A static DHCP lease.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DhcpHost {
    /// The client's MAC address (lower case).
    pub mac: String,
    /// The address it gets.
    pub ip: Ipv4Addr,
    /// The host name dnsmasq hands out and resolves, if any.
    pub hostname: Option<String>,
}

impl DhcpHost {
    /// The `<host>` element, for the network XML and for `virNetworkUpdate`.
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::new();
        let ip = self.ip.to_string();
        match &self.hostname {
            Some(h) => w.empty("host", &[("mac", &self.mac), ("name", h), ("ip", &ip)]),
            None => w.empty("host", &[("mac", &self.mac), ("ip", &ip)]),
        };
        w.finish().trim_end().to_owned()
    }
}

/// A DNS host entry served by the network's dnsmasq.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DnsHost {
    /// The address.
    pub ip: Ipv4Addr,
    /// Names resolving to it.
    pub hostnames: Vec<String>,
}

impl DnsHost {
    /// The `<host>` element of `<dns>`, for the network XML and for `virNetworkUpdate`.
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::new();
        let ip = self.ip.to_string();
        w.open("host", &[("ip", &ip)]);
        for h in &self.hostnames {
            w.text("hostname", &[], h);
        }
        w.finish().trim_end().to_owned()
    }
}

/// A libvirt network as hsw defines it: one IPv4 subnet on a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    /// The libvirt name.
    pub name: String,
    /// The UUID, when known (redefinition, reading back).
    pub uuid: Option<String>,
    /// The forward mode.
    pub mode: NetMode,
    /// The bridge; libvirt picks `virbrN` when `None`.
    pub bridge: Option<String>,
    /// The subnet (network address and prefix).
    pub subnet: Ipv4Net,
    /// The host's address on the bridge.
    pub gateway: Ipv4Addr,
    /// The dynamic DHCP range, if DHCP is on.
    pub dhcp_range: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Static leases.
    pub dhcp_hosts: Vec<DhcpHost>,
    /// The DNS domain of the guests.
    pub dns_domain: Option<String>,
    /// Extra DNS names.
    pub dns_hosts: Vec<DnsHost>,
    /// The bridge MTU.
    pub mtu: Option<u32>,
    /// The id of the hsw create that defined the network, kept in hsw's metadata ([`NETWORK_METADATA_NS`]);
    /// `None` for a network hsw did not create (or that a version before creator ids made).
    pub creator: Option<String>,
}

/// The XML namespace of hsw's network metadata (`{"creator": "<id>"}`).
pub const NETWORK_METADATA_NS: &str = "https://hyperscaler.github.io/hsw/xmlns/network/1";

/// One problem found by [`NetworkSpec::check`]: the attribute (as in the resource schema) and a sentence.
pub type Problem = (String, String);

/// The first usable address of a subnet (the default gateway).
pub fn first_usable(subnet: Ipv4Net) -> Ipv4Addr {
    let n = u32::from(subnet.network());
    Ipv4Addr::from(n.saturating_add(1))
}

/// Reads a subnet in CIDR form; it must be the network address (no host bits) with a prefix from 8 to 30.
pub fn parse_subnet(s: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = s.parse().map_err(|_| {
        format!(
            "{} is not an IPv4 subnet in CIDR form such as 10.20.0.0/24.",
            validate::quote(s)
        )
    })?;
    if net.trunc() != net {
        return Err(format!(
            "{} has host bits set: write the network address, {}.",
            validate::quote(s),
            net.trunc()
        ));
    }
    if !(8..=30).contains(&net.prefix_len()) {
        return Err(format!(
            "{} needs a prefix length from 8 to 30.",
            validate::quote(s)
        ));
    }
    Ok(net)
}

impl NetworkSpec {
    /// Checks the spec's values against each other. Names and strings were checked when it was built.
    pub fn check(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let usable = |ip: Ipv4Addr| {
            self.subnet.contains(&ip)
                && ip != self.subnet.network()
                && ip != self.subnet.broadcast()
        };
        if !usable(self.gateway) {
            out.push((
                "gateway".into(),
                format!(
                    "The gateway {} is not a usable address of the subnet {}.",
                    self.gateway, self.subnet
                ),
            ));
        }
        if let Some((start, end)) = self.dhcp_range {
            if !usable(start) || !usable(end) || start > end {
                out.push((
                    "dhcp".into(),
                    format!(
                        "The DHCP range {start} to {end} must lie inside the subnet {} and start before it ends.",
                        self.subnet
                    ),
                ));
            } else if (start..=end).contains(&self.gateway) {
                out.push((
                    "dhcp".into(),
                    format!(
                        "The DHCP range {start} to {end} contains the gateway {}: leave it out.",
                        self.gateway
                    ),
                ));
            }
        }
        let mut macs = std::collections::HashSet::new();
        let mut ips = std::collections::HashSet::new();
        for h in &self.dhcp_hosts {
            if !usable(h.ip) || h.ip == self.gateway {
                out.push((
                    "dhcp_host".into(),
                    format!("The static lease for {} uses {}, which is not a free usable address of {}.", h.mac, h.ip, self.subnet),
                ));
            }
            if !macs.insert(h.mac.clone()) || !ips.insert(h.ip) {
                out.push((
                    "dhcp_host".into(),
                    format!("Two static leases share the MAC {} or the address {}: give each host its own.", h.mac, h.ip),
                ));
            }
        }
        if !self.dhcp_hosts.is_empty() && self.dhcp_range.is_none() {
            out.push((
                "dhcp_host".into(),
                "Static leases need DHCP: add a dhcp block with a range.".into(),
            ));
        }
        if let Some(mtu) = self.mtu {
            if !(68..=65535).contains(&mtu) {
                out.push((
                    "mtu".into(),
                    format!("The MTU {mtu} is outside 68 to 65535."),
                ));
            }
        }
        out
    }

    /// The network XML for `virNetworkDefineXML`.
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::new();
        w.open("network", &[]);
        w.text("name", &[], &self.name);
        if let Some(u) = &self.uuid {
            w.text("uuid", &[], u);
        }
        if let Some(c) = &self.creator {
            w.open("metadata", &[]);
            w.text(
                "hsw:network",
                &[("xmlns:hsw", NETWORK_METADATA_NS)],
                &serde_json::json!({ "creator": c }).to_string(),
            );
            w.close();
        }
        if self.mode != NetMode::Isolated {
            w.empty("forward", &[("mode", self.mode.as_str())]);
        }
        if let Some(b) = &self.bridge {
            w.empty("bridge", &[("name", b), ("stp", "on"), ("delay", "0")]);
        }
        if let Some(mtu) = self.mtu {
            w.empty("mtu", &[("size", &mtu.to_string())]);
        }
        if let Some(d) = &self.dns_domain {
            w.empty("domain", &[("name", d), ("localOnly", "yes")]);
        }
        if !self.dns_hosts.is_empty() {
            w.open("dns", &[]);
            for h in &self.dns_hosts {
                w.open("host", &[("ip", &h.ip.to_string())]);
                for n in &h.hostnames {
                    w.text("hostname", &[], n);
                }
                w.close();
            }
            w.close();
        }
        let prefix = self.subnet.prefix_len().to_string();
        w.open(
            "ip",
            &[("address", &self.gateway.to_string()), ("prefix", &prefix)],
        );
        if let Some((start, end)) = self.dhcp_range {
            w.open("dhcp", &[]);
            w.empty(
                "range",
                &[("start", &start.to_string()), ("end", &end.to_string())],
            );
            for h in &self.dhcp_hosts {
                let ip = h.ip.to_string();
                match &h.hostname {
                    Some(n) => w.empty("host", &[("mac", &h.mac), ("name", n), ("ip", &ip)]),
                    None => w.empty("host", &[("mac", &h.mac), ("ip", &ip)]),
                };
            }
            w.close();
        }
        w.finish()
    }

    /// Reads a network back from libvirt's XML (`virNetworkGetXMLDesc`). Fails, with a sentence, on networks this
    /// provider could not have made (no IPv4 address, another forward mode).
    pub fn from_xml(xml: &str) -> Result<NetworkSpec, String> {
        let doc = roxmltree::Document::parse(xml)
            .map_err(|e| format!("The network XML cannot be read: {e}."))?;
        let root = doc.root_element();
        let name = read::child_text(root, "name").ok_or("The network XML has no name.")?;
        let uuid = read::child_text(root, "uuid");
        let creator = read::metadata_text(root, NETWORK_METADATA_NS, "network")
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|j| j.get("creator")?.as_str().map(str::to_owned));
        let mode = match read::child(root, "forward")
            .and_then(|f| f.attribute("mode").map(str::to_owned))
        {
            None => NetMode::Isolated,
            Some(m) => NetMode::parse(&m).ok_or_else(|| {
                format!(
                    "Network {name} uses forward mode {m:?}, which hsw_network does not manage."
                )
            })?,
        };
        // libvirt writes `<forward/>` without a mode for NAT.
        let mode = if read::child(root, "forward").is_some() && mode == NetMode::Isolated {
            NetMode::Nat
        } else {
            mode
        };
        let bridge = read::child(root, "bridge").and_then(|b| read::attr(b, "name"));
        let mtu = read::child(root, "mtu")
            .and_then(|m| m.attribute("size"))
            .and_then(|s| s.parse().ok());
        let dns_domain = read::child(root, "domain").and_then(|d| read::attr(d, "name"));
        let mut dns_hosts = Vec::new();
        if let Some(dns) = read::child(root, "dns") {
            for h in read::children(dns, "host") {
                let Some(ip) = h.attribute("ip").and_then(|i| i.parse().ok()) else {
                    continue;
                };
                let hostnames = read::children(h, "hostname")
                    .map(|n| n.text().unwrap_or_default().trim().to_owned())
                    .collect();
                dns_hosts.push(DnsHost { ip, hostnames });
            }
        }
        let ip = read::children(root, "ip")
            .find(|i| i.attribute("family").is_none_or(|f| f == "ipv4"))
            .ok_or_else(|| {
                format!("Network {name} has no IPv4 address, so hsw_network cannot manage it.")
            })?;
        let gateway: Ipv4Addr = ip
            .attribute("address")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| {
                format!("Network {name} has an IPv4 element without a valid address.")
            })?;
        let prefix: u8 = match (ip.attribute("prefix"), ip.attribute("netmask")) {
            (Some(p), _) => p
                .parse()
                .map_err(|_| format!("Network {name} has an invalid prefix {p:?}."))?,
            (None, Some(m)) => {
                let m: Ipv4Addr = m
                    .parse()
                    .map_err(|_| format!("Network {name} has an invalid netmask {m:?}."))?;
                u8::try_from(u32::from(m).count_ones()).unwrap_or(32)
            }
            (None, None) => 24,
        };
        let subnet = Ipv4Net::new(gateway, prefix)
            .map_err(|_| format!("Network {name} has an invalid prefix {prefix}."))?
            .trunc();
        let mut dhcp_range = None;
        let mut dhcp_hosts = Vec::new();
        if let Some(dhcp) = read::child(ip, "dhcp") {
            if let Some(r) = read::child(dhcp, "range") {
                let start = r.attribute("start").and_then(|s| s.parse().ok());
                let end = r.attribute("end").and_then(|s| s.parse().ok());
                if let (Some(s), Some(e)) = (start, end) {
                    dhcp_range = Some((s, e));
                }
            }
            for h in read::children(dhcp, "host") {
                let (Some(mac), Some(ip)) = (
                    h.attribute("mac"),
                    h.attribute("ip").and_then(|i| i.parse().ok()),
                ) else {
                    continue;
                };
                dhcp_hosts.push(DhcpHost {
                    mac: mac.to_ascii_lowercase(),
                    ip,
                    hostname: read::attr(h, "name"),
                });
            }
        }
        Ok(NetworkSpec {
            name,
            uuid,
            mode,
            bridge,
            subnet,
            gateway,
            dhcp_range,
            dhcp_hosts,
            dns_domain,
            dns_hosts,
            mtu,
            creator,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> NetworkSpec {
        NetworkSpec {
            name: "lab".into(),
            uuid: None,
            mode: NetMode::Nat,
            bridge: Some("hswbr0".into()),
            subnet: "10.20.0.0/24".parse().unwrap(),
            gateway: "10.20.0.1".parse().unwrap(),
            dhcp_range: Some((
                "10.20.0.100".parse().unwrap(),
                "10.20.0.200".parse().unwrap(),
            )),
            dhcp_hosts: vec![DhcpHost {
                mac: "52:54:00:00:00:01".into(),
                ip: "10.20.0.10".parse().unwrap(),
                hostname: Some("node1".into()),
            }],
            dns_domain: Some("lab.internal".into()),
            dns_hosts: vec![DnsHost {
                ip: "10.20.0.5".parse().unwrap(),
                hostnames: vec!["api".into(), "api.lab.internal".into()],
            }],
            mtu: Some(1500),
            creator: None,
        }
    }

    #[test]
    fn golden_xml() {
        let xml = sample().to_xml();
        assert_eq!(
            xml,
            "<network>
  <name>lab</name>
  <forward mode='nat'/>
  <bridge name='hswbr0' stp='on' delay='0'/>
  <mtu size='1500'/>
  <domain name='lab.internal' localOnly='yes'/>
  <dns>
    <host ip='10.20.0.5'>
      <hostname>api</hostname>
      <hostname>api.lab.internal</hostname>
    </host>
  </dns>
  <ip address='10.20.0.1' prefix='24'>
    <dhcp>
      <range start='10.20.0.100' end='10.20.0.200'/>
      <host mac='52:54:00:00:00:01' name='node1' ip='10.20.0.10'/>
    </dhcp>
  </ip>
</network>
"
        );
        assert_eq!(NetworkSpec::from_xml(&xml).unwrap(), sample());
    }

    #[test]
    fn isolated_without_dhcp_round_trips() {
        let spec = NetworkSpec {
            mode: NetMode::Isolated,
            bridge: None,
            dhcp_range: None,
            dhcp_hosts: vec![],
            dns_domain: None,
            dns_hosts: vec![],
            mtu: None,
            creator: Some("4f1c2a".into()),
            ..sample()
        };
        let xml = spec.to_xml();
        assert!(!xml.contains("forward"));
        assert!(xml.contains("<metadata>"), "{xml}");
        assert_eq!(NetworkSpec::from_xml(&xml).unwrap(), spec);
    }

    #[test]
    fn reads_libvirt_netmask_form() {
        let xml = "<network><name>default</name><uuid>dd8fe884-6c02-601e-7551-cca97df1c5df</uuid>\
                   <forward mode='nat'/><bridge name='virbr0' stp='on' delay='0'/>\
                   <ip address='192.168.122.1' netmask='255.255.255.0'><dhcp>\
                   <range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip></network>";
        let s = NetworkSpec::from_xml(xml).unwrap();
        assert_eq!(s.subnet.to_string(), "192.168.122.0/24");
        assert_eq!(
            s.uuid.as_deref(),
            Some("dd8fe884-6c02-601e-7551-cca97df1c5df")
        );
    }

    #[test]
    fn checks() {
        assert!(sample().check().is_empty());
        let bad = NetworkSpec {
            gateway: "10.20.0.150".parse().unwrap(),
            ..sample()
        };
        assert_eq!(bad.check()[0].0, "dhcp");
        let bad = NetworkSpec {
            gateway: "10.21.0.1".parse().unwrap(),
            ..sample()
        };
        assert_eq!(bad.check()[0].0, "gateway");
        assert!(parse_subnet("10.20.0.1/24").is_err());
        assert!(parse_subnet("10.20.0.0/31").is_err());
        assert_eq!(
            first_usable(parse_subnet("10.20.0.0/24").unwrap()).to_string(),
            "10.20.0.1"
        );
    }

    #[test]
    fn fragments() {
        let h = &sample().dhcp_hosts[0];
        assert_eq!(
            h.to_xml(),
            "<host mac='52:54:00:00:00:01' name='node1' ip='10.20.0.10'/>"
        );
        assert_eq!(
            sample().dns_hosts[0].to_xml(),
            "<host ip='10.20.0.5'>\n  <hostname>api</hostname>\n  <hostname>api.lab.internal</hostname>\n</host>"
        );
    }
}
