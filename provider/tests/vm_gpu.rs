//! `hsw_vm` for GPU VMs through the provider's tfplugin6 service, over the fake libvirt, the fake pool directory
//! and a fixture sysfs tree: machine and firmware (defaults unchanged; q35 with its 64-bit MMIO window and OVMF with
//! a VM's own NVRAM), vGPU and passthrough host devices, and passthrough refused at plan and at apply while the
//! GPU's IOMMU group holds a device the host still drives.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::path::{Path, PathBuf};

use harness::Tf;
use hsw_gpu_backend::iommu::fake::add_pci_device;
use terraform_provider_hsw::backend::libvirt::fake::FakeLibvirt;
use terraform_provider_hsw::backend::libvirt::{Key, Libvirt as _};
use terraform_provider_hsw::backend::storage::{FakeFile, FakeStorage};
use terraform_provider_hsw::backend::Backend;
use terraform_provider_hsw::framework::Value;
use terraform_provider_hsw::hsw::model::vm::OVMF_VARS;

const BASE: &str = "/pool/images/debian-12.qcow2";
const MDEV: &str = "c2177883-f1bb-47f0-914d-32a22e3a8804";

struct World {
    tf: Tf,
    lv: FakeLibvirt,
    st: FakeStorage,
    sysfs: tempfile::TempDir,
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
    let sysfs = tempfile::tempdir().unwrap();
    let root = sysfs.path().display().to_string();
    let tf = Tf::configured(backend, "/pool", &[("sysfs_root", &root)]).await;
    World { tf, lv, st, sysfs }
}

fn vm(tf: &Tf, name: &str, extra: &[(&str, Value)], hostdev: (&str, &str)) -> Value {
    let mut v = tf.config(
        "hsw_vm",
        [
            ("name", Value::from(name)),
            ("vcpu", 2i64.into()),
            ("memory", 1024i64.into()),
            ("base_image", BASE.into()),
            (
                "hostdev",
                Value::List(vec![Value::object([
                    ("pci", Value::Null),
                    ("mdev", Value::Null),
                ])
                .with(hostdev.0, hostdev.1)]),
            ),
        ],
    );
    for (k, x) in extra {
        v.set(k, x.clone());
    }
    v
}

async fn xml(lv: &FakeLibvirt, name: &str) -> String {
    lv.domain_lookup(&Key::Name(name.into()))
        .await
        .unwrap()
        .unwrap()
        .xml
}

fn gpu_attrs() -> [(&'static str, Value); 2] {
    [("machine", "q35".into()), ("firmware", "efi".into())]
}

#[tokio::test]
async fn defaults_keep_pc_and_bios() {
    let w = world().await;
    let s =
        w.tf.converge(
            "hsw_vm",
            &Value::Null,
            &vm(&w.tf, "plain", &[], ("mdev", MDEV)),
        )
        .await;
    assert_eq!(s.get("machine").as_str(), Some("pc"));
    assert_eq!(s.get("firmware").as_str(), Some("bios"));
    assert!(s.get("mmio64_gib").is_null());
    let x = xml(&w.lv, "plain").await;
    assert!(
        x.contains("<type>hvm</type>") && !x.contains("loader") && !x.contains("pcihole64"),
        "{x}"
    );
}

#[tokio::test]
async fn a_vgpu_vm_gets_q35_ovmf_its_own_nvram_and_the_mmio_window() {
    let w = world().await;
    let tf = &w.tf;
    let cfg = vm(tf, "gpu1", &gpu_attrs(), ("mdev", MDEV));
    // Without Debian's OVMF: refused at the firmware, with the package to install, and nothing left.
    let e = tf.apply("hsw_vm", &Value::Null, &cfg).await.unwrap_err();
    assert_eq!(e[0].path, "firmware", "{e:?}");
    assert!(e[0].detail.contains("install the ovmf package"), "{e:?}");
    assert!(!w
        .st
        .snapshot()
        .keys()
        .any(|p| p.starts_with("/pool/vms/gpu1")));

    w.st.put(OVMF_VARS, FakeFile::Text("vars".into()));
    let s = tf.converge("hsw_vm", &Value::Null, &cfg).await;
    assert_eq!(
        w.st.snapshot()[&PathBuf::from("/pool/vms/gpu1/nvram.fd")],
        FakeFile::Text("vars".into()),
        "the NVRAM is the VM's own copy of the template"
    );
    let x = xml(&w.lv, "gpu1").await;
    for want in [
        "<type machine='q35'>hvm</type>",
        "<loader readonly='yes' secure='no' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>",
        "<nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/pool/vms/gpu1/nvram.fd</nvram>",
        "<pcihole64 unit='KiB'>67108864</pcihole64>",
        "<hostdev mode='subsystem' type='mdev' model='vfio-pci' managed='no'>",
    ] {
        assert!(x.contains(want), "{want}\n{x}");
    }
    assert_eq!(tf.import("hsw_vm", "gpu1").await.unwrap(), s);

    // The window changes in place (shutdown, redefinition, start); machine and firmware replace the VM.
    let bigger = cfg.clone().with("mmio64_gib", 256i64);
    let plan = tf.plan("hsw_vm", &s, &bigger).await.unwrap();
    assert!(plan.requires_replace.is_empty(), "{plan:?}");
    let s2 = tf.converge("hsw_vm", &s, &bigger).await;
    assert!(xml(&w.lv, "gpu1")
        .await
        .contains("<pcihole64 unit='KiB'>268435456</pcihole64>"));
    let plan = tf
        .plan("hsw_vm", &s2, &bigger.clone().with("firmware", "bios"))
        .await
        .unwrap();
    assert!(
        plan.requires_replace.contains(&"firmware".to_owned()),
        "{plan:?}"
    );

    tf.destroy("hsw_vm", &s2).await.unwrap();
    assert!(!w
        .st
        .snapshot()
        .keys()
        .any(|p| p.starts_with("/pool/vms/gpu1")));
}

#[tokio::test]
async fn machine_firmware_and_window_are_checked() {
    let w = world().await;
    let tf = &w.tf;
    let bad = vm(
        tf,
        "x",
        &[
            ("machine", "virt".into()),
            ("firmware", "uefi".into()),
            ("mmio64_gib", 48i64.into()),
        ],
        ("mdev", MDEV),
    );
    let paths: Vec<String> = tf
        .validate("hsw_vm", &bad)
        .await
        .into_iter()
        .map(|d| d.path)
        .collect();
    assert_eq!(paths, ["machine", "firmware", "mmio64_gib"]);
    let on_pc = vm(tf, "x", &[("mmio64_gib", 64i64.into())], ("mdev", MDEV));
    let d = tf.validate("hsw_vm", &on_pc).await;
    assert_eq!(d[0].summary, "Needs q35", "{d:?}");
}

fn group(root: &Path, audio_driver: &str) {
    add_pci_device(root, "0000:41:00.0", 7, Some("nvidia")).unwrap();
    add_pci_device(root, "0000:41:00.1", 7, Some(audio_driver)).unwrap();
}

#[tokio::test]
async fn passthrough_is_refused_while_the_iommu_group_is_shared_with_the_host() {
    let w = world().await;
    let tf = &w.tf;
    w.st.put(OVMF_VARS, FakeFile::Text("vars".into()));
    let cfg = vm(tf, "gpu2", &gpu_attrs(), ("pci", "0000:41:00.0"));
    group(w.sysfs.path(), "snd_hda_intel");
    let e = tf.plan("hsw_vm", &Value::Null, &cfg).await.unwrap_err();
    assert_eq!(e[0].summary, "IOMMU group shared with the host", "{e:?}");
    assert_eq!(e[0].path, "hostdev[0].pci", "{e:?}");
    assert!(
        e[0].detail
            .contains("0000:41:00.1 (bound to snd_hda_intel)"),
        "{e:?}"
    );

    // The audio function handed to vfio-pci: planned; the host changes before the apply: refused there too.
    group(w.sysfs.path(), "vfio-pci");
    let plan = tf.plan("hsw_vm", &Value::Null, &cfg).await.unwrap();
    group(w.sysfs.path(), "snd_hda_intel");
    let e = tf
        .apply_raw("hsw_vm", &Value::Null, &plan.planned, &cfg)
        .await
        .unwrap_err();
    assert_eq!(e[0].summary, "IOMMU group shared with the host", "{e:?}");
    assert!(w
        .lv
        .domain_lookup(&Key::Name("gpu2".into()))
        .await
        .unwrap()
        .is_none());

    group(w.sysfs.path(), "vfio-pci");
    let s = tf.converge("hsw_vm", &Value::Null, &cfg).await;
    let x = xml(&w.lv, "gpu2").await;
    assert!(
        x.contains("<hostdev mode='subsystem' type='pci' managed='yes'>")
            && x.contains("<address domain='0x0000' bus='0x41' slot='0x00' function='0x0'/>"),
        "{x}"
    );
    tf.destroy("hsw_vm", &s).await.unwrap();
}

#[tokio::test]
async fn a_vendor_vfio_vgpu_is_an_unmanaged_pci_device() {
    let w = world().await;
    let tf = &w.tf;
    w.st.put(OVMF_VARS, FakeFile::Text("vars".into()));
    let mut cfg = vm(tf, "gpu3", &gpu_attrs(), ("pci", "0000:c1:00.4"));
    if let Some(Value::List(h)) = cfg.get_mut("hostdev") {
        h[0].set("managed", false);
    }
    let s = tf.converge("hsw_vm", &Value::Null, &cfg).await;
    assert_eq!(
        s.get("hostdev").as_slice().unwrap()[0]
            .get("managed")
            .as_bool(),
        Some(false)
    );
    let x = xml(&w.lv, "gpu3").await;
    assert!(
        x.contains("<hostdev mode='subsystem' type='pci' managed='no'>"),
        "{x}"
    );
    assert_eq!(tf.import("hsw_vm", "gpu3").await.unwrap(), s);
    // A passed-through GPU is managed unless told otherwise.
    let p = vm(tf, "gpu4", &gpu_attrs(), ("pci", "0000:41:00.0"));
    let plan = tf.plan("hsw_vm", &Value::Null, &p).await.unwrap();
    assert_eq!(
        plan.planned.get("hostdev").as_slice().unwrap()[0]
            .get("managed")
            .as_bool(),
        Some(true)
    );
    // managed means nothing for an mdev.
    let mut m = vm(tf, "gpu5", &[], ("mdev", MDEV));
    if let Some(Value::List(h)) = m.get_mut("hostdev") {
        h[0].set("managed", true);
    }
    let d = tf.validate("hsw_vm", &m).await;
    assert_eq!(d[0].path, "hostdev[0].managed", "{d:?}");
}
