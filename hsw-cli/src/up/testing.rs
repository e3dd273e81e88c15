//! What the unit tests of `up`'s steps share: a deployment in a temporary directory, the default config's
//! session, and an inventory of its planned hosts.

use std::path::PathBuf;

use hsw_core::ansible::StateLayout;

use super::{Ctx, Libvirt, Place, Target, Up, UpArgs, DEFAULT_SANDBOX};
use crate::error::Error;
use crate::inventory::{self, Hosts, Loaded};
use crate::runner::Runner;
use crate::session::Session;

/// A deployment whose state directory is a fresh temporary directory; the repository is this one.
#[derive(Debug)]
pub struct Fixture {
    /// The temporary directory (state in `state/`).
    pub dir: tempfile::TempDir,
    sandbox: Option<String>,
}

impl Fixture {
    /// With a sandbox of this name, or on the host.
    pub fn new(sandbox: Option<&str>) -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            sandbox: sandbox.map(str::to_owned),
        }
    }

    /// The repository root.
    pub fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    /// The context over `runner`.
    pub fn ctx<'r>(&self, runner: &'r dyn Runner) -> Ctx<'r> {
        let state = self.dir.path().join("state");
        Ctx {
            runner,
            repo: Fixture::repo(),
            sandbox: self.sandbox.clone(),
            tf_dir: state.join("terraform"),
            state: StateLayout::new(state),
            terraform: PathBuf::from("terraform"),
            provider_bin: None,
            color: false,
        }
    }

    /// `up`'s default arguments.
    pub fn args(&self) -> UpArgs {
        UpArgs {
            target: Target {
                place: Place {
                    config: None,
                    sandbox: false,
                    no_sandbox: self.sandbox.is_none(),
                    sandbox_name: self
                        .sandbox
                        .clone()
                        .unwrap_or_else(|| DEFAULT_SANDBOX.to_owned()),
                    state_dir: None,
                },
                out: None,
            },
            image_dir: None,
            bundle: None,
            skip_check: true,
            no_verify: false,
            verify_timeout: 1,
            drain_timeout: 1,
            no_snapshot: false,
            snapshot_dir: None,
            allow_replace: false,
            hpc_only: false,
            online: false,
        }
    }

    /// A libvirt whose pool is in the temporary directory.
    pub fn libvirt(&self) -> Libvirt {
        Libvirt {
            uri: "qemu+unix:///system?socket=/run/hsw-sandbox/sb/libvirt/libvirt-sock".into(),
            pool: self.dir.path().join("pool"),
            consoles: Some(PathBuf::from("/var/lib/hsw-sandbox/sb/log/qemu")),
        }
    }
}

/// What a step did: its result and what it wrote.
pub type Ran = (Result<(), Error>, String);

impl Fixture {
    /// Runs `body` over an [`Up`] of the default config with this fixture's arguments (changed by `edit`),
    /// its libvirt already found (as after the sandbox step).
    pub fn with_up<T>(
        &self,
        runner: &dyn Runner,
        edit: impl FnOnce(&mut UpArgs),
        body: impl FnOnce(&mut Up<'_>) -> T,
    ) -> T {
        let ctx = self.ctx(runner);
        let session = fixture::session();
        let mut args = self.args();
        edit(&mut args);
        let mut up = Up::new(&ctx, &session, &args);
        up.libvirt = Some(self.libvirt());
        body(&mut up)
    }

    /// Runs one step with [`Fixture::with_up`]; `then` looks at what the step left in [`Up`].
    pub fn run_step(
        &self,
        runner: &dyn Runner,
        step: super::StepFn,
        n: usize,
        then: impl FnOnce(&Up<'_>),
    ) -> Ran {
        self.with_up(
            runner,
            |_| {},
            |up| {
                let mut out = Vec::new();
                let r = step(up, n, &mut out);
                then(up);
                (r, text(&out))
            },
        )
    }
}

/// Shared values.
pub mod fixture {
    use super::*;

    /// The embedded default's session.
    pub fn session() -> Session {
        crate::session::testing::default_session()
    }

    /// Both clusters' SSH key pairs in the state directory, so that no ssh-keygen runs.
    pub fn keys(ctx: &Ctx<'_>) {
        for c in hsw_core::config::model::CLUSTER_KEYS {
            std::fs::create_dir_all(ctx.state.ssh_dir(c)).unwrap();
            std::fs::write(ctx.state.ssh_private_key(c), "k").unwrap();
            std::fs::write(ctx.state.ssh_public_key(c), "ssh-ed25519 AAAA").unwrap();
        }
    }

    /// `terraform output -json` of the default config's planned hosts.
    pub fn tf_output(d: &hsw_core::ansible::hosts::Deployment) -> String {
        let mut clusters: std::collections::BTreeMap<&str, Vec<serde_json::Value>> =
            std::collections::BTreeMap::new();
        for h in &d.hosts {
            clusters
                .entry(h.cluster())
                .or_default()
                .push(serde_json::json!({
                    "name": h.name, "ip": h.ip.to_string(), "role": h.role.as_str(),
                    "gpu_units": h.gpu_units.iter().map(|u| serde_json::json!({
                        "kind": u.kind.as_str(), "device": u.device, "profile": u.profile,
                    })).collect::<Vec<_>>(),
                }));
        }
        serde_json::json!({"hsw_inventory": {"value": {"clusters": clusters}}}).to_string()
    }

    /// `env` of a sandbox whose directories are under `root` (which the test controls).
    pub fn sandbox_env(root: &std::path::Path) -> String {
        let r = root.display();
        format!(
            "HSW_SANDBOX_URI=qemu+unix:///system\\?socket={r}/run/sock\nHSW_SANDBOX_POOL_DIR={r}/state/pool\n\
             HSW_SANDBOX_RUN_DIR={r}/run\nHSW_SANDBOX_STATE_DIR={r}/state\nHSW_SANDBOX_LOG={r}/state/log/libvirtd.log\n"
        )
    }

    /// A built image in `dir/<key>/`.
    /// Each file holds its own name; the manifest lists their sha256 as `scripts/build-image.sh` writes it.
    /// A complete (empty) Kubernetes bundle in `dir/bundle`, for `--bundle`.
    pub fn bundle(dir: &std::path::Path) -> std::path::PathBuf {
        let d = dir.join("bundle");
        std::fs::create_dir_all(&d).unwrap();
        let m = crate::bundle::Manifest {
            format: crate::bundle::FORMAT,
            kubernetes: "v1.34.4".into(),
            image_repository: crate::bundle::IMAGE_REPOSITORY.into(),
            go: "go1.26.8".into(),
            components: Default::default(),
            binaries: vec![],
            images: vec![],
            build_seconds: Default::default(),
        };
        std::fs::write(d.join("bundle.json"), serde_json::to_string(&m).unwrap()).unwrap();
        d
    }

    pub fn built(dir: &std::path::Path, key: &str) -> crate::image::Image {
        use sha2::{Digest, Sha256};
        let d = dir.join(key);
        std::fs::create_dir_all(&d).unwrap();
        let f = |n: &str| {
            let p = d.join(n);
            std::fs::write(&p, n).unwrap();
            p
        };
        let files: Vec<serde_json::Value> = ["base.qcow2", "vmlinuz", "initrd.img"]
            .iter()
            .map(|n| {
                let sha: String = Sha256::digest(n.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                serde_json::json!({"name": n, "size": n.len(), "sha256": sha})
            })
            .collect();
        let manifest = d.join("manifest.json");
        std::fs::write(
            &manifest,
            serde_json::json!({"key": key, "files": files}).to_string(),
        )
        .unwrap();
        crate::image::Image {
            base: f("base.qcow2"),
            kernel: f("vmlinuz"),
            initrd: f("initrd.img"),
            manifest,
        }
    }

    /// What `scripts/build-image.sh` prints for a built image.
    pub fn built_answer(i: &crate::image::Image) -> String {
        format!(
            "base={}\nkernel={}\ninitrd={}\nmanifest={}\n",
            i.base.display(),
            i.kernel.display(),
            i.initrd.display(),
            i.manifest.display()
        )
    }

    /// The names of the HPC compute nodes of a deployment.
    pub fn computes(d: &hsw_core::ansible::hosts::Deployment) -> Vec<&str> {
        crate::up::verify::compute_names(d)
    }

    /// One line per name, each followed by `suffix` (`sinfo` and `srun` answers).
    pub fn lines(names: &[&str], suffix: &str) -> String {
        names.iter().map(|n| format!("{n}{suffix}\n")).collect()
    }

    /// The default config's planned hosts, with the state of `ctx`.
    pub fn loaded(session: &Session, ctx: &Ctx<'_>) -> Loaded {
        inventory::load(session, &Hosts::Planned, ctx.state.clone(), ctx.runner).unwrap()
    }
}

/// The output a step wrote, as text.
pub fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}
