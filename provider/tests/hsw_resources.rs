//! `hsw_network`, `hsw_vm` and `hsw_host` through the provider's tfplugin6 service, over the fake libvirt and
//! fake pool directory: create, read, empty plan, import, in-place updates, replacement, drift, destroy leaving
//! nothing, rejected injections, timeouts, crash recovery.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::path::PathBuf;

use harness::{strings, Tf};
use terraform_provider_hsw::backend::libvirt::fake::FakeLibvirt;
use terraform_provider_hsw::backend::libvirt::{Key, Libvirt};
use terraform_provider_hsw::backend::storage::{FakeFile, FakeStorage, Storage as _};
use terraform_provider_hsw::backend::Backend;
use terraform_provider_hsw::framework::Value;

const POOL: &str = "/pool";
const BASE: &str = "/pool/images/debian-12.qcow2";

struct World {
    tf: Tf,
    lv: FakeLibvirt,
    st: FakeStorage,
}

async fn world() -> World {
    let (backend, lv, st): (Backend, _, _) = Backend::fake();
    st.put(
        BASE,
        FakeFile::Image {
            size: 2 << 30,
            backing: None,
        },
    );
    st.put("/pool/images/vmlinuz", FakeFile::Text("kernel".into()));
    st.put("/pool/images/initrd.img", FakeFile::Text("initrd".into()));
    World {
        tf: Tf::new(backend, POOL).await,
        lv,
        st,
    }
}

fn net_config(tf: &Tf) -> Value {
    tf.config(
        "hsw_network",
        [
            ("name", Value::from("lab")),
            ("mode", "nat".into()),
            ("bridge", "hswbr0".into()),
            ("subnet", "10.20.0.0/24".into()),
            ("dns_domain", "lab.internal".into()),
            ("mtu", 1500i64.into()),
            (
                "dhcp",
                Value::object([
                    ("start", Value::from("10.20.0.100")),
                    ("end", Value::from("10.20.0.200")),
                ]),
            ),
            (
                "dhcp_host",
                Value::Set(vec![Value::object([
                    ("mac", Value::from("52:54:00:00:00:01")),
                    ("ip", Value::from("10.20.0.10")),
                    ("hostname", Value::from("printer")),
                ])]),
            ),
            (
                "dns_host",
                Value::Set(vec![Value::object([
                    ("ip", Value::from("10.20.0.5")),
                    ("hostnames", strings(&["api"])),
                ])]),
            ),
        ],
    )
}

fn nic(network: &str, ip: Option<&str>, wait: bool) -> Value {
    Value::object([
        ("network", Value::from(network)),
        ("mac", Value::Null),
        ("ip", Value::from(ip)),
        ("wait_for_ip", Value::from(wait)),
        ("addresses", Value::Null),
    ])
}

fn vm_config(tf: &Tf) -> Value {
    tf.config(
        "hsw_vm",
        [
            ("name", Value::from("node1")),
            ("vcpu", 2i64.into()),
            ("memory", 1024i64.into()),
            ("base_image", BASE.into()),
            ("disk_size_gib", 10i64.into()),
            ("kernel", "/pool/images/vmlinuz".into()),
            ("initrd", "/pool/images/initrd.img".into()),
            ("cmdline", "root=/dev/vda rw console=ttyS0".into()),
            ("user_data", "#cloud-config\npassword: s3cr3t\n".into()),
            ("hostname", "node1".into()),
            (
                "network_interface",
                Value::List(vec![nic("lab", Some("10.20.0.21"), true)]),
            ),
            (
                "extra_disk",
                Value::List(vec![Value::object([("size_gib", Value::from(5i64))])]),
            ),
            (
                "hostdev",
                Value::List(vec![Value::object([
                    ("pci", Value::Null),
                    ("mdev", Value::from("c2177883-f1bb-47f0-914d-32a22e3a8804")),
                ])]),
            ),
            ("wait_for_ip_timeout", 5i64.into()),
        ],
    )
}

fn files(st: &FakeStorage) -> Vec<PathBuf> {
    st.snapshot()
        .into_iter()
        .filter(|(_, f)| *f != FakeFile::Dir)
        .map(|(p, _)| p)
        .collect()
}

#[tokio::test]
async fn network_lifecycle() {
    let w = world().await;
    let tf = &w.tf;
    let cfg = net_config(tf);

    let plan = tf.plan("hsw_network", &Value::Null, &cfg).await.unwrap();
    assert_eq!(
        plan.planned.get("gateway").as_str(),
        Some("10.20.0.1"),
        "gateway defaults at plan time"
    );
    assert_eq!(plan.planned.get("autostart").as_bool(), Some(false));
    assert!(plan.planned.get("id").is_unknown());

    let state = tf.converge("hsw_network", &Value::Null, &cfg).await;
    let id = state.get("id").as_str().unwrap().to_owned();
    let net =
        w.lv.network_lookup(&Key::Name("lab".into()))
            .await
            .unwrap()
            .unwrap();
    assert!(net.active);
    assert_eq!(net.uuid, id);

    // Import by name and by UUID gives the created state.
    assert_eq!(tf.import("hsw_network", "lab").await.unwrap(), state);
    assert_eq!(tf.import("hsw_network", &id).await.unwrap(), state);
    assert!(tf.import("hsw_network", "nope").await.is_err());

    // In place: static leases, DNS hosts, autostart.
    let cfg2 = cfg
        .clone()
        .with(
            "dhcp_host",
            Value::Set(vec![Value::object([
                ("mac", Value::from("52:54:00:00:00:02")),
                ("ip", Value::from("10.20.0.11")),
                ("hostname", Value::Null),
            ])]),
        )
        .with(
            "dns_host",
            Value::Set(vec![Value::object([
                ("ip", Value::from("10.20.0.6")),
                ("hostnames", strings(&["db", "db.lab.internal"])),
            ])]),
        )
        .with("autostart", true);
    let plan = tf.plan("hsw_network", &state, &cfg2).await.unwrap();
    assert!(
        plan.requires_replace.is_empty(),
        "{:?}",
        plan.requires_replace
    );
    let state2 = tf.converge("hsw_network", &state, &cfg2).await;
    assert_eq!(state2.get("id"), state.get("id"), "updated in place");
    let net =
        w.lv.network_lookup(&Key::Name("lab".into()))
            .await
            .unwrap()
            .unwrap();
    assert!(net.autostart && net.xml.contains("'10.20.0.11'") && !net.xml.contains("'10.20.0.10'"));
    assert!(net.xml.contains("db.lab.internal") && !net.xml.contains(">api<"));

    // Replace: the subnet.
    let cfg3 = cfg2
        .clone()
        .with("subnet", "10.30.0.0/24")
        .with(
            "dhcp",
            Value::object([
                ("start", Value::from("10.30.0.100")),
                ("end", Value::from("10.30.0.200")),
            ]),
        )
        .with(
            "dhcp_host",
            Value::Set(vec![Value::object([
                ("mac", Value::from("52:54:00:00:00:02")),
                ("ip", Value::from("10.30.0.11")),
                ("hostname", Value::Null),
            ])]),
        )
        .with("dns_host", Value::Set(vec![]));
    let plan = tf.plan("hsw_network", &state2, &cfg3).await.unwrap();
    assert!(
        plan.requires_replace.contains(&"subnet".to_owned()),
        "{:?}",
        plan.requires_replace
    );
    let state3 = tf.converge("hsw_network", &state2, &cfg3).await;
    assert_ne!(state3.get("id"), state2.get("id"));
    assert_eq!(state3.get("gateway").as_str(), Some("10.30.0.1"));

    // Drift: removed out of band.
    w.lv.network_stop("lab").await.unwrap();
    w.lv.network_undefine("lab").await.unwrap();
    assert!(tf.read("hsw_network", &state3).await.unwrap().is_null());

    // Destroy of something already gone succeeds; nothing is left.
    let state4 = tf.converge("hsw_network", &Value::Null, &cfg3).await;
    tf.destroy("hsw_network", &state4).await.unwrap();
    assert!(w.lv.network_names().is_empty());
    tf.destroy("hsw_network", &state4).await.unwrap();
}

#[tokio::test]
async fn network_defaults_and_conflicts() {
    let w = world().await;
    let tf = &w.tf;
    let cfg = tf.config(
        "hsw_network",
        [
            ("name", Value::from("iso")),
            ("subnet", "10.40.0.0/24".into()),
        ],
    );
    let state = tf.converge("hsw_network", &Value::Null, &cfg).await;
    assert_eq!(state.get("mode").as_str(), Some("isolated"));
    assert_eq!(
        state.get("bridge").as_str(),
        Some("virbr0"),
        "libvirt picks the bridge"
    );
    assert!(!w
        .lv
        .network_lookup(&Key::Name("iso".into()))
        .await
        .unwrap()
        .unwrap()
        .xml
        .contains("<forward"));

    // Another network on the same bridge is refused by libvirt, with its message.
    let other = tf.config(
        "hsw_network",
        [
            ("name", Value::from("other")),
            ("subnet", "10.41.0.0/24".into()),
            ("bridge", "virbr0".into()),
        ],
    );
    let err = tf
        .apply("hsw_network", &Value::Null, &other)
        .await
        .unwrap_err();
    assert!(err[0].detail.contains("already in use"), "{err:?}");

    // A network of the same name with other settings is not adopted.
    let clash = tf.config(
        "hsw_network",
        [
            ("name", Value::from("iso")),
            ("subnet", "10.42.0.0/24".into()),
        ],
    );
    let err = tf
        .apply("hsw_network", &Value::Null, &clash)
        .await
        .unwrap_err();
    assert_eq!(err[0].summary, "Network already exists");
    assert_eq!(err[0].path, "name");
    // Nor is an identical, running one: another configuration may manage it.
    let err = tf
        .apply("hsw_network", &Value::Null, &cfg)
        .await
        .unwrap_err();
    assert_eq!(err[0].summary, "Network already exists");
    // An identical one left inactive by an hsw create that died between define and start is adopted.
    w.lv.network_stop("iso").await.unwrap();
    let again = tf.apply("hsw_network", &Value::Null, &cfg).await.unwrap();
    assert_eq!(again.get("id"), state.get("id"));
    // An identical inactive one that hsw's metadata does not claim is neither adopted nor removed.
    let xml =
        w.lv.network_lookup(&Key::Name("iso".into()))
            .await
            .unwrap()
            .unwrap()
            .xml;
    let (from, to) = (
        xml.find("<metadata>").unwrap(),
        xml.find("</metadata>").unwrap(),
    );
    let foreign = format!("{}{}", &xml[..from], &xml[to + "</metadata>".len()..]);
    w.lv.network_stop("iso").await.unwrap();
    w.lv.network_define(&foreign).await.unwrap();
    let err = tf
        .apply("hsw_network", &Value::Null, &cfg)
        .await
        .unwrap_err();
    assert_eq!(err[0].summary, "Network already exists");
    assert!(w
        .lv
        .network_lookup(&Key::Name("iso".into()))
        .await
        .unwrap()
        .is_some());
    w.lv.network_start("iso").await.unwrap();

    // Removing `mode` from a nat network plans the default, which replaces it.
    let nat = cfg.clone().with("mode", "nat");
    let s = tf.converge("hsw_network", &state, &nat).await;
    let plan = tf.plan("hsw_network", &s, &cfg).await.unwrap();
    assert_eq!(plan.planned.get("mode").as_str(), Some("isolated"));
    assert!(plan.requires_replace.contains(&"mode".to_owned()));
}

#[tokio::test]
async fn vm_lifecycle() {
    let w = world().await;
    let tf = &w.tf;
    let net = tf
        .converge("hsw_network", &Value::Null, &net_config(tf))
        .await;
    let cfg = vm_config(tf);

    let plan = tf.plan("hsw_vm", &Value::Null, &cfg).await.unwrap();
    let mac = plan.planned.get("network_interface").as_slice().unwrap()[0]
        .get("mac")
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        mac.starts_with("52:54:00:"),
        "the MAC is known at plan time"
    );
    assert_eq!(plan.planned.get("running").as_bool(), Some(true));
    assert_eq!(plan.planned.get("accelerator").as_str(), Some("auto"));

    let state = tf.converge("hsw_vm", &Value::Null, &cfg).await;
    assert_eq!(
        state.get("accelerator_used").as_str(),
        Some("tcg"),
        "no KVM on the fake host"
    );
    assert!(state.get("running").as_bool().unwrap());
    let iface = &state.get("network_interface").as_slice().unwrap()[0];
    assert_eq!(iface.get("mac").as_str(), Some(mac.as_str()));
    assert_eq!(
        iface.get("addresses"),
        &strings(&["10.20.0.21"]),
        "the reserved address"
    );
    assert_eq!(
        state.get("user_data").as_str(),
        Some("#cloud-config\npassword: s3cr3t\n")
    );

    // What exists: the overlay (backed by the base, larger), the extra disk, the seed; the reservation.
    let snap = w.st.snapshot();
    assert_eq!(
        snap[&PathBuf::from("/pool/vms/node1/root.qcow2")],
        FakeFile::Image {
            size: 10 << 30,
            backing: Some(BASE.into())
        }
    );
    assert!(snap.contains_key(&PathBuf::from("/pool/vms/node1/data-1.qcow2")));
    assert!(
        matches!(&snap[&PathBuf::from("/pool/vms/node1/cidata.iso")], FakeFile::Iso(f) if f == &["user-data", "meta-data"])
    );
    let dom =
        w.lv.domain_lookup(&Key::Name("node1".into()))
            .await
            .unwrap()
            .unwrap();
    assert!(
        !dom.xml.contains("s3cr3t"),
        "secrets stay out of the domain XML"
    );
    assert!(
        dom.xml.contains("\"complete\":true") || dom.xml.contains("&quot;complete&quot;:true"),
        "{}",
        dom.xml
    );
    let netxml =
        w.lv.network_lookup(&Key::Name("lab".into()))
            .await
            .unwrap()
            .unwrap()
            .xml;
    assert!(netxml.contains("10.20.0.21"));
    // The VM's reservation is not drift of the network.
    let net_read = tf.read("hsw_network", &net).await.unwrap();
    assert_eq!(net_read, net);
    assert!(tf
        .plan("hsw_network", &net_read, &net_config(tf))
        .await
        .unwrap()
        .is_empty(&net_read));

    // Import by name and by UUID equals the created state.
    let id = state.get("id").as_str().unwrap().to_owned();
    assert_eq!(tf.import("hsw_vm", "node1").await.unwrap(), state);
    assert_eq!(tf.import("hsw_vm", &id).await.unwrap(), state);

    // vcpu and memory: shutdown, redefine, start; same UUID.
    let before = w.lv.calls().len();
    let cfg2 = cfg.clone().with("vcpu", 4i64).with("memory", 2048i64);
    let plan = tf.plan("hsw_vm", &state, &cfg2).await.unwrap();
    assert!(
        plan.requires_replace.is_empty(),
        "{:?}",
        plan.requires_replace
    );
    let state2 = tf.converge("hsw_vm", &state, &cfg2).await;
    assert_eq!(state2.get("id").as_str(), Some(id.as_str()));
    assert_eq!(state2.get("vcpu").as_i64(), Some(4));
    let calls: Vec<String> = w.lv.calls()[before..].to_vec();
    assert_eq!(
        calls,
        [
            "domain_shutdown node1",
            "domain_define node1",
            "domain_start node1"
        ],
        "graceful shutdown, redefine, start"
    );

    // A guest that ignores ACPI is powered off after shutdown_timeout.
    w.lv.set_acpi_ignored("node1", true);
    let cfg3 = cfg2
        .clone()
        .with("memory", 3072i64)
        .with("shutdown_timeout", 1i64);
    let before = w.lv.calls().len();
    let state3 = tf.converge("hsw_vm", &state2, &cfg3).await;
    assert_eq!(state3.get("memory").as_i64(), Some(3072));
    let calls: Vec<String> = w.lv.calls()[before..].to_vec();
    assert_eq!(
        calls,
        [
            "domain_shutdown node1",
            "domain_destroy node1",
            "domain_define node1",
            "domain_start node1"
        ]
    );
    w.lv.set_acpi_ignored("node1", false);

    // running = false stops it; true starts it again; in place.
    let stopped = tf
        .converge("hsw_vm", &state3, &cfg3.clone().with("running", false))
        .await;
    assert_eq!(stopped.get("running").as_bool(), Some(false));
    assert_eq!(
        stopped.get("network_interface").as_slice().unwrap()[0].get("addresses"),
        &Value::List(vec![])
    );
    let started = tf.converge("hsw_vm", &stopped, &cfg3).await;
    assert_eq!(started.get("id"), state.get("id"));

    // Replace: another base image.
    w.st.put(
        "/pool/images/other.qcow2",
        FakeFile::Image {
            size: 1 << 30,
            backing: None,
        },
    );
    let cfg4 = cfg3.clone().with("base_image", "/pool/images/other.qcow2");
    let plan = tf.plan("hsw_vm", &started, &cfg4).await.unwrap();
    assert!(plan.requires_replace.contains(&"base_image".to_owned()));
    let replaced = tf.converge("hsw_vm", &started, &cfg4).await;
    assert_ne!(replaced.get("id"), started.get("id"));
    assert_eq!(
        replaced.get("network_interface").as_slice().unwrap()[0]
            .get("mac")
            .as_str(),
        Some(mac.as_str()),
        "the default MAC is stable across replacement"
    );

    // Destroy: no domain, no files but the images, no reservation.
    tf.destroy("hsw_vm", &replaced).await.unwrap();
    assert!(w.lv.domain_names().is_empty());
    assert_eq!(
        files(&w.st),
        [
            PathBuf::from(BASE),
            PathBuf::from("/pool/images/initrd.img"),
            PathBuf::from("/pool/images/other.qcow2"),
            PathBuf::from("/pool/images/vmlinuz"),
        ]
    );
    let netxml =
        w.lv.network_lookup(&Key::Name("lab".into()))
            .await
            .unwrap()
            .unwrap()
            .xml;
    assert!(!netxml.contains("10.20.0.21"), "{netxml}");
    tf.destroy("hsw_network", &net).await.unwrap();
    assert!(w.lv.network_names().is_empty());
}

#[tokio::test]
async fn vm_drift() {
    let w = world().await;
    let tf = &w.tf;
    tf.converge("hsw_network", &Value::Null, &net_config(tf))
        .await;
    let cfg = tf.config(
        "hsw_vm",
        [
            ("name", Value::from("drift")),
            ("vcpu", 1i64.into()),
            ("memory", 512i64.into()),
            ("base_image", BASE.into()),
            (
                "network_interface",
                Value::List(vec![nic("lab", None, false)]),
            ),
        ],
    );
    let state = tf.converge("hsw_vm", &Value::Null, &cfg).await;
    assert!(
        files(&w.st).iter().all(|p| !p.ends_with("cidata.iso")),
        "no seed without cloud-init arguments"
    );

    // Stopped out of band: read shows it, the plan starts it again in place.
    w.lv.domain_destroy("drift").await.unwrap();
    let read = tf.read("hsw_vm", &state).await.unwrap();
    assert_eq!(read.get("running").as_bool(), Some(false));
    let plan = tf.plan("hsw_vm", &read, &cfg).await.unwrap();
    assert!(plan.requires_replace.is_empty());
    assert_eq!(plan.planned.get("running").as_bool(), Some(true));
    let back = tf.converge("hsw_vm", &read, &cfg).await;
    assert!(back.get("running").as_bool().unwrap());

    // Deleted out of band: read says gone, Terraform creates it again.
    w.lv.domain_destroy("drift").await.unwrap();
    w.lv.domain_undefine("drift").await.unwrap();
    assert!(tf.read("hsw_vm", &back).await.unwrap().is_null());
    tf.converge("hsw_vm", &Value::Null, &cfg).await;
}

#[tokio::test]
async fn injections_are_rejected_at_plan_time() {
    let w = world().await;
    let tf = &w.tf;
    let cases: Vec<(Value, &str)> = vec![
        (vm_config(tf).with("name", "x</name><devices>"), "name"),
        (vm_config(tf).with("name", "a;reboot"), "name"),
        (
            vm_config(tf).with("base_image", "/pool/../etc/shadow"),
            "base_image",
        ),
        (
            vm_config(tf).with("base_image", "/etc/shadow"),
            "base_image",
        ),
        (
            vm_config(tf).with("base_image", "/pool/images/$(reboot).qcow2"),
            "base_image",
        ),
        (
            vm_config(tf).with("base_image", "/pool/vms/other/root.qcow2"),
            "base_image",
        ),
        (
            vm_config(tf).with("kernel", "/pool/images/vmlinuz'/>"),
            "kernel",
        ),
        (
            vm_config(tf).with("cmdline", "root=/dev/vda; reboot"),
            "cmdline",
        ),
        (vm_config(tf).with("hostname", "a b"), "hostname"),
        (
            vm_config(tf).with(
                "ssh_authorized_keys",
                strings(&["ssh-ed25519 AAAA\nruncmd: [reboot]"]),
            ),
            "ssh_authorized_keys[0]",
        ),
        (
            vm_config(tf).with(
                "network_interface",
                Value::List(vec![nic("lab'><x", None, false)]),
            ),
            "network_interface[0].network",
        ),
        (
            vm_config(tf).with(
                "hostdev",
                Value::List(vec![Value::object([
                    ("pci", Value::from("0000:3b:00.0'/>")),
                    ("mdev", Value::Null),
                ])]),
            ),
            "hostdev[0].pci",
        ),
        (
            net_config(tf).with("name", "lab'/><forward mode='nat"),
            "name",
        ),
        (
            net_config(tf).with("bridge", "br0;ip link del eth0"),
            "bridge",
        ),
        (
            net_config(tf).with("dns_domain", "lab</domain>"),
            "dns_domain",
        ),
    ];
    for (cfg, path) in cases {
        let type_name = if cfg.get("subnet").is_null() {
            "hsw_vm"
        } else {
            "hsw_network"
        };
        let err = tf
            .plan(type_name, &Value::Null, &cfg)
            .await
            .expect_err(path);
        assert!(
            err.iter()
                .any(|d| d.path == path && !d.summary.is_empty() && !d.detail.is_empty()),
            "{path}: {err:#?}"
        );
        assert!(
            err.iter().all(|d| !d.detail.contains("s3cr3t")),
            "secrets never appear in diagnostics"
        );
    }
    // The provider block too.
    let tf2 = Tf::over(terraform_provider_hsw::hsw::HswProvider::default());
    let cfg = terraform_provider_hsw::hsw::provider_schema()
        .block
        .null_object()
        .with("uri", "qemu:///system?x=1&reboot")
        .with("pool_dir", "/var/../etc");
    let d = tf2.configure(&cfg).await;
    let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["uri", "pool_dir"], "{d:#?}");
}

#[tokio::test]
async fn symlinks_out_of_the_pool_are_refused() {
    let w = world().await;
    let tf = &w.tf;
    tf.converge("hsw_network", &Value::Null, &net_config(tf))
        .await;
    w.st.put("/pool/images/escape", FakeFile::Link("/srv".into()));
    w.st.put(
        "/srv/disk.qcow2",
        FakeFile::Image {
            size: 1,
            backing: None,
        },
    );
    let cfg = vm_config(tf).with("base_image", "/pool/images/escape/disk.qcow2");
    let err = tf.apply("hsw_vm", &Value::Null, &cfg).await.unwrap_err();
    assert_eq!(err[0].path, "base_image");
    assert!(
        err[0].detail.contains("outside the pool directory"),
        "{err:?}"
    );
    assert!(w.lv.domain_names().is_empty());
    assert!(!w
        .st
        .snapshot()
        .contains_key(&PathBuf::from("/pool/vms/node1")));
}

#[tokio::test]
async fn wait_for_ip_times_out_with_a_clear_message() {
    let w = world().await;
    let tf = &w.tf;
    tf.converge("hsw_network", &Value::Null, &net_config(tf))
        .await;
    w.lv.set_leases(false);
    let cfg = vm_config(tf).with("wait_for_ip_timeout", 1i64).with(
        "network_interface",
        Value::List(vec![nic("lab", None, true)]),
    );
    let err = tf.apply("hsw_vm", &Value::Null, &cfg).await.unwrap_err();
    let d = &err[0];
    assert_eq!(d.summary, "Timed out waiting for an IP address");
    assert_eq!(d.path, "network_interface[0].wait_for_ip");
    for want in [
        "VM node1",
        "network lab",
        "within 1 s",
        "DHCP leases seen: none",
        "ARP entries seen: none",
        "The VM was removed.",
    ] {
        assert!(
            d.detail.contains(want),
            "{want:?} missing from: {}",
            d.detail
        );
    }
    // A failed create leaves nothing behind.
    assert!(w.lv.domain_names().is_empty());
    assert!(files(&w.st).iter().all(|p| !p.starts_with("/pool/vms")));
}

/// After a restart (a cpu/memory change), the DHCP lease from the previous boot is still listed: `wait_for_ip`
/// must not take it as the guest's address in the new boot.
#[tokio::test]
async fn wait_for_ip_after_a_restart_ignores_the_stale_lease() {
    let w = world().await;
    let tf = &w.tf;
    tf.converge("hsw_network", &Value::Null, &net_config(tf))
        .await;
    let cfg = vm_config(tf).with("wait_for_ip_timeout", 1i64);
    let state = tf.converge("hsw_vm", &Value::Null, &cfg).await;
    let mac = state.get("network_interface").as_slice().unwrap()[0]
        .get("mac")
        .as_str()
        .unwrap()
        .to_owned();
    let old = w.lv.network_leases("lab", &mac).await.unwrap();
    assert_eq!(old.len(), 1, "the first boot took a lease: {old:?}");

    // The new boot gets no address; the old lease is still there, as dnsmasq keeps it.
    w.lv.set_leases(false);
    let cfg2 = cfg.clone().with("memory", 2048i64);
    let err = tf.apply("hsw_vm", &state, &cfg2).await.unwrap_err();
    let d = &err[0];
    assert_eq!(d.summary, "Timed out waiting for an IP address", "{err:#?}");
    assert_eq!(d.path, "network_interface[0].wait_for_ip");
    assert!(
        d.detail
            .contains(&format!("{mac} 10.20.0.21 (from an earlier boot)")),
        "{}",
        d.detail
    );
    assert!(d.detail.contains("ARP entries seen: none"), "{}", d.detail);
    assert!(d.detail.contains("keeps running"), "{}", d.detail);
    assert_eq!(w.lv.network_leases("lab", &mac).await.unwrap(), old);

    // Once the guest renews its lease in the new boot, the same change goes through.
    w.lv.set_leases(true);
    let state2 = tf.converge("hsw_vm", &state, &cfg2).await;
    assert_eq!(state2.get("memory").as_i64(), Some(2048));
    let renewed = w.lv.network_leases("lab", &mac).await.unwrap();
    assert!(renewed[0].expiry > old[0].expiry, "{renewed:?} {old:?}");
}

#[tokio::test]
async fn create_recovers_from_an_interrupted_apply() {
    let w = world().await;
    let tf = &w.tf;
    tf.converge("hsw_network", &Value::Null, &net_config(tf))
        .await;
    let cfg = vm_config(tf);
    let state = tf.converge("hsw_vm", &Value::Null, &cfg).await;
    // Another apply is creating it: the domain is marked incomplete by that create, whose lock is held. This
    // create waits, then fails without touching that VM.
    let id = state.get("id").as_str().unwrap().to_owned();
    let dom =
        w.lv.domain_lookup(&Key::Uuid(id.clone()))
            .await
            .unwrap()
            .unwrap();
    let incomplete = dom.xml.replace(
        "&quot;complete&quot;:true",
        "&quot;complete&quot;:false,&quot;creator&quot;:&quot;other-apply&quot;",
    );
    assert_ne!(incomplete, dom.xml);
    w.lv.domain_define(&incomplete).await.unwrap();
    let held =
        w.st.try_lock(std::path::Path::new("/pool/.hsw-locks"), "VM-node1")
            .await
            .unwrap()
            .expect("the lock is free");
    let err = tf.apply("hsw_vm", &Value::Null, &cfg).await.unwrap_err();
    assert_eq!(err[0].summary, "Name in use by another apply", "{err:?}");
    assert!(err[0].detail.contains("VM-node1.lock"), "{err:?}");
    assert!(w.lv.domain_lookup(&Key::Uuid(id)).await.unwrap().is_some());
    assert!(
        w.st.exists(std::path::Path::new("/pool/vms/node1/root.qcow2"))
            .await
    );
    // That provider died mid-create: its lock is free, the domain still incomplete, the state has nothing.
    drop(held);
    let again = tf.converge("hsw_vm", &Value::Null, &cfg).await;
    assert_ne!(
        again.get("id"),
        state.get("id"),
        "the leftover was replaced"
    );
    assert_eq!(w.lv.domain_names(), ["node1"]);
    let netxml =
        w.lv.network_lookup(&Key::Name("lab".into()))
            .await
            .unwrap()
            .unwrap()
            .xml;
    assert_eq!(
        netxml.matches("10.20.0.21").count(),
        1,
        "one reservation: {netxml}"
    );

    // A complete one is not touched: import it.
    let err = tf.apply("hsw_vm", &Value::Null, &cfg).await.unwrap_err();
    assert_eq!(err[0].summary, "VM already exists");
    assert!(err[0].detail.contains("terraform import"));

    // A foreign domain of that name is not touched either.
    w.lv.domain_define(
        "<domain type='qemu'><name>foreign</name><memory>1024</memory><vcpu>1</vcpu></domain>",
    )
    .await
    .unwrap();
    let err = tf
        .apply("hsw_vm", &Value::Null, &cfg.clone().with("name", "foreign"))
        .await
        .unwrap_err();
    assert_eq!(err[0].summary, "Domain name in use");
    assert!(tf.import("hsw_vm", "foreign").await.is_err());
}

#[tokio::test]
async fn accelerator_and_host_facts() {
    let w = world().await;
    let tf = &w.tf;
    let host = tf
        .data("hsw_host", &tf.schema("data.hsw_host").block.null_object())
        .await
        .unwrap();
    assert_eq!(host.get("kvm_usable").as_bool(), Some(false));
    assert_eq!(host.get("auto_accelerator").as_str(), Some("tcg"));
    assert_eq!(host.get("libvirt_version").as_str(), Some("9.0.0"));

    tf.converge("hsw_network", &Value::Null, &net_config(tf))
        .await;
    let cfg = vm_config(tf).with("accelerator", "kvm");
    let err = tf.apply("hsw_vm", &Value::Null, &cfg).await.unwrap_err();
    assert_eq!(err[0].path, "accelerator");

    w.lv.set_kvm_usable(true);
    let host = tf
        .data("hsw_host", &tf.schema("data.hsw_host").block.null_object())
        .await
        .unwrap();
    assert_eq!(host.get("auto_accelerator").as_str(), Some("kvm"));
    let state = tf
        .converge(
            "hsw_vm",
            &Value::Null,
            &vm_config(tf).with("cpu_mode", "host-passthrough"),
        )
        .await;
    assert_eq!(state.get("accelerator_used").as_str(), Some("kvm"));
    let dom =
        w.lv.domain_lookup(&Key::Name("node1".into()))
            .await
            .unwrap()
            .unwrap();
    assert!(dom.xml.contains("<domain type='kvm'>") && dom.xml.contains("mode='host-passthrough'"));
    // Forcing TCG in place: redefined with the safe CPU model.
    let tcg = tf
        .converge(
            "hsw_vm",
            &state,
            &vm_config(tf)
                .with("cpu_mode", "host-passthrough")
                .with("accelerator", "tcg"),
        )
        .await;
    assert_eq!(tcg.get("accelerator_used").as_str(), Some("tcg"));
    assert_eq!(tcg.get("id"), state.get("id"));
    let dom =
        w.lv.domain_lookup(&Key::Name("node1".into()))
            .await
            .unwrap()
            .unwrap();
    assert!(dom.xml.contains("qemu64") && !dom.xml.contains("mode='host-passthrough'"));
}

#[tokio::test]
async fn cloud_init_from_arguments() {
    let w = world().await;
    let tf = &w.tf;
    tf.converge("hsw_network", &Value::Null, &net_config(tf))
        .await;
    let cfg = vm_config(tf)
        .with("user_data", Value::Null)
        .with(
            "ssh_authorized_keys",
            strings(&["ssh-ed25519 AAAAC3Nza user@host"]),
        )
        .with(
            "network_config",
            "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n",
        );
    let state = tf.converge("hsw_vm", &Value::Null, &cfg).await;
    assert!(state.get("user_data").is_null());
    let snap = w.st.snapshot();
    let FakeFile::Text(user) = &snap[&PathBuf::from("/pool/vms/node1/cidata/user-data")] else {
        panic!()
    };
    assert_eq!(user, "#cloud-config\nhostname: node1\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAAC3Nza user@host\"\n");
    let FakeFile::Text(meta) = &snap[&PathBuf::from("/pool/vms/node1/cidata/meta-data")] else {
        panic!()
    };
    assert_eq!(meta, "instance-id: iid-node1\nlocal-hostname: node1\n");
    assert!(
        matches!(&snap[&PathBuf::from("/pool/vms/node1/cidata.iso")], FakeFile::Iso(f) if f.len() == 3)
    );
    assert_eq!(tf.import("hsw_vm", "node1").await.unwrap(), state);
}

/// Two creates of one name at once: the second waits for the first and then finds a complete VM, which it
/// refuses to touch; exactly one VM results.
#[tokio::test]
async fn two_creates_racing_on_one_name() {
    let w = world().await;
    let tf = &w.tf;
    tf.converge("hsw_network", &Value::Null, &net_config(tf))
        .await;
    let cfg = vm_config(tf);
    let (a, b) = tokio::join!(
        tf.apply("hsw_vm", &Value::Null, &cfg),
        tf.apply("hsw_vm", &Value::Null, &cfg)
    );
    let (won, lost) = match (a, b) {
        (Ok(s), Err(e)) | (Err(e), Ok(s)) => (s, e),
        other => panic!("exactly one create should win: {other:?}"),
    };
    assert_eq!(lost[0].summary, "VM already exists", "{lost:?}");
    // Only the winner defined a domain; the loser waited for the name instead of racing it.
    let defines =
        w.lv.calls()
            .iter()
            .filter(|c| c.starts_with("domain_define"))
            .count();
    assert_eq!(defines, 1, "one definition: {:?}", w.lv.calls());
    assert_eq!(
        w.st.dir_mode(std::path::Path::new("/pool/vms")),
        Some(0o711)
    );
    assert_eq!(
        w.st.dir_mode(std::path::Path::new("/pool/vms/node1")),
        Some(0o711)
    );
    let dom =
        w.lv.domain_lookup(&Key::Name("node1".into()))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(Some(dom.uuid.as_str()), won.get("id").as_str());
    assert!(
        w.st.exists(std::path::Path::new("/pool/vms/node1/root.qcow2"))
            .await
    );
}
