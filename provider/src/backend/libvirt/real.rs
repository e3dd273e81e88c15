//! [`Libvirt`] over the `virt` crate (libvirt's C library). One connection, opened once and kept for the
//! provider's lifetime (so that `test:///default`, which keeps its objects only in the connection, works).
//! Every call runs on tokio's blocking pool.

use std::sync::Arc;

use async_trait::async_trait;
use virt::connect::Connect;
use virt::domain::{Domain, DomainState as VirtState};
use virt::error::{Error as VirtError, ErrorNumber};
use virt::network::Network;
use virt::sys;

use super::{
    version_string, AddressSource, DhcpLease, DomainInfo, DomainState, ErrorKind, GuestAddress,
    HostInfo, Key, Libvirt, LibvirtError, NetworkInfo, NetworkSection, UpdateCommand,
};

/// A libvirt connection.
#[derive(Clone)]
pub struct VirtLibvirt {
    conn: Arc<Connect>,
    uri: String,
}

impl std::fmt::Debug for VirtLibvirt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtLibvirt")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

fn kind_of(e: &VirtError) -> ErrorKind {
    match e.code() {
        virt::enumutil::Enum::Known(code) => match code {
            ErrorNumber::NoDomain | ErrorNumber::NoNetwork => ErrorKind::NotFound,
            ErrorNumber::DomExist | ErrorNumber::NetworkExist => ErrorKind::Conflict,
            ErrorNumber::OperationInvalid => ErrorKind::InvalidState,
            ErrorNumber::XmlError
            | ErrorNumber::XmlDetail
            | ErrorNumber::InvalidArg
            | ErrorNumber::ConfigUnsupported => ErrorKind::Invalid,
            ErrorNumber::NoSupport => ErrorKind::Unsupported,
            ErrorNumber::NoConnect
            | ErrorNumber::InvalidConn
            | ErrorNumber::AuthFailed
            | ErrorNumber::Rpc => ErrorKind::Connection,
            // libvirt reports "already exists with uuid" and "bridge name in use" as operation failures.
            ErrorNumber::OperationFailed
                if e.message().contains("already exists") || e.message().contains("in use") =>
            {
                ErrorKind::Conflict
            }
            // Some drivers (the test driver) report state errors with other codes.
            _ if [
                "already active",
                "already running",
                "not running",
                "not active",
            ]
            .iter()
            .any(|m| e.message().contains(m)) =>
            {
                ErrorKind::InvalidState
            }
            _ => ErrorKind::Other,
        },
        virt::enumutil::Enum::Unknown(_) => ErrorKind::Other,
    }
}

fn err(e: VirtError) -> LibvirtError {
    LibvirtError::new(kind_of(&e), e.message().to_owned())
}

fn join_err(e: tokio::task::JoinError) -> LibvirtError {
    LibvirtError::new(
        ErrorKind::Other,
        format!("A libvirt call did not finish: {e}."),
    )
}

impl VirtLibvirt {
    /// Opens a connection to `uri` (blocking: call it from a blocking context or through [`VirtLibvirt::open`]).
    pub fn open_blocking(uri: &str) -> Result<VirtLibvirt, LibvirtError> {
        // libvirt's default error handler prints every error to stderr, which Terraform reads as log lines.
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(uri)).map_err(|e| {
            LibvirtError::new(
                ErrorKind::Connection,
                format!(
                    "Cannot connect to libvirt at {uri}: {}. Check that libvirtd runs and that its socket is \
                     reachable (for a sandbox, pass its socket: qemu+unix:///system?socket=/path/to/libvirt-sock).",
                    e.message()
                ),
            )
        })?;
        Ok(VirtLibvirt {
            conn: Arc::new(conn),
            uri: uri.to_owned(),
        })
    }

    /// Opens a connection to `uri` on the blocking pool.
    pub async fn open(uri: &str) -> Result<VirtLibvirt, LibvirtError> {
        let uri = uri.to_owned();
        tokio::task::spawn_blocking(move || VirtLibvirt::open_blocking(&uri))
            .await
            .map_err(join_err)?
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connect) -> Result<T, LibvirtError> + Send + 'static,
    ) -> Result<T, LibvirtError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&conn))
            .await
            .map_err(join_err)?
    }
}

fn network_by_name(c: &Connect, name: &str) -> Result<Network, LibvirtError> {
    c.lookup_network_by_name(name).map_err(err)
}

fn domain_by_name(c: &Connect, name: &str) -> Result<Domain, LibvirtError> {
    c.lookup_domain_by_name(name).map_err(err)
}

fn network_info(n: &Network) -> Result<NetworkInfo, LibvirtError> {
    Ok(NetworkInfo {
        name: n.name().map_err(err)?,
        uuid: n.uuid_string().map_err(err)?,
        active: n.is_active().map_err(err)?,
        autostart: n.autostart().map_err(err)?,
        // The persistent definition; drivers that cannot tell it apart (the test driver) give the only one.
        xml: n
            .xml_desc(sys::VIR_NETWORK_XML_INACTIVE)
            .or_else(|_| n.xml_desc(0))
            .map_err(err)?,
    })
}

fn domain_info(d: &Domain) -> Result<DomainInfo, LibvirtError> {
    // Four round trips to libvirtd (name and UUID are kept in the handle): this runs for every hsw_vm on every
    // refresh, so `virDomainIsActive` is asked only when the state does not already say.
    let (state, _) = d.state().map_err(err)?;
    let (state, active) = match state {
        virt::enumutil::Enum::Known(
            VirtState::Running | VirtState::Blocked | VirtState::Paused,
        ) => (DomainState::Running, Some(true)),
        virt::enumutil::Enum::Known(VirtState::Shutdown) => (DomainState::ShuttingDown, Some(true)),
        virt::enumutil::Enum::Known(VirtState::Shutoff) => (DomainState::ShutOff, Some(false)),
        // A crashed domain may still have its process (on_crash = preserve).
        virt::enumutil::Enum::Known(VirtState::Crashed) => (DomainState::Crashed, None),
        _ => (DomainState::Other, None),
    };
    let active = match active {
        Some(a) => a,
        None => d.is_active().map_err(err)?,
    };
    Ok(DomainInfo {
        name: d.name().map_err(err)?,
        uuid: d.uuid_string().map_err(err)?,
        state,
        active,
        autostart: d.autostart().map_err(err)?,
        xml: d
            .xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
            .or_else(|_| d.xml_desc(0))
            .map_err(err)?,
    })
}

/// `virNetworkGetDHCPLeases` for one MAC, IPv4 leases only (the `virt` crate does not wrap this call).
#[allow(unsafe_code)]
fn dhcp_leases(n: &Network, mac: &str) -> Result<Vec<DhcpLease>, LibvirtError> {
    use std::ffi::{c_char, c_int, CStr, CString};
    let mac_c = CString::new(mac)
        .map_err(|_| LibvirtError::new(ErrorKind::Invalid, format!("invalid MAC {mac:?}")))?;
    let text = |p: *const c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null string field of a lease libvirt returned, NUL-terminated, read before it is freed.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    let mut leases: *mut sys::virNetworkDHCPLeasePtr = std::ptr::null_mut();
    // SAFETY: `n` holds a reference on a live network object for the whole call; `mac_c` is NUL-terminated and
    // outlives it. On success libvirt stores in `leases` an array it allocated and returns its length; on failure
    // it returns -1 and allocates nothing.
    let count = unsafe { sys::virNetworkGetDHCPLeases(n.as_ptr(), mac_c.as_ptr(), &mut leases, 0) };
    if count < 0 {
        return Err(err(VirtError::last_error()));
    }
    let mut out = Vec::new();
    for i in 0..usize::try_from(count).unwrap_or(0) {
        // SAFETY: `i` is below the array's length; each element is a lease owned by us, read, then freed once.
        unsafe {
            let l = *leases.add(i);
            if l.is_null() {
                continue;
            }
            if (*l).type_ == sys::VIR_IP_ADDR_TYPE_IPV4 as c_int {
                out.push(DhcpLease {
                    mac: text((*l).mac).to_ascii_lowercase(),
                    ip: text((*l).ipaddr),
                    expiry: (*l).expirytime,
                });
            }
            sys::virNetworkDHCPLeaseFree(l);
        }
    }
    if !leases.is_null() {
        // SAFETY: the array was allocated by libvirt with malloc; its elements were freed above.
        unsafe { libc::free(leases.cast()) };
    }
    Ok(out)
}

fn not_found_is_none<T>(r: Result<T, VirtError>) -> Result<Option<T>, LibvirtError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if kind_of(&e) == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(e)),
    }
}

/// Whether the capabilities XML offers KVM for the host architecture and the host CPU has vmx or svm.
pub fn kvm_usable_from_capabilities(caps: &str) -> bool {
    let Ok(doc) = roxmltree::Document::parse(caps) else {
        return false;
    };
    let root = doc.root_element();
    let host_cpu = root
        .children()
        .find(|n| n.has_tag_name("host"))
        .and_then(|h| h.children().find(|n| n.has_tag_name("cpu")));
    let host_arch = host_cpu
        .and_then(|c| c.children().find(|n| n.has_tag_name("arch")))
        .and_then(|a| a.text())
        .unwrap_or_default()
        .trim()
        .to_owned();
    let hw_virt = host_cpu.is_some_and(|c| {
        c.descendants().any(|n| {
            n.has_tag_name("feature") && matches!(n.attribute("name"), Some("vmx" | "svm"))
                || (n.has_tag_name("vmx") || n.has_tag_name("svm"))
        })
    });
    let kvm_offered = root
        .children()
        .filter(|n| n.has_tag_name("guest"))
        .any(|g| {
            g.children().filter(|n| n.has_tag_name("arch")).any(|a| {
                a.attribute("name") == Some(host_arch.as_str())
                    && a.children()
                        .any(|d| d.has_tag_name("domain") && d.attribute("type") == Some("kvm"))
            })
        });
    kvm_offered && hw_virt
}

#[async_trait]
impl Libvirt for VirtLibvirt {
    async fn host_info(&self) -> Result<HostInfo, LibvirtError> {
        self.run(|c| {
            let node = c.node_info().map_err(err)?;
            let caps = c.capabilities().map_err(err)?;
            Ok(HostInfo {
                libvirt_version: version_string(c.lib_version().map_err(err)?),
                hypervisor_version: c.hyp_version().map(version_string).unwrap_or_default(),
                driver: c.driver_type().map_err(err)?,
                cpus: node.cpus,
                memory_mib: node.memory / 1024,
                kvm_usable: kvm_usable_from_capabilities(&caps),
            })
        })
        .await
    }

    async fn network_define(&self, xml: &str) -> Result<NetworkInfo, LibvirtError> {
        let xml = xml.to_owned();
        self.run(move |c| network_info(&c.define_network_xml(&xml).map_err(err)?))
            .await
    }

    async fn network_lookup(&self, key: &Key) -> Result<Option<NetworkInfo>, LibvirtError> {
        let key = key.clone();
        self.run(move |c| {
            let n = match &key {
                Key::Name(n) => not_found_is_none(c.lookup_network_by_name(n))?,
                Key::Uuid(u) => not_found_is_none(c.lookup_network_by_uuid_string(u))?,
            };
            n.as_ref().map(network_info).transpose()
        })
        .await
    }

    async fn network_start(&self, name: &str) -> Result<(), LibvirtError> {
        let name = name.to_owned();
        self.run(move |c| network_by_name(c, &name)?.create().map_err(err))
            .await
    }

    async fn network_stop(&self, name: &str) -> Result<(), LibvirtError> {
        let name = name.to_owned();
        self.run(move |c| network_by_name(c, &name)?.destroy().map_err(err))
            .await
    }

    async fn network_undefine(&self, name: &str) -> Result<(), LibvirtError> {
        let name = name.to_owned();
        self.run(move |c| {
            let n = network_by_name(c, &name)?;
            if n.is_active().map_err(err)? {
                return Err(LibvirtError::new(
                    ErrorKind::InvalidState,
                    format!(
                        "network '{name}' is still active: stop it before removing its definition"
                    ),
                ));
            }
            n.undefine().map_err(err)
        })
        .await
    }

    async fn network_set_autostart(&self, name: &str, autostart: bool) -> Result<(), LibvirtError> {
        let name = name.to_owned();
        self.run(move |c| {
            network_by_name(c, &name)?
                .set_autostart(autostart)
                .map_err(err)
        })
        .await
    }

    async fn network_leases(&self, name: &str, mac: &str) -> Result<Vec<DhcpLease>, LibvirtError> {
        let (name, mac) = (name.to_owned(), mac.to_ascii_lowercase());
        self.run(move |c| dhcp_leases(&network_by_name(c, &name)?, &mac))
            .await
    }

    async fn network_update(
        &self,
        name: &str,
        command: UpdateCommand,
        section: NetworkSection,
        xml: &str,
    ) -> Result<(), LibvirtError> {
        let (name, xml) = (name.to_owned(), xml.to_owned());
        self.run(move |c| {
            let n = network_by_name(c, &name)?;
            let mut flags = sys::VIR_NETWORK_UPDATE_AFFECT_CONFIG;
            if n.is_active().map_err(err)? {
                flags |= sys::VIR_NETWORK_UPDATE_AFFECT_LIVE;
            }
            let cmd = match command {
                UpdateCommand::Add => sys::VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
                UpdateCommand::Delete => sys::VIR_NETWORK_UPDATE_COMMAND_DELETE,
            };
            let sec = match section {
                NetworkSection::DhcpHost => sys::VIR_NETWORK_SECTION_IP_DHCP_HOST,
                NetworkSection::DnsHost => sys::VIR_NETWORK_SECTION_DNS_HOST,
            };
            n.update(cmd, sec, -1, &xml, flags).map_err(err)
        })
        .await
    }

    async fn domain_define(&self, xml: &str) -> Result<DomainInfo, LibvirtError> {
        let xml = xml.to_owned();
        self.run(move |c| domain_info(&c.define_domain_xml(&xml).map_err(err)?))
            .await
    }

    async fn domain_lookup(&self, key: &Key) -> Result<Option<DomainInfo>, LibvirtError> {
        let key = key.clone();
        self.run(move |c| {
            let d = match &key {
                Key::Name(n) => not_found_is_none(c.lookup_domain_by_name(n))?,
                Key::Uuid(u) => not_found_is_none(c.lookup_domain_by_uuid_string(u))?,
            };
            d.as_ref().map(domain_info).transpose()
        })
        .await
    }

    async fn domain_list(&self) -> Result<Vec<String>, LibvirtError> {
        self.run(|c| {
            let all = c
                .list_all_domains(
                    sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE | sys::VIR_CONNECT_LIST_DOMAINS_INACTIVE,
                )
                .map_err(err)?;
            all.iter().map(|d| d.name().map_err(err)).collect()
        })
        .await
    }

    async fn domain_start(&self, name: &str) -> Result<(), LibvirtError> {
        let name = name.to_owned();
        self.run(move |c| domain_by_name(c, &name)?.create().map_err(err))
            .await
    }

    async fn domain_shutdown(&self, name: &str) -> Result<(), LibvirtError> {
        let name = name.to_owned();
        self.run(move |c| domain_by_name(c, &name)?.shutdown().map_err(err))
            .await
    }

    async fn domain_destroy(&self, name: &str) -> Result<(), LibvirtError> {
        let name = name.to_owned();
        self.run(move |c| domain_by_name(c, &name)?.destroy().map_err(err))
            .await
    }

    async fn domain_undefine(&self, name: &str) -> Result<(), LibvirtError> {
        let name = name.to_owned();
        self.run(move |c| {
            let d = domain_by_name(c, &name)?;
            if d.is_active().map_err(err)? {
                return Err(LibvirtError::new(
                    ErrorKind::InvalidState,
                    format!("domain '{name}' is still running: power it off before removing its definition"),
                ));
            }
            d.undefine().map_err(err)
        })
        .await
    }

    async fn domain_set_autostart(&self, name: &str, autostart: bool) -> Result<(), LibvirtError> {
        let name = name.to_owned();
        self.run(move |c| {
            domain_by_name(c, &name)?
                .set_autostart(autostart)
                .map_err(err)
        })
        .await
    }

    async fn domain_set_metadata(
        &self,
        name: &str,
        key: &str,
        uri: &str,
        xml: Option<&str>,
    ) -> Result<(), LibvirtError> {
        let (name, key, uri, xml) = (
            name.to_owned(),
            key.to_owned(),
            uri.to_owned(),
            xml.map(str::to_owned),
        );
        self.run(move |c| {
            let d = domain_by_name(c, &name)?;
            let mut flags = sys::VIR_DOMAIN_AFFECT_CONFIG;
            if d.is_active().map_err(err)? {
                flags |= sys::VIR_DOMAIN_AFFECT_LIVE;
            }
            let kind = i32::try_from(sys::VIR_DOMAIN_METADATA_ELEMENT).unwrap_or(2);
            d.set_metadata(kind, xml.as_deref(), Some(&key), Some(&uri), flags)
                .map_err(err)
        })
        .await
    }

    async fn domain_addresses(
        &self,
        name: &str,
        source: AddressSource,
    ) -> Result<Vec<GuestAddress>, LibvirtError> {
        let name = name.to_owned();
        self.run(move |c| {
            let d = domain_by_name(c, &name)?;
            if !d.is_active().map_err(err)? {
                return Ok(Vec::new());
            }
            let src = match source {
                AddressSource::Lease => sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
                AddressSource::Arp => sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP,
            };
            let ifaces = d.interface_addresses(src, 0).map_err(err)?;
            let mut out = Vec::new();
            for i in ifaces {
                let Some(mac) = i.hwaddr else { continue };
                for a in i.addrs {
                    // typed 0 is VIR_IP_ADDR_TYPE_IPV4.
                    if a.typed == 0 {
                        out.push(GuestAddress {
                            mac: mac.to_ascii_lowercase(),
                            ip: a.addr,
                        });
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}
