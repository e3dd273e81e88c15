//! The pure core of the provider: what hsw asks libvirt for ([`network::NetworkSpec`], [`vm::VmSpec`]), their
//! checks, their XML, and reading libvirt's XML back. No IO here.

pub mod network;
pub mod vm;
pub mod xml;
