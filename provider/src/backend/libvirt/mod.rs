//! The narrow libvirt interface the resources use, its real implementation over the `virt` crate ([`real`]) and
//! an in-memory fake that enforces the same rules ([`fake`]).
//!
//! Objects are addressed by name (both libvirt and the fake keep names unique); lookups also take a UUID. All
//! calls are async: the real implementation runs libvirt's blocking calls on tokio's blocking pool.

pub mod fake;
pub mod real;

use std::fmt;

use async_trait::async_trait;

/// What kind of failure a libvirt call had, for callers that react to it (a missing object on delete is fine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object does not exist.
    NotFound,
    /// Another object has that name, UUID or bridge.
    Conflict,
    /// The object is not in a state that allows the call (start a running domain, undefine an active network).
    InvalidState,
    /// The XML or an argument was refused.
    Invalid,
    /// The driver does not support the call.
    Unsupported,
    /// The connection failed.
    Connection,
    /// Anything else.
    Other,
}

/// A failed libvirt call: its kind and libvirt's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LibvirtError {
    /// The kind of failure.
    pub kind: ErrorKind,
    /// libvirt's message (it names the object).
    pub message: String,
}

impl LibvirtError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> LibvirtError {
        LibvirtError {
            kind,
            message: message.into(),
        }
    }

    /// Whether the object was missing.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
}

/// How to find an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// By name.
    Name(String),
    /// By UUID.
    Uuid(String),
}

impl Key {
    /// A UUID if `id` looks like one, else a name (import IDs may be either).
    pub fn parse(id: &str) -> Key {
        match crate::hsw::validate::uuid(id) {
            Ok(u) => Key::Uuid(u),
            Err(_) => Key::Name(id.to_owned()),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Name(n) => write!(f, "{n:?}"),
            Key::Uuid(u) => write!(f, "with UUID {u}"),
        }
    }
}

/// A network as libvirt reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    /// Its name.
    pub name: String,
    /// Its UUID.
    pub uuid: String,
    /// Whether it is started.
    pub active: bool,
    /// Whether it starts with libvirtd.
    pub autostart: bool,
    /// Its XML (the live one when active).
    pub xml: String,
}

/// A domain's run state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainState {
    /// Running (or blocked, or paused: it has a QEMU process).
    Running,
    /// Being shut down.
    ShuttingDown,
    /// Off.
    ShutOff,
    /// Crashed.
    Crashed,
    /// Anything else libvirt reports.
    Other,
}

/// A domain as libvirt reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    /// Its name.
    pub name: String,
    /// Its UUID.
    pub uuid: String,
    /// Its state.
    pub state: DomainState,
    /// Whether it has a running process (libvirt's "active").
    pub active: bool,
    /// Whether it starts with libvirtd.
    pub autostart: bool,
    /// Its persistent (inactive) XML, the definition hsw wrote.
    pub xml: String,
}

/// Where guest addresses are learnt from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSource {
    /// The network's DHCP leases (dnsmasq).
    Lease,
    /// The host's ARP table.
    Arp,
}

/// An address seen for a guest interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestAddress {
    /// The interface's MAC (lower case).
    pub mac: String,
    /// The IPv4 address.
    pub ip: String,
}

/// A lease in a network's DHCP server (dnsmasq), as `virNetworkGetDHCPLeases` reports it.
///
/// Leases outlive the guest that took them: after a guest restarts, its lease from the previous boot is still
/// listed (and reported by [`AddressSource::Lease`]) until it expires. A guest that asks for an address again
/// renews it, which moves `expiry` forward: that is the evidence that the guest is up in its current boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpLease {
    /// The client's MAC (lower case).
    pub mac: String,
    /// The IPv4 address leased.
    pub ip: String,
    /// When the lease expires, in seconds since the Unix epoch; 0 when it never expires.
    pub expiry: i64,
}

/// Which list in a network `virNetworkUpdate` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkSection {
    /// `<ip><dhcp><host>`
    DhcpHost,
    /// `<dns><host>`
    DnsHost,
}

/// Add or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateCommand {
    /// Append the entry.
    Add,
    /// Delete the matching entry.
    Delete,
}

/// Facts about the host libvirt runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// The libvirt library version, `major.minor.micro`.
    pub libvirt_version: String,
    /// The hypervisor (QEMU) version, `major.minor.micro`.
    pub hypervisor_version: String,
    /// The driver name (`QEMU`, `Test`).
    pub driver: String,
    /// Logical CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Whether KVM can run guests: libvirt offers the kvm domain type for the host architecture and the host CPU
    /// exposes hardware virtualisation (vmx or svm).
    pub kvm_usable: bool,
}

/// Formats libvirt's packed version number (major * 1,000,000 + minor * 1,000 + micro).
pub fn version_string(v: u32) -> String {
    format!("{}.{}.{}", v / 1_000_000, (v / 1000) % 1000, v % 1000)
}

/// The libvirt operations hsw's resources need.
#[async_trait]
pub trait Libvirt: Send + Sync + fmt::Debug + 'static {
    /// Facts about the host.
    async fn host_info(&self) -> Result<HostInfo, LibvirtError>;

    /// Defines (or redefines, when name and UUID match) a persistent network; returns it.
    async fn network_define(&self, xml: &str) -> Result<NetworkInfo, LibvirtError>;
    /// Looks a network up; `None` when it does not exist.
    async fn network_lookup(&self, key: &Key) -> Result<Option<NetworkInfo>, LibvirtError>;
    /// Starts a defined network.
    async fn network_start(&self, name: &str) -> Result<(), LibvirtError>;
    /// Stops an active network.
    async fn network_stop(&self, name: &str) -> Result<(), LibvirtError>;
    /// Removes an inactive network's definition.
    async fn network_undefine(&self, name: &str) -> Result<(), LibvirtError>;
    /// Sets whether the network starts with libvirtd.
    async fn network_set_autostart(&self, name: &str, autostart: bool) -> Result<(), LibvirtError>;
    /// The IPv4 DHCP leases the network's DHCP server holds for `mac` (lower case), stale ones included.
    async fn network_leases(&self, name: &str, mac: &str) -> Result<Vec<DhcpLease>, LibvirtError>;
    /// Adds or deletes a DHCP or DNS host entry (`virNetworkUpdate`), in the persistent definition and, when the
    /// network is active, in the live one.
    async fn network_update(
        &self,
        name: &str,
        command: UpdateCommand,
        section: NetworkSection,
        xml: &str,
    ) -> Result<(), LibvirtError>;

    /// Defines (or redefines, when name and UUID match) a persistent domain; returns it.
    async fn domain_define(&self, xml: &str) -> Result<DomainInfo, LibvirtError>;
    /// Looks a domain up; `None` when it does not exist.
    async fn domain_lookup(&self, key: &Key) -> Result<Option<DomainInfo>, LibvirtError>;
    /// Names of all domains, active or not.
    async fn domain_list(&self) -> Result<Vec<String>, LibvirtError>;
    /// Starts a defined, inactive domain.
    async fn domain_start(&self, name: &str) -> Result<(), LibvirtError>;
    /// Asks the guest to shut down (ACPI power button); returns at once.
    async fn domain_shutdown(&self, name: &str) -> Result<(), LibvirtError>;
    /// Powers a running domain off at once.
    async fn domain_destroy(&self, name: &str) -> Result<(), LibvirtError>;
    /// Removes an inactive domain's definition.
    async fn domain_undefine(&self, name: &str) -> Result<(), LibvirtError>;
    /// Sets whether the domain starts with libvirtd.
    async fn domain_set_autostart(&self, name: &str, autostart: bool) -> Result<(), LibvirtError>;
    /// Replaces (or, with `None`, removes) the domain's metadata element of namespace `uri`, in the persistent
    /// definition and, when running, in the live one.
    async fn domain_set_metadata(
        &self,
        name: &str,
        key: &str,
        uri: &str,
        xml: Option<&str>,
    ) -> Result<(), LibvirtError>;
    /// The IPv4 addresses seen for the domain's interfaces, from one source.
    async fn domain_addresses(
        &self,
        name: &str,
        source: AddressSource,
    ) -> Result<Vec<GuestAddress>, LibvirtError>;
}
