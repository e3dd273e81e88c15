//! `hsw_mig_instance`, `hsw_mdev` and `hsw_gpus` through the provider's tfplugin6 service, on the simulated GPU
//! backend (a state directory per test) and a fake sysfs tree with a fake kernel: create, empty plan, import,
//! replacement and in-place update, drift, rollback of a half-made instance, refusals at plan and apply time
//! that leave nothing behind, IN_USE, two providers racing for the last slot, destroy leaving nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::path::Path;
use std::sync::Arc;

use harness::Tf;
use hsw_gpu_backend::mdev::fake::FakeTree;
use hsw_gpu_backend::mig::GpuBackend;
use hsw_gpu_backend::simulated::SimulatedBackend;
use hsw_gpu_backend::ErrorKind;
use terraform_provider_hsw::backend::Backend;
use terraform_provider_hsw::framework::Value;
use terraform_provider_hsw::hsw::{provider_schema, HswProvider};

const GPU: &str = "0000:41:00.0";

struct World {
    tf: Tf,
    dir: tempfile::TempDir,
}

impl World {
    fn state_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    fn sim(&self) -> SimulatedBackend {
        SimulatedBackend::open(&self.state_dir(), None).unwrap()
    }

    fn sysfs(&self) -> &Path {
        self.dir.path()
    }
}

async fn provider(dir: &Path) -> Tf {
    let (backend, _, _): (Backend, _, _) = Backend::fake();
    let p = HswProvider::with_factory(Arc::new(move |_cfg| {
        let b = backend.clone();
        Box::pin(async move { Ok(b) })
    }));
    let tf = Tf::over(p);
    let cfg = provider_schema()
        .block
        .null_object()
        .with("uri", "test:///default")
        .with("pool_dir", "/pool")
        .with("gpu_backend", "simulated")
        .with("gpu_state_dir", dir.join("state").display().to_string())
        .with("sysfs_root", dir.display().to_string());
    let d = tf.configure(&cfg).await;
    assert!(d.iter().all(|d| !d.error), "{d:?}");
    tf
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let t = FakeTree::new(dir.path()).unwrap();
    t.add_mdev_parent(
        "0000:41:00.4",
        &[
            ("nvidia-63", "GRID A100-2-10C", 2),
            ("nvidia-62", "GRID A100-1-5C", 4),
        ],
    )
    .unwrap();
    t.add_vendor_vf("0000:c1:00.4", &[(1414, "NVIDIA H200X-1-18C")])
        .unwrap();
    World {
        tf: provider(dir.path()).await,
        dir,
    }
}

fn mig(tf: &Tf, profile: &str, start: Option<i64>) -> Value {
    tf.config(
        "hsw_mig_instance",
        [
            ("gpu", Value::from(GPU)),
            ("profile", Value::from(profile)),
            ("placement_start", Value::from(start)),
        ],
    )
}

fn gis(w: &World) -> usize {
    w.sim().gpu_instances(0).unwrap().len()
}

fn destroy_behind_the_back(w: &World, gi: u32) {
    let any = hsw_gpu_backend::ops::Expect::default();
    hsw_gpu_backend::ops::destroy(&w.sim(), &w.state_dir().join("locks"), GPU, gi, &any).unwrap();
}

fn gi_of(state: &Value) -> u32 {
    u32::try_from(state.get("gi_id").as_i64().unwrap()).unwrap()
}

#[tokio::test]
async fn a_reused_gpu_instance_id_reads_as_gone_and_is_never_destroyed() {
    let w = world().await;
    let tf = &w.tf;
    let cfg = mig(tf, "1g.10gb", Some(0));
    let old = tf.converge("hsw_mig_instance", &Value::Null, &cfg).await;
    // Behind Terraform's back: destroyed, and another instance made that gets the same id, profile and placement.
    destroy_behind_the_back(&w, gi_of(&old));
    let other = hsw_gpu_backend::ops::create(
        &w.sim(),
        &w.state_dir().join("locks"),
        &hsw_gpu_backend::ops::CreateRequest {
            gpu: GPU.into(),
            profile: "1g.10gb".into(),
            placement_start: Some(0),
            compute_slices: None,
        },
        std::time::Duration::ZERO,
    )
    .unwrap();
    assert_eq!(other.gi_id, gi_of(&old));
    assert!(tf.read("hsw_mig_instance", &old).await.unwrap().is_null());
    tf.destroy("hsw_mig_instance", &old).await.unwrap();
    assert_eq!(
        hsw_gpu_backend::ops::read(&w.sim(), GPU, other.gi_id).unwrap(),
        Some(other),
        "the other instance is left alone"
    );
}

#[tokio::test]
async fn a_state_of_another_backend_or_a_missing_gpu_is_an_error_not_a_deletion() {
    let w = world().await;
    let tf = &w.tf;
    let s = tf
        .converge("hsw_mig_instance", &Value::Null, &mig(tf, "1g.10gb", None))
        .await;
    // Made by NVML, read through the simulation (what `auto` falls back to when NVML cannot be opened).
    let nvml = s.clone().with("backend", "nvml");
    let e = tf.read("hsw_mig_instance", &nvml).await.unwrap_err();
    assert_eq!(e[0].summary, "MIG instance of another GPU backend", "{e:?}");
    assert!(e[0].detail.contains("gpu_backend = \"nvml\""), "{e:?}");
    let e = tf.destroy("hsw_mig_instance", &nvml).await.unwrap_err();
    assert_eq!(e[0].summary, "MIG instance of another GPU backend", "{e:?}");
    assert_eq!(gis(&w), 1);
    // A GPU that is not there.
    let gone_gpu = s
        .clone()
        .with("gpu_pci", "0000:99:00.0")
        .with("gpu", "0000:99:00.0");
    let e = tf.read("hsw_mig_instance", &gone_gpu).await.unwrap_err();
    assert_eq!(e[0].summary, "GPU of the MIG instance not found", "{e:?}");
    assert!(e[0].detail.contains("terraform state rm"), "{e:?}");
    let e = tf.destroy("hsw_mig_instance", &gone_gpu).await.unwrap_err();
    assert_eq!(e[0].path, "gpu", "{e:?}");
    assert_eq!(gis(&w), 1);
    tf.destroy("hsw_mig_instance", &s).await.unwrap();
    assert_eq!(gis(&w), 0);
}

#[tokio::test]
async fn mig_instance_lifecycle_import_replace_drift_destroy() {
    let w = world().await;
    let tf = &w.tf;
    let cfg = mig(tf, "3g.40gb", None);
    let plan = tf
        .plan("hsw_mig_instance", &Value::Null, &cfg)
        .await
        .unwrap();
    assert!(plan.planned.get("gi_id").is_unknown());
    let state = tf.converge("hsw_mig_instance", &Value::Null, &cfg).await;
    assert_eq!(state.get("placement_start").as_i64(), Some(0));
    assert_eq!(state.get("placement_size").as_i64(), Some(4));
    assert_eq!(state.get("compute_profile").as_str(), Some("3c"));
    assert_eq!(state.get("backend").as_str(), Some("simulated"));
    assert!(state
        .get("mig_device_uuid")
        .as_str()
        .unwrap()
        .starts_with("MIG-"));
    let id = state.get("id").as_str().unwrap().to_owned();
    assert_eq!(
        id,
        format!("{GPU}/{}", state.get("gi_id").as_i64().unwrap())
    );

    // Import gives the created state.
    assert_eq!(tf.import("hsw_mig_instance", &id).await.unwrap(), state);
    assert!(tf
        .import("hsw_mig_instance", "0000:41:00.0/99")
        .await
        .is_err());
    assert!(tf.import("hsw_mig_instance", "nonsense").await.is_err());

    // Any change replaces: a different profile.
    let cfg2 = mig(tf, "2g.20gb", Some(4));
    let plan = tf.plan("hsw_mig_instance", &state, &cfg2).await.unwrap();
    assert!(plan.requires_replace.contains(&"profile".to_owned()));
    let state2 = tf.converge("hsw_mig_instance", &state, &cfg2).await;
    assert_eq!(gis(&w), 1, "the old instance is gone");
    assert_eq!(state2.get("placement_start").as_i64(), Some(4));

    // Drift: destroyed behind Terraform's back → read says gone → created again.
    let sim = w.sim();
    let gi = u32::try_from(state2.get("gi_id").as_i64().unwrap()).unwrap();
    destroy_behind_the_back(&w, gi);
    assert!(tf
        .read("hsw_mig_instance", &state2)
        .await
        .unwrap()
        .is_null());
    let state3 = tf.converge("hsw_mig_instance", &Value::Null, &cfg2).await;
    assert_eq!(gis(&w), 1);

    // Drift: only the compute instance destroyed → the instance is replaced.
    let gi = u32::try_from(state3.get("gi_id").as_i64().unwrap()).unwrap();
    sim.destroy_compute_instance(0, gi, 0).unwrap();
    let read = tf.read("hsw_mig_instance", &state3).await.unwrap();
    let plan = tf.plan("hsw_mig_instance", &read, &cfg2).await.unwrap();
    assert!(
        plan.requires_replace.contains(&"profile".to_owned()),
        "{plan:?}"
    );
    let state4 = tf.converge("hsw_mig_instance", &read, &cfg2).await;
    assert_eq!(gis(&w), 1);

    tf.destroy("hsw_mig_instance", &state4).await.unwrap();
    assert_eq!(gis(&w), 0, "nothing left");
    // Destroying what is gone succeeds.
    tf.destroy("hsw_mig_instance", &state4).await.unwrap();
}

#[tokio::test]
async fn impossible_placements_are_refused_and_never_half_made() {
    let w = world().await;
    let tf = &w.tf;
    // Static, at plan time: a profile of another model, a start not legal for the profile.
    let e = tf
        .plan("hsw_mig_instance", &Value::Null, &mig(tf, "1g.5gb", None))
        .await
        .unwrap_err();
    assert_eq!(e[0].path, "profile", "{e:?}");
    assert!(e[0].detail.contains("Did you mean"), "{e:?}");
    let e = tf
        .plan(
            "hsw_mig_instance",
            &Value::Null,
            &mig(tf, "2g.20gb", Some(6)),
        )
        .await
        .unwrap_err();
    assert_eq!(e[0].path, "placement_start", "{e:?}");
    let e = tf
        .plan(
            "hsw_mig_instance",
            &Value::Null,
            &mig(tf, "1g.10gb", None).with("gpu", "0000:99:00.0"),
        )
        .await
        .unwrap_err();
    assert_eq!(e[0].path, "gpu", "{e:?}");

    // At apply time: 3g at 0 blocks a 4g at 0 (overlap) and leaves nothing new.
    let a = tf
        .converge(
            "hsw_mig_instance",
            &Value::Null,
            &mig(tf, "3g.40gb", Some(0)),
        )
        .await;
    let e = tf
        .apply(
            "hsw_mig_instance",
            &Value::Null,
            &mig(tf, "4g.40gb", Some(0)),
        )
        .await
        .unwrap_err();
    assert_eq!(e[0].summary, "Not enough room on the GPU", "{e:?}");
    assert_eq!(gis(&w), 1);
    // No free placement left for a second 4g either way.
    let e = tf
        .apply("hsw_mig_instance", &Value::Null, &mig(tf, "4g.40gb", None))
        .await
        .unwrap_err();
    assert!(e[0].detail.contains("no free placement"), "{e:?}");
    tf.destroy("hsw_mig_instance", &a).await.unwrap();
    assert_eq!(gis(&w), 0);
}

#[tokio::test]
async fn a_create_waits_for_the_room_an_instance_destroyed_in_the_same_apply_frees() {
    // A re-planned GPU (3g at 4 becomes 1g at 6): Terraform destroys the old instance and creates the new one
    // at the same time. The create starts first and must wait, not fail on the overlap.
    let w = world().await;
    let tf = &w.tf;
    let old = tf
        .converge(
            "hsw_mig_instance",
            &Value::Null,
            &mig(tf, "3g.40gb", Some(4)),
        )
        .await;
    let cfg = mig(tf, "1g.10gb", Some(6));
    let (made, gone) = tokio::join!(tf.apply("hsw_mig_instance", &Value::Null, &cfg), async {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        tf.destroy("hsw_mig_instance", &old).await
    });
    gone.unwrap();
    let made = made.unwrap();
    assert_eq!(made.get("placement_start").as_i64(), Some(6), "{made:?}");
    assert_eq!(gis(&w), 1);
    // Room that nothing frees: refused after the backend's wait (2 s in tests), saying it waited.
    let t = std::time::Instant::now();
    let e = tf
        .apply(
            "hsw_mig_instance",
            &Value::Null,
            &mig(tf, "1g.10gb", Some(6)),
        )
        .await
        .unwrap_err();
    assert!(
        t.elapsed() >= std::time::Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(e[0].summary, "Not enough room on the GPU", "{e:?}");
    assert!(e[0].detail.contains("waited 2 s"), "{e:?}");
    assert_eq!(gis(&w), 1);
    tf.destroy("hsw_mig_instance", &made).await.unwrap();
}

#[tokio::test]
async fn a_failed_compute_instance_rolls_back() {
    let w = world().await;
    let tf = &w.tf;
    w.sim()
        .inject_failure(
            GPU,
            "create_compute_instance",
            ErrorKind::InsufficientResources,
        )
        .unwrap();
    let e = tf
        .apply("hsw_mig_instance", &Value::Null, &mig(tf, "1g.10gb", None))
        .await
        .unwrap_err();
    assert!(e[0].detail.contains("nothing is left half-made"), "{e:?}");
    assert_eq!(gis(&w), 0);
    // The next try works.
    let s = tf
        .converge("hsw_mig_instance", &Value::Null, &mig(tf, "1g.10gb", None))
        .await;
    tf.destroy("hsw_mig_instance", &s).await.unwrap();
}

#[tokio::test]
async fn mig_off_or_pending_is_refused_with_the_remedy_and_in_use_is_kept() {
    let w = world().await;
    let tf = &w.tf;
    let s = tf
        .converge("hsw_mig_instance", &Value::Null, &mig(tf, "1g.10gb", None))
        .await;
    let gi = u32::try_from(s.get("gi_id").as_i64().unwrap()).unwrap();
    w.sim().set_holder(GPU, gi, Some("VM hpc-node1")).unwrap();
    let e = tf.destroy("hsw_mig_instance", &s).await.unwrap_err();
    assert_eq!(e[0].summary, "GPU resource in use");
    assert!(e[0].detail.contains("VM hpc-node1"), "{e:?}");
    assert_eq!(gis(&w), 1);
    w.sim().set_holder(GPU, gi, None).unwrap();
    tf.destroy("hsw_mig_instance", &s).await.unwrap();

    w.sim().set_mig_mode(GPU, false, false).unwrap();
    let e = tf
        .plan("hsw_mig_instance", &Value::Null, &mig(tf, "1g.10gb", None))
        .await
        .unwrap_err();
    assert!(e[0].detail.contains("nvidia-smi -i 0 -mig 1"), "{e:?}");
    w.sim().set_mig_mode(GPU, false, true).unwrap();
    let e = tf
        .plan("hsw_mig_instance", &Value::Null, &mig(tf, "1g.10gb", None))
        .await
        .unwrap_err();
    assert_eq!(e[0].summary, "GPU reset required", "{e:?}");
    assert!(e[0].detail.contains("nvidia-smi -i 0 -r"), "{e:?}");
}

#[tokio::test]
async fn two_providers_racing_for_the_last_slot_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let a = provider(dir.path()).await;
    let b = provider(dir.path()).await;
    // 4g@0 + 2g@4 leave one 1g slot (slice 6).
    a.converge("hsw_mig_instance", &Value::Null, &mig(&a, "4g.40gb", None))
        .await;
    a.converge("hsw_mig_instance", &Value::Null, &mig(&a, "2g.20gb", None))
        .await;
    let (ca, cb) = (mig(&a, "1g.10gb", None), mig(&b, "1g.10gb", None));
    let (ra, rb) = tokio::join!(
        a.apply("hsw_mig_instance", &Value::Null, &ca),
        b.apply("hsw_mig_instance", &Value::Null, &cb),
    );
    let (ok, err): (Vec<_>, Vec<_>) = [ra, rb].into_iter().partition(Result::is_ok);
    assert_eq!(ok.len(), 1);
    let e = err.into_iter().next().unwrap().unwrap_err();
    assert_eq!(e[0].summary, "Not enough room on the GPU", "{e:?}");
    let sim = SimulatedBackend::open(&dir.path().join("state"), None).unwrap();
    assert_eq!(sim.gpu_instances(0).unwrap().len(), 3);
}

fn mdev(tf: &Tf, parent: &str, ty: &str, persistent: Option<bool>) -> Value {
    tf.config(
        "hsw_mdev",
        [
            ("parent", Value::from(parent)),
            ("type", Value::from(ty)),
            ("persistent", Value::from(persistent)),
        ],
    )
}

#[tokio::test]
async fn mdev_lifecycle_persistence_drift_and_vendor_vfio() {
    let w = world().await;
    let tf = &w.tf;
    let cfg = mdev(tf, "41:00.4", "GRID A100-2-10C", None);
    let state = tf.converge("hsw_mdev", &Value::Null, &cfg).await;
    let uuid = state.get("uuid").as_str().unwrap().to_owned();
    assert_eq!(state.get("id").as_str(), Some(uuid.as_str()));
    assert_eq!(state.get("type_id").as_str(), Some("nvidia-63"));
    assert_eq!(state.get("persistent").as_bool(), Some(false));
    let dev = w.sysfs().join("sys/bus/mdev/devices").join(&uuid);
    assert!(dev.exists());

    // Import by UUID: same state, except the parent is in its canonical form.
    let imported = tf.import("hsw_mdev", &uuid).await.unwrap();
    assert_eq!(imported, state.clone().with("parent", "0000:41:00.4"));

    // persistent changes in place (mdevctl's file appears).
    let cfg2 = mdev(tf, "41:00.4", "GRID A100-2-10C", Some(true));
    let plan = tf.plan("hsw_mdev", &state, &cfg2).await.unwrap();
    assert!(plan.requires_replace.is_empty());
    let state2 = tf.converge("hsw_mdev", &state, &cfg2).await;
    assert_eq!(state2.get("uuid"), state.get("uuid"));
    let persisted = w.sysfs().join("etc/mdevctl.d/0000:41:00.4").join(&uuid);
    let text = std::fs::read_to_string(&persisted).unwrap();
    assert!(text.contains("\"mdev_type\": \"nvidia-63\""), "{text}");

    // Removed behind Terraform's back → recreated (with the same UUID, which the state holds).
    std::fs::write(dev.join("remove"), "1").unwrap();
    hsw_gpu_backend::mdev::fake::settle(w.sysfs());
    assert!(tf.read("hsw_mdev", &state2).await.unwrap().is_null());
    let cfg3 = cfg2.clone().with("uuid", uuid.clone());
    let state3 = tf.converge("hsw_mdev", &Value::Null, &cfg3).await;
    assert!(dev.exists());

    // A type is matched by name; an unknown one is refused naming the offered ones.
    let e = tf
        .apply(
            "hsw_mdev",
            &Value::Null,
            &mdev(tf, "0000:41:00.4", "nvidia-63", None),
        )
        .await
        .unwrap_err();
    assert!(e[0].detail.contains("GRID A100-1-5C"), "{e:?}");
    assert_eq!(e[0].path, "type");

    tf.destroy("hsw_mdev", &state3).await.unwrap();
    assert!(!dev.exists() && !persisted.exists(), "nothing left");

    // Vendor VFIO: the VF is the vGPU.
    let vcfg = mdev(tf, "0000:c1:00.4", "NVIDIA H200X-1-18C", None);
    let v = tf.converge("hsw_mdev", &Value::Null, &vcfg).await;
    assert_eq!(v.get("id").as_str(), Some("0000:c1:00.4"));
    assert!(v.get("uuid").is_null());
    assert_eq!(v.get("flavor").as_str(), Some("vendor_vfio"));
    let cur = w
        .sysfs()
        .join("sys/bus/pci/devices/0000:c1:00.4/nvidia/current_vgpu_type");
    assert_eq!(std::fs::read_to_string(&cur).unwrap().trim(), "1414");
    assert_eq!(tf.import("hsw_mdev", "0000:c1:00.4").await.unwrap(), v);
    tf.destroy("hsw_mdev", &v).await.unwrap();
    assert_eq!(std::fs::read_to_string(&cur).unwrap().trim(), "0");
}

#[tokio::test]
async fn a_mig_backed_vgpu_finds_its_parent_vf_from_the_gpu_instance() {
    let w = world().await;
    let tf = &w.tf;
    let gi = tf
        .converge("hsw_mig_instance", &Value::Null, &mig(tf, "2g.20gb", None))
        .await;
    let id = gi.get("id").as_str().unwrap().to_owned();
    let cfg = |ty: &str| {
        mdev(tf, "unused", ty, None)
            .with("parent", Value::Null)
            .with("gpu_instance", id.clone())
    };
    // No VFs yet (SR-IOV off): the remedy, at gpu_instance.
    let e = tf
        .apply("hsw_mdev", &Value::Null, &cfg("A100-2-10C"))
        .await
        .unwrap_err();
    assert_eq!(e[0].path, "gpu_instance", "{e:?}");
    assert!(
        e[0].detail.contains("sriov-manage -e 0000:41:00.0"),
        "{e:?}"
    );

    hsw_gpu_backend::vf::fake::add_vfs(w.sysfs(), GPU, &["0000:41:00.4"]).unwrap();
    let plan = tf
        .plan("hsw_mdev", &Value::Null, &cfg("A100-2-10C"))
        .await
        .unwrap();
    assert!(plan.planned.get("parent").is_unknown(), "found at apply");
    // The catalog's name, without the driver's GRID prefix.
    let v = tf
        .converge("hsw_mdev", &Value::Null, &cfg("A100-2-10C"))
        .await;
    assert_eq!(v.get("parent").as_str(), Some("0000:41:00.4"));
    assert_eq!(v.get("type").as_str(), Some("A100-2-10C"));
    assert_eq!(v.get("gpu_instance").as_str(), Some(id.as_str()));
    // The only VF carries a vGPU now: a second one has no parent.
    let e = tf
        .apply("hsw_mdev", &Value::Null, &cfg("A100-1-5C"))
        .await
        .unwrap_err();
    assert_eq!(e[0].summary, "Not enough room on the GPU", "{e:?}");
    // Both, or neither, of parent and gpu_instance: refused.
    let both = cfg("A100-2-10C").with("parent", "0000:41:00.4");
    let d = tf.validate("hsw_mdev", &both).await;
    assert!(
        d.iter()
            .any(|d| d.detail.contains("exactly one of parent and gpu_instance")),
        "{d:?}"
    );
    tf.destroy("hsw_mdev", &v).await.unwrap();
    tf.destroy("hsw_mig_instance", &gi).await.unwrap();
}

#[tokio::test]
async fn gpus_data_source_reports_the_inventory_and_backend() {
    let w = world().await;
    let tf = &w.tf;
    let s = tf
        .converge(
            "hsw_mig_instance",
            &Value::Null,
            &mig(tf, "1g.10gb", Some(3)),
        )
        .await;
    let cfg = tf.schema("data.hsw_gpus").block.null_object();
    let v = tf.data("hsw_gpus", &cfg).await.unwrap();
    assert_eq!(v.get("backend").as_str(), Some("simulated"));
    let dev = &v.get("devices").as_slice().unwrap()[0];
    assert_eq!(dev.get("model").as_str(), Some("a100-80gb"));
    assert_eq!(dev.get("mig_enabled").as_bool(), Some(true));
    assert_eq!(dev.get("profiles").as_slice().unwrap().len(), 7);
    let inst = &dev.get("instances").as_slice().unwrap()[0];
    assert_eq!(inst.get("placement_start").as_i64(), Some(3));
    assert_eq!(inst.get("mig_device_uuid"), s.get("mig_device_uuid"));
    assert_eq!(v.get("vgpu_types").as_slice().unwrap().len(), 3);
    assert!(v
        .get("json")
        .as_str()
        .unwrap()
        .contains("\"backend\": \"simulated\""));
}
