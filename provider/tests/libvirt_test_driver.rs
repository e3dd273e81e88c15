//! The real [`VirtLibvirt`] backend against libvirt's in-process test driver (`test:///default`: no daemon, no
//! real network or VM), and the resources over it with real files: `qemu-img` overlays and `genisoimage` seeds in
//! a temporary pool directory (skipped with a message when those tools are missing).
//!
//! The test driver shares one state among the connections of a process while any is open, so each test uses its
//! own object names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::sync::Arc;

use harness::{strings, Tf};
use terraform_provider_hsw::backend::libvirt::real::{kvm_usable_from_capabilities, VirtLibvirt};
use terraform_provider_hsw::backend::libvirt::{
    AddressSource, ErrorKind, Key, Libvirt, NetworkSection, UpdateCommand,
};
use terraform_provider_hsw::backend::storage::LocalStorage;
use terraform_provider_hsw::backend::Backend;
use terraform_provider_hsw::framework::Value;

const NET: &str = "<network><name>tdnet</name><bridge name='tdbr0'/>\
    <ip address='10.99.0.1' prefix='24'><dhcp><range start='10.99.0.100' end='10.99.0.200'/></dhcp></ip></network>";

fn dom(name: &str, net: &str) -> String {
    format!(
        "<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
         <os><type>hvm</type></os><features><acpi/></features><devices>\
         <disk type='file' device='disk'><source file='/nonexistent/{name}.qcow2'/><target dev='vda' bus='virtio'/></disk>\
         <interface type='network'><mac address='52:54:00:99:00:01'/><source network='{net}'/></interface>\
         </devices></domain>"
    )
}

#[tokio::test]
async fn trait_against_the_test_driver() {
    let lv = VirtLibvirt::open("test:///default").await.unwrap();

    let host = lv.host_info().await.unwrap();
    assert_eq!(host.driver, "TEST");
    assert!(host.cpus > 0 && host.memory_mib > 0);
    assert!(!host.kvm_usable, "the test driver offers no KVM");
    assert!(host.libvirt_version.starts_with(char::is_numeric));

    // Networks: define, start, autostart, update, errors.
    let n = lv.network_define(NET).await.unwrap();
    assert!(!n.active);
    assert_eq!(
        lv.network_lookup(&Key::Uuid(n.uuid.clone()))
            .await
            .unwrap()
            .unwrap()
            .name,
        "tdnet"
    );
    assert!(lv
        .network_lookup(&Key::Name("td-none".into()))
        .await
        .unwrap()
        .is_none());
    lv.network_start("tdnet").await.unwrap();
    let e = lv.network_start("tdnet").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidState, "{e:?}");
    lv.network_set_autostart("tdnet", true).await.unwrap();
    let host_xml = "<host mac='52:54:00:99:00:01' ip='10.99.0.10'/>";
    lv.network_update(
        "tdnet",
        UpdateCommand::Add,
        NetworkSection::DhcpHost,
        host_xml,
    )
    .await
    .unwrap();
    assert!(lv
        .network_update(
            "tdnet",
            UpdateCommand::Add,
            NetworkSection::DhcpHost,
            host_xml
        )
        .await
        .is_err());
    lv.network_update(
        "tdnet",
        UpdateCommand::Add,
        NetworkSection::DnsHost,
        "<host ip='10.99.0.5'><hostname>api</hostname></host>",
    )
    .await
    .unwrap();
    let n = lv
        .network_lookup(&Key::Name("tdnet".into()))
        .await
        .unwrap()
        .unwrap();
    assert!(
        n.active && n.autostart && n.xml.contains("10.99.0.10") && n.xml.contains("api"),
        "{}",
        n.xml
    );
    let e = lv.network_undefine("tdnet").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidState);

    // Domains: define, start, addresses, metadata, shutdown, destroy, undefine.
    let d = lv.domain_define(&dom("tdvm", "tdnet")).await.unwrap();
    assert!(!d.active);
    assert!(lv.domain_list().await.unwrap().contains(&"tdvm".to_owned()));
    lv.domain_start("tdvm").await.unwrap();
    assert_eq!(
        lv.domain_start("tdvm").await.unwrap_err().kind,
        ErrorKind::InvalidState
    );
    let addrs = lv
        .domain_addresses("tdvm", AddressSource::Lease)
        .await
        .unwrap();
    assert!(
        addrs.iter().any(|a| a.mac == "52:54:00:99:00:01"),
        "{addrs:?}"
    );
    // virNetworkGetDHCPLeases (called through our own binding): the test driver either lists leases or says it
    // cannot; either way the call returns cleanly, and listed leases are well formed.
    match lv.network_leases("tdnet", "52:54:00:99:00:01").await {
        Ok(leases) => {
            println!("test driver leases: {leases:?}");
            assert!(leases.iter().all(
                |l| l.mac == "52:54:00:99:00:01" && l.ip.parse::<std::net::Ipv4Addr>().is_ok()
            ));
        }
        Err(e) => println!("test driver leases: {e}"),
    }
    assert_eq!(
        lv.network_leases("nonet", "52:54:00:99:00:01")
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    lv.domain_set_metadata(
        "tdvm",
        "hsw",
        "https://example.test/ns",
        Some("<vm>{\"a\":1}</vm>"),
    )
    .await
    .unwrap();
    let d = lv
        .domain_lookup(&Key::Uuid(d.uuid.clone()))
        .await
        .unwrap()
        .unwrap();
    assert!(
        d.xml.contains("https://example.test/ns") && d.xml.contains("{\"a\":1}"),
        "{}",
        d.xml
    );
    lv.domain_set_autostart("tdvm", true).await.unwrap();
    assert_eq!(
        lv.domain_undefine("tdvm").await.unwrap_err().kind,
        ErrorKind::InvalidState
    );
    lv.domain_shutdown("tdvm").await.unwrap();
    let d = lv
        .domain_lookup(&Key::Name("tdvm".into()))
        .await
        .unwrap()
        .unwrap();
    assert!(!d.active && d.autostart);
    assert_eq!(
        lv.domain_destroy("tdvm").await.unwrap_err().kind,
        ErrorKind::InvalidState
    );
    lv.domain_undefine("tdvm").await.unwrap();
    assert!(lv
        .domain_lookup(&Key::Name("tdvm".into()))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        lv.domain_start("tdvm").await.unwrap_err().kind,
        ErrorKind::NotFound
    );

    lv.network_update(
        "tdnet",
        UpdateCommand::Delete,
        NetworkSection::DhcpHost,
        host_xml,
    )
    .await
    .unwrap();
    lv.network_stop("tdnet").await.unwrap();
    lv.network_undefine("tdnet").await.unwrap();
    assert!(lv
        .network_lookup(&Key::Name("tdnet".into()))
        .await
        .unwrap()
        .is_none());
}

#[test]
fn kvm_detection() {
    let caps = |flag: &str| {
        format!(
            "<capabilities><host><cpu><arch>x86_64</arch>{flag}</cpu></host>\
             <guest><os_type>hvm</os_type><arch name='x86_64'><domain type='qemu'/><domain type='kvm'/></arch></guest>\
             </capabilities>"
        )
    };
    assert!(kvm_usable_from_capabilities(&caps(
        "<feature policy='require' name='vmx'/>"
    )));
    assert!(kvm_usable_from_capabilities(&caps("<feature name='svm'/>")));
    assert!(
        !kvm_usable_from_capabilities(&caps("")),
        "nested without vmx: TCG"
    );
    assert!(!kvm_usable_from_capabilities("<capabilities/>"));
    assert!(!kvm_usable_from_capabilities("not xml"));
}

fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

#[tokio::test]
async fn resources_against_the_test_driver_with_real_files() {
    if !have("qemu-img") || !(have("genisoimage") || have("cloud-localds")) {
        println!("SKIPPED: qemu-img and genisoimage (or cloud-localds) are needed (Debian: qemu-utils, genisoimage)");
        return;
    }
    let pool = tempfile::tempdir().unwrap();
    let pool_dir = pool.path().to_str().unwrap().to_owned();
    let images = pool.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let base = images.join("base.qcow2");
    let out = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&base)
        .arg("64M")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let lv = VirtLibvirt::open("test:///default").await.unwrap();
    let backend = Backend {
        libvirt: Arc::new(lv.clone()),
        storage: Arc::new(LocalStorage),
        lock_wait: terraform_provider_hsw::backend::LOCK_WAIT,
    };
    let tf = Tf::new(backend, &pool_dir).await;
    let net_cfg = tf.config(
        "hsw_network",
        [
            ("name", Value::from("tdlab")),
            ("subnet", "10.98.0.0/24".into()),
            ("bridge", "tdbr1".into()),
            ("mode", "nat".into()),
            (
                "dhcp",
                Value::object([
                    ("start", Value::from("10.98.0.100")),
                    ("end", Value::from("10.98.0.200")),
                ]),
            ),
        ],
    );
    let net = tf.converge("hsw_network", &Value::Null, &net_cfg).await;
    assert_eq!(tf.import("hsw_network", "tdlab").await.unwrap(), net);

    let vm_cfg = tf.config(
        "hsw_vm",
        [
            ("name", Value::from("tdnode")),
            ("vcpu", 1i64.into()),
            ("memory", 256i64.into()),
            ("base_image", base.to_str().unwrap().into()),
            ("disk_size_gib", 1i64.into()),
            ("user_data", "#cloud-config\n".into()),
            ("ssh_authorized_keys", strings(&["ssh-ed25519 AAAA test"])),
            (
                "network_interface",
                Value::List(vec![Value::object([
                    ("network", Value::from("tdlab")),
                    ("mac", Value::Null),
                    ("ip", Value::from("10.98.0.20")),
                    ("wait_for_ip", Value::from(true)),
                    ("addresses", Value::Null),
                ])]),
            ),
            (
                "extra_disk",
                Value::List(vec![Value::object([("size_gib", Value::from(1i64))])]),
            ),
        ],
    );
    let vm = tf.converge("hsw_vm", &Value::Null, &vm_cfg).await;
    assert_eq!(vm.get("accelerator_used").as_str(), Some("tcg"));
    let dir = pool.path().join("vms/tdnode");
    // A real copy-on-write overlay of the base, enlarged; a real seed ISO.
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(dir.join("root.qcow2"))
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["virtual-size"], 1u64 << 30);
    assert_eq!(info["backing-filename"], base.to_str().unwrap());
    let iso = std::fs::read(dir.join("cidata.iso")).unwrap();
    assert!(
        iso.windows(6).any(|w| w == b"CIDATA" || w == b"cidata"),
        "volume id cidata"
    );
    // Disks, seed and sources private, directories not listable by others (the test runs under umask 022).
    assert_eq!(
        harness::readable_by_others(&pool.path().join("vms")),
        Vec::<String>::new()
    );
    assert_eq!(tf.import("hsw_vm", "tdnode").await.unwrap(), vm);

    // In place through the real backend: memory.
    let vm2 = tf
        .converge("hsw_vm", &vm, &vm_cfg.clone().with("memory", 512i64))
        .await;
    assert_eq!(vm2.get("id"), vm.get("id"));

    // A GPU VM's machine and firmware (q35, OVMF with its own NVRAM, the MMIO window, a vGPU), as libvirt reads
    // them back.
    let ovmf = std::path::Path::new(terraform_provider_hsw::hsw::model::vm::OVMF_VARS);
    if ovmf.exists() {
        let gpu_cfg = tf.config(
            "hsw_vm",
            [
                ("name", Value::from("tdgpu")),
                ("vcpu", 1i64.into()),
                ("memory", 256i64.into()),
                ("base_image", base.to_str().unwrap().into()),
                ("machine", "q35".into()),
                ("firmware", "efi".into()),
                ("mmio64_gib", 128i64.into()),
                (
                    "hostdev",
                    Value::List(vec![Value::object([
                        ("pci", Value::Null),
                        ("mdev", Value::from("c2177883-f1bb-47f0-914d-32a22e3a8804")),
                    ])]),
                ),
            ],
        );
        let g = tf.converge("hsw_vm", &Value::Null, &gpu_cfg).await;
        let nvram = pool.path().join("vms/tdgpu/nvram.fd");
        assert_eq!(std::fs::read(&nvram).unwrap(), std::fs::read(ovmf).unwrap());
        assert_eq!(
            harness::readable_by_others(&pool.path().join("vms")),
            Vec::<String>::new()
        );
        let x = lv
            .domain_lookup(&Key::Name("tdgpu".into()))
            .await
            .unwrap()
            .unwrap()
            .xml;
        assert!(
            x.contains("q35") && x.contains("nvram.fd") && x.contains("pcihole64"),
            "{x}"
        );
        assert_eq!(tf.import("hsw_vm", "tdgpu").await.unwrap(), g);
        tf.destroy("hsw_vm", &g).await.unwrap();
        assert!(!nvram.exists());
    } else {
        println!(
            "SKIPPED: the UEFI VM part needs Debian's ovmf ({} is missing)",
            ovmf.display()
        );
    }

    tf.destroy("hsw_vm", &vm2).await.unwrap();
    assert!(!dir.exists(), "the VM's directory is gone");
    assert!(base.exists(), "the base image stays");
    let n = lv
        .network_lookup(&Key::Name("tdlab".into()))
        .await
        .unwrap()
        .unwrap();
    assert!(
        !n.xml.contains("'10.98.0.20'"),
        "reservation removed: {}",
        n.xml
    );
    tf.destroy("hsw_network", &net).await.unwrap();
    assert!(lv
        .network_lookup(&Key::Name("tdlab".into()))
        .await
        .unwrap()
        .is_none());
}
