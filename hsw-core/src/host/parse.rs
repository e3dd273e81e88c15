//! Pure parsers of host files, and the byte-preserving edits `prepare` makes. No IO.
//!
//! Every parser takes any text without panicking: lines it does not understand are skipped.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// What `/proc/cpuinfo` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuInfo {
    /// Number of `processor` entries (logical CPUs).
    pub logical_cpus: usize,
    /// `vendor_id` of the first processor (`GenuineIntel`, `AuthenticAMD`).
    pub vendor: Option<String>,
    /// `model name` of the first processor.
    pub model: Option<String>,
    /// Intel VT-x flag present.
    pub vmx: bool,
    /// AMD-V flag present.
    pub svm: bool,
    /// The `hypervisor` flag: this host is itself a VM.
    pub hypervisor: bool,
}

/// Parses `/proc/cpuinfo`.
pub fn cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "processor" => info.logical_cpus += 1,
            "vendor_id" if info.vendor.is_none() => info.vendor = Some(value.to_owned()),
            "model name" if info.model.is_none() => info.model = Some(value.to_owned()),
            "flags" => {
                for flag in value.split_whitespace() {
                    match flag {
                        "vmx" => info.vmx = true,
                        "svm" => info.svm = true,
                        "hypervisor" => info.hypervisor = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    info
}

/// `MemTotal` and `MemAvailable` from `/proc/meminfo`, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total_kib: Option<u64>,
    /// `MemAvailable` (kernels since 3.14).
    pub available_kib: Option<u64>,
}

/// Parses `/proc/meminfo`.
pub fn meminfo(text: &str) -> MemInfo {
    let mut m = MemInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let kib = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok());
        match key.trim() {
            "MemTotal" => m.total_kib = kib,
            "MemAvailable" => m.available_kib = kib,
            _ => {}
        }
    }
    m
}

/// Whether `/proc/modules` lists `module`.
pub fn module_loaded(modules: &str, module: &str) -> bool {
    modules
        .lines()
        .any(|l| l.split_whitespace().next() == Some(module))
}

/// Kernel parameters of `/proc/cmdline` (what follows `--` belongs to init and is dropped).
pub fn cmdline(text: &str) -> Vec<String> {
    text.split_whitespace()
        .take_while(|t| *t != "--")
        .map(str::to_owned)
        .collect()
}

/// Whether a modprobe.d file blacklists `module` (`blacklist nouveau`; comments ignored).
pub fn modprobe_blacklists(text: &str, module: &str) -> bool {
    text.lines().any(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        words.next() == Some("blacklist") && words.next() == Some(module)
    })
}

/// One entry of `/proc/net/route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Interface the route goes out of.
    pub iface: String,
    /// Destination network.
    pub net: Ipv4Net,
}

/// Parses `/proc/net/route` (addresses are hex in host byte order, little-endian on x86).
/// Non-contiguous masks and malformed lines are skipped.
pub fn routes(text: &str) -> Vec<Route> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(iface), Some(dest), Some(mask)) = (f.first(), f.get(1), f.get(7)) else {
            continue;
        };
        let (Ok(dest), Ok(mask)) = (u32::from_str_radix(dest, 16), u32::from_str_radix(mask, 16))
        else {
            continue;
        };
        let dest = Ipv4Addr::from(dest.to_le_bytes());
        let mask = u32::from(Ipv4Addr::from(mask.to_le_bytes()));
        let len = mask.leading_ones();
        if mask.checked_shl(len).unwrap_or(0) != 0 {
            continue;
        }
        if let Ok(net) = Ipv4Net::new(dest, len as u8) {
            out.push(Route {
                iface: (*iface).to_owned(),
                net: net.trunc(),
            });
        }
    }
    out
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Numeric gid (`None` when the field is not a number).
    pub gid: Option<u32>,
    /// Supplementary members.
    pub members: Vec<String>,
}

/// Parses `/etc/group`.
pub fn groups(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let name = f.first().filter(|n| !n.is_empty() && !n.starts_with('#'))?;
            Some(GroupEntry {
                name: (*name).to_owned(),
                gid: f.get(2).and_then(|g| g.trim().parse().ok()),
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
}

/// Parses `/etc/passwd` (lines with non-numeric ids are skipped).
pub fn passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(PasswdEntry {
                name: (*f.first().filter(|n| !n.is_empty())?).to_owned(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// One installed (or once-installed) package of the dpkg database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpkgPackage {
    /// `Version`.
    pub version: String,
    /// `Status` is `install ok installed`.
    pub installed: bool,
}

/// Parses `/var/lib/dpkg/status`: package name → its entry (an installed architecture wins).
pub fn dpkg_status(text: &str) -> BTreeMap<String, DpkgPackage> {
    let mut out: BTreeMap<String, DpkgPackage> = BTreeMap::new();
    for para in text.split("\n\n") {
        let (mut name, mut version, mut status) = (None, String::new(), "");
        for line in para.lines() {
            if let Some(v) = line.strip_prefix("Package:") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version:") {
                version = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("Status:") {
                status = v.trim();
            }
        }
        let Some(name) = name else { continue };
        let installed =
            status.split_whitespace().collect::<Vec<_>>() == ["install", "ok", "installed"];
        let entry = DpkgPackage { version, installed };
        match out.get(name) {
            Some(existing) if existing.installed && !installed => {}
            _ => {
                out.insert(name.to_owned(), entry);
            }
        }
    }
    out
}

/// Adds `user` to the member list of `group` in an `/etc/group` or `/etc/gshadow` text (member
/// list = last field), changing nothing else. `Ok(None)` when already a member; `Err` when the
/// group has no line.
pub fn add_group_member(text: &str, group: &str, user: &str) -> Result<Option<String>, String> {
    let mut out = String::with_capacity(text.len() + user.len() + 1);
    let mut found = false;
    let mut changed = false;
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if !found && body.split(':').next() == Some(group) && body.contains(':') {
            found = true;
            if body.split(':').count() < 4 {
                return Err(format!(
                    "the `{group}` line has fewer than 4 fields: `{body}`"
                ));
            }
            let members = body.rsplit(':').next().unwrap_or_default();
            if members.split(',').map(str::trim).any(|m| m == user) {
                out.push_str(line);
                continue;
            }
            out.push_str(body);
            if !members.trim().is_empty() {
                out.push(',');
            }
            out.push_str(user);
            out.push_str(nl);
            changed = true;
        } else {
            out.push_str(line);
        }
    }
    match (found, changed) {
        (false, _) => Err(format!("there is no `{group}` group")),
        (true, false) => Ok(None),
        (true, true) => Ok(Some(out)),
    }
}

/// The value of `GRUB_CMDLINE_LINUX_DEFAULT` in `/etc/default/grub` (the last assignment wins,
/// as in a shell), without its quotes.
pub fn grub_cmdline_default(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .find_map(|l| grub_assignment(l).map(|(_, v, _)| v.to_owned()))
}

/// Parses `GRUB_CMDLINE_LINUX_DEFAULT="..."`: (prefix up to the value, the value, the rest).
fn grub_assignment(line: &str) -> Option<(&str, &str, &str)> {
    const KEY: &str = "GRUB_CMDLINE_LINUX_DEFAULT=";
    let start = line.find(KEY)?;
    if !line.get(..start)?.trim().is_empty() {
        return None;
    }
    let value_at = start + KEY.len();
    let rest = line.get(value_at..)?;
    match rest.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let close = rest.get(1..)?.find(q)? + 1;
            Some((
                line.get(..value_at + 1)?,
                rest.get(1..close)?,
                rest.get(close..)?,
            ))
        }
        _ => {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '#')
                .unwrap_or(rest.len());
            Some((line.get(..value_at)?, rest.get(..end)?, rest.get(end..)?))
        }
    }
}

/// Adds the missing `tokens` to the last `GRUB_CMDLINE_LINUX_DEFAULT` assignment (or appends
/// one), changing nothing else. `None` when every token is already there.
pub fn grub_add_tokens(text: &str, tokens: &[&str]) -> Option<String> {
    let current = grub_cmdline_default(text).unwrap_or_default();
    let have: Vec<&str> = current.split_whitespace().collect();
    let missing: Vec<&str> = tokens
        .iter()
        .copied()
        .filter(|t| !have.contains(t))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let last = text
        .split_inclusive('\n')
        .enumerate()
        .filter(|(_, l)| grub_assignment(l).is_some())
        .map(|(i, _)| i)
        .last();
    let Some(last) = last else {
        let mut out = text.to_owned();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!(
            "GRUB_CMDLINE_LINUX_DEFAULT=\"{}\"\n",
            missing.join(" ")
        ));
        return Some(out);
    };
    let mut out = String::with_capacity(text.len() + 40);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        match grub_assignment(line) {
            Some((prefix, value, rest)) if i == last => {
                let quoted = prefix.ends_with('"') || prefix.ends_with('\'');
                out.push_str(prefix);
                if !quoted {
                    out.push('"');
                }
                out.push_str(value);
                if !value.trim().is_empty() {
                    out.push(' ');
                }
                out.push_str(&missing.join(" "));
                if !quoted {
                    out.push('"');
                }
                out.push_str(rest);
            }
            _ => out.push_str(line),
        }
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_counts_and_flags() {
        let t = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vmx hypervisor\n\nprocessor\t: 1\nflags\t: fpu\n";
        let c = cpuinfo(t);
        assert_eq!(c.logical_cpus, 2);
        assert!(c.vmx && c.hypervisor && !c.svm);
        assert_eq!(c.vendor.as_deref(), Some("GenuineIntel"));
        assert_eq!(cpuinfo("garbage\n::\n").logical_cpus, 0);
    }

    #[test]
    fn routes_are_little_endian_hex() {
        let t =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                 eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                 br0\t0064A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                 bad\tzz\n";
        let r = routes(t);
        assert_eq!(r.len(), 3);
        assert_eq!(r[1].net.to_string(), "192.0.2.0/24");
        assert_eq!(r[2].net.to_string(), "192.168.100.0/24");
        assert_eq!(r[0].net.prefix_len(), 0);
    }

    #[test]
    fn cmdline_stops_at_init_arguments() {
        assert_eq!(
            cmdline("quiet intel_iommu=on -- --init x\n"),
            vec!["quiet", "intel_iommu=on"]
        );
    }

    #[test]
    fn blacklist_ignores_comments() {
        assert!(modprobe_blacklists("# x\nblacklist nouveau\n", "nouveau"));
        assert!(!modprobe_blacklists(
            "# blacklist nouveau\noptions nouveau modeset=0\n",
            "nouveau"
        ));
    }

    #[test]
    fn group_member_edit_preserves_bytes() {
        let t = "root:x:0:\nkvm:x:107:\nlibvirt:x:110:bob\nlast:x:5:";
        let e = add_group_member(t, "kvm", "alice").unwrap().unwrap();
        assert_eq!(
            e,
            "root:x:0:\nkvm:x:107:alice\nlibvirt:x:110:bob\nlast:x:5:"
        );
        let e = add_group_member(&e, "libvirt", "alice").unwrap().unwrap();
        assert_eq!(
            e,
            "root:x:0:\nkvm:x:107:alice\nlibvirt:x:110:bob,alice\nlast:x:5:"
        );
        assert_eq!(add_group_member(&e, "libvirt", "alice").unwrap(), None);
        assert_eq!(
            add_group_member(t, "last", "a").unwrap().unwrap(),
            "root:x:0:\nkvm:x:107:\nlibvirt:x:110:bob\nlast:x:5:a"
        );
        assert!(add_group_member(t, "nope", "a").is_err());
        // gshadow: name:password:admins:members
        assert_eq!(
            add_group_member("kvm:!::\n", "kvm", "a").unwrap().unwrap(),
            "kvm:!::a\n"
        );
    }

    #[test]
    fn grub_tokens_are_added_once() {
        let t =
            "# c\nGRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"\"\n";
        let e = grub_add_tokens(t, &["intel_iommu=on", "iommu=pt"]).unwrap();
        assert_eq!(e, "# c\nGRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=on iommu=pt\"\nGRUB_CMDLINE_LINUX=\"\"\n");
        assert_eq!(grub_add_tokens(&e, &["intel_iommu=on", "iommu=pt"]), None);
        assert_eq!(
            grub_add_tokens("GRUB_CMDLINE_LINUX_DEFAULT=''", &["x"]).unwrap(),
            "GRUB_CMDLINE_LINUX_DEFAULT='x'"
        );
        assert_eq!(
            grub_add_tokens("GRUB_CMDLINE_LINUX_DEFAULT=quiet\n", &["x"]).unwrap(),
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet x\"\n"
        );
        assert_eq!(
            grub_add_tokens("A=1", &["x"]).unwrap(),
            "A=1\nGRUB_CMDLINE_LINUX_DEFAULT=\"x\"\n"
        );
        assert_eq!(
            grub_cmdline_default("GRUB_CMDLINE_LINUX_DEFAULT=\"a b\" # c").as_deref(),
            Some("a b")
        );
    }

    #[test]
    fn dpkg_status_reads_versions() {
        let t = "Package: a\nStatus: install ok installed\nVersion: 1.0\n\nPackage: b\nStatus: deinstall ok config-files\nVersion: 2\n";
        let p = dpkg_status(t);
        assert!(p["a"].installed && p["a"].version == "1.0");
        assert!(!p["b"].installed);
    }

    #[test]
    fn meminfo_and_passwd() {
        let m = meminfo("MemTotal:       24684084 kB\nMemAvailable:   24254268 kB\n");
        assert_eq!(m.available_kib, Some(24254268));
        let p =
            passwd("root:x:0:0::/root:/bin/bash\nbad\nalice:x:1000:1000::/home/alice:/bin/sh\n");
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].uid, 1000);
    }
}
