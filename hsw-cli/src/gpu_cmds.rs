//! `hsw-cli gpu ...`: GPU planning from cluster.yaml (`plan`, with the optional `mdev_map.json`), discovery
//! through the GPU backends (`discover`), and removal of MIG instances and vGPUs no Terraform state accounts for
//! (`cleanup`).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use hsw_core::config;
use hsw_core::gpu::GpuPlan;
use hsw_core::layout::{unit_id, Attach, Layout, UnitKind, UnitTarget};
use hsw_gpu_backend::inventory::{discover as discover_inventory, render_text, Inventory};
use hsw_gpu_backend::mdev::{MdevBackend, SysfsMdev, SysfsRoot, Vgpu};
use hsw_gpu_backend::ops::{self, Choice, Opened, Paths};
use hsw_gpu_backend::simulated::devices_from_config;
use sha2::{Digest, Sha256};

use crate::session::read_config;
use crate::{exit, Format};

/// The default state directory of the simulated GPU backend (what the provider uses with its default pool).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/hsw/state";

/// `hsw-cli gpu`.
#[derive(Debug, Subcommand)]
pub enum GpuCommand {
    /// Print which MIG instance (device, profile, placement) and which whole GPU each cluster gets, the VM that
    /// gets it and how (MIG-backed vGPU and its type, passthrough, or simulated).
    Plan(PlanArgs),
    /// Print the GPUs the backend sees: MIG mode, profiles with placements, instances, vGPU types and vGPUs.
    Discover(DiscoverArgs),
    /// List MIG instances and vGPUs that no Terraform state accounts for, save their description, and remove them
    /// with --yes.
    Cleanup(CleanupArgs),
}

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// NVML when it answers with a GPU, else simulated.
    Auto,
    /// The NVIDIA driver.
    Nvml,
    /// The simulated GPUs (state in --state-dir).
    Simulated,
}

impl BackendArg {
    fn choice(self) -> Choice {
        match self {
            BackendArg::Auto => Choice::Auto,
            BackendArg::Nvml => Choice::Nvml,
            BackendArg::Simulated => Choice::Simulated,
        }
    }
}

/// Where the backends keep their files (shared by `discover` and `cleanup`).
#[derive(Debug, Args)]
pub struct BackendArgs {
    /// Which GPU backend answers.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,
    /// The simulated backend's state directory (the provider's `gpu_state_dir`).
    #[arg(long, env = "HSW_GPU_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// The root of sysfs and /etc for vGPUs (like mdevctl's MDEVCTL_ENV_ROOT).
    #[arg(long, env = "HSW_SYSFS_ROOT", default_value = "/")]
    sysfs_root: PathBuf,
}

/// `hsw-cli gpu discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// A cluster definition whose `gpu_allocation.devices` seed the simulated backend's GPUs.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    backend: BackendArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// `hsw-cli gpu cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Terraform state or plan as JSON (`terraform show -json`, `terraform.tfstate`, `terraform show -json
    /// PLANFILE`); repeatable. What they hold is kept.
    #[arg(long = "state")]
    states: Vec<PathBuf>,
    /// Remove what no state accounts for (without it, nothing changes).
    #[arg(long)]
    yes: bool,
    /// Where the description of what was found is saved (`cleanup-<time>.json`).
    #[arg(long, default_value = "output")]
    output_dir: PathBuf,
    #[command(flatten)]
    backend: BackendArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// `hsw-cli gpu plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The cluster definition (the embedded default when absent).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also write the mapping with metadata (config sha256, time, backend, device UUIDs where known) to PATH
    /// (default `output/mdev_map.json`).
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "output/mdev_map.json")]
    write_map: Option<PathBuf>,
    /// The backend asked for device UUIDs and existing instances for --write-map.
    #[command(flatten)]
    backend: BackendArgs,
}

/// Runs a `gpu` subcommand.
pub fn run(cmd: &GpuCommand, out: &mut dyn Write) -> u8 {
    match cmd {
        GpuCommand::Plan(args) => plan(args, out),
        GpuCommand::Discover(args) => discover(args, out),
        GpuCommand::Cleanup(args) => cleanup(args, out),
    }
}

/// Reads a config (or the embedded default) into its name, text and model: the GPU commands plan and seed from a model that
/// deserializes even when a semantic rule fails (`validate` reports those). On failure the diagnostics or the
/// error are printed and the exit code is returned.
fn load_model(file: Option<&Path>) -> Result<(String, String, config::ClusterConfig), u8> {
    let (name, source) = read_config(file).map_err(|e| {
        eprintln!("error: {e}");
        exit::CANNOT_RUN
    })?;
    let validated = config::validate_str(&source);
    match validated.valid_config().cloned() {
        Some(cfg) => Ok((name, source, cfg)),
        None => {
            eprint!("{}", validated.report.render_text(&name, &source, false));
            Err(exit::INVALID)
        }
    }
}

fn plan(args: &PlanArgs, out: &mut dyn Write) -> u8 {
    let (name, source, cfg) = match load_model(args.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let cfg = &cfg;
    let result = config::gpu::plan(cfg);
    let written = match (&result, args.format) {
        (Ok(plan), Format::Json) => {
            let v = plan_json(&name, cfg, plan);
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            )
        }
        (Ok(plan), Format::Text) => out.write_all(plan_text(&name, cfg, plan).as_bytes()),
        (Err(e), Format::Json) => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"config": name, "error": e.to_string()})
            )
            .unwrap_or_default()
        ),
        (Err(e), Format::Text) => writeln!(out, "no GPU plan exists for {name}: {e}"),
    };
    if written.is_err() {
        return exit::CANNOT_RUN;
    }
    let Ok(plan) = result else {
        return exit::INVALID;
    };
    if let Some(path) = &args.write_map {
        let map = mdev_map(&name, &source, cfg, &plan, &args.backend);
        if let Err(e) = write_json(path, &map) {
            eprintln!("error: {e}");
            return exit::CANNOT_RUN;
        }
        eprintln!("wrote {}", path.display());
    }
    exit::OK
}

/// Where a planned unit goes: its target in the layout.
fn target<'a>(
    layout: &'a Layout,
    kind: UnitKind,
    device: &str,
    placement_start: Option<u32>,
) -> Option<&'a UnitTarget> {
    layout.target(&unit_id(kind, device, placement_start))
}

/// `gpu plan --format json`: each instance and whole GPU with the VM that gets it and how.
fn plan_json(name: &str, cfg: &config::model::ClusterConfig, plan: &GpuPlan) -> serde_json::Value {
    let layout = Layout::new(cfg, plan);
    serde_json::json!({
        "config": name,
        "instances": plan.instances.iter().map(|i| {
            let t = target(&layout, UnitKind::Mig, &i.device, Some(i.placement_start));
            serde_json::json!({
                "cluster": i.cluster,
                "device": i.device,
                "profile": i.profile,
                "profile_id": i.profile_id,
                "placement_start": i.placement_start,
                "placement_size": i.placement_size,
                "vm": t.and_then(|t| t.vm.clone()),
                "attach": t.map(|t| t.attach),
                "vgpu_type": t.and_then(|t| t.vgpu_type.clone()),
            })
        }).collect::<Vec<_>>(),
        "whole_gpus": plan.whole_gpus.iter().map(|w| {
            let t = target(&layout, UnitKind::Whole, &w.device, None);
            serde_json::json!({
                "cluster": w.cluster,
                "device": w.device,
                "vm": t.and_then(|t| t.vm.clone()),
                "attach": t.map(|t| t.attach),
            })
        }).collect::<Vec<_>>(),
    })
}

/// `-> <vm> (vgpu <type>)`, `-> <vm> (passthrough)`, `-> <vm> (simulated; on real GPUs: ...)`, or `-> no VM`.
fn target_text(kind: UnitKind, t: Option<&UnitTarget>) -> String {
    let Some(t) = t else {
        return "-> no VM".into();
    };
    let vm = t.vm.as_deref().unwrap_or("no VM");
    let real = match (kind, &t.vgpu_type) {
        (UnitKind::Whole, _) => "passthrough".to_owned(),
        (_, Some(ty)) => format!("vgpu {ty}"),
        (_, None) => "vgpu of an unknown type".to_owned(),
    };
    match t.attach {
        Attach::Simulated => format!("-> {vm} (simulated; on real GPUs: {real})"),
        Attach::Vgpu | Attach::Passthrough => format!("-> {vm} ({real})"),
    }
}

/// `gpu plan` as text: one line per unit, with the VM that gets it and how.
fn plan_text(name: &str, cfg: &config::model::ClusterConfig, plan: &GpuPlan) -> String {
    let layout = Layout::new(cfg, plan);
    let mut s = format!("GPU plan for {name}\n");
    if plan.instances.is_empty() && plan.whole_gpus.is_empty() {
        s.push_str("  no GPU units requested\n");
    }
    for i in &plan.instances {
        let t = target(&layout, UnitKind::Mig, &i.device, Some(i.placement_start));
        s.push_str(&format!(
            "  {:<6} MIG  {:<10} {:<12} slices {}..{}  {}\n",
            i.cluster,
            i.device,
            i.profile,
            i.placement_start,
            i.placement_start + i.placement_size,
            target_text(UnitKind::Mig, t)
        ));
    }
    for w in &plan.whole_gpus {
        let t = target(&layout, UnitKind::Whole, &w.device, None);
        s.push_str(&format!(
            "  {:<6} GPU  {:<10} {:<12} {:<11}  {}\n",
            w.cluster,
            w.device,
            "whole",
            "",
            target_text(UnitKind::Whole, t)
        ));
    }
    s
}

/// UTC time as `2024-05-01T12:34:56Z`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d, hh, mm, ss) = hsw_core::host::prepare::utc_fields(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    hsw_core::fsx::write_atomic(path, format!("{text}\n").as_bytes(), 0o644)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn open_backend(
    b: &BackendArgs,
    seed: Option<&[hsw_gpu_backend::simulated::SimDevice]>,
) -> Result<Opened, String> {
    let paths = Paths {
        state_dir: b.state_dir.clone(),
        lock_dir: None,
    };
    ops::open(b.backend.choice(), &paths, seed).map_err(|e| e.message)
}

/// The mapping `--write-map` writes: metadata, then one entry per planned unit (layout order: each cluster's MIG
/// instances, then its whole GPUs) with its VM, how it attaches, and what the backend knows of it; what is not
/// known yet (a GI not created, the VF parent and mdev found at apply) is null.
fn mdev_map(
    name: &str,
    source: &str,
    cfg: &config::model::ClusterConfig,
    plan: &GpuPlan,
    b: &BackendArgs,
) -> serde_json::Value {
    let sha = Sha256::digest(source.as_bytes())
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect::<String>();
    let seed = devices_from_config(cfg);
    let (backend, reason, inv) = match open_backend(b, Some(&seed)) {
        Ok(o) => {
            let mdev = SysfsMdev::new(SysfsRoot::new(b.sysfs_root.clone()));
            let inv = discover_inventory(o.backend.as_ref(), o.reason.clone(), Some(&mdev)).ok();
            (o.backend.kind().as_str().to_owned(), o.reason, inv)
        }
        Err(e) => ("none".to_owned(), Some(e), None),
    };
    let cfg_devices = cfg.gpu_devices();
    let found = |id: &str| {
        let pci = cfg_devices
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.pci_address.clone());
        let dev = pci.as_deref().and_then(|p| {
            let p = hsw_gpu_backend::mig::normalize_pci(p)?;
            inv.as_ref()?.devices.iter().find(|d| d.pci_address == p)
        });
        (pci, dev)
    };
    let devices: Vec<serde_json::Value> = cfg_devices
        .iter()
        .map(|d| {
            let (_, dev) = found(&d.id);
            serde_json::json!({
                "id": d.id,
                "pci_address": d.pci_address,
                "model": d.model,
                "uuid": dev.map(|x| x.uuid.clone()),
                "mig_enabled": dev.map(|x| x.mig_current),
            })
        })
        .collect();
    let layout = Layout::new(cfg, plan);
    let sysfs = SysfsRoot::new(b.sysfs_root.clone());
    let units: Vec<serde_json::Value> = layout
        .gpu_units
        .iter()
        .zip(&layout.targets)
        .map(|(u, t)| {
            let (pci, dev) = found(&u.device);
            let planned = plan.instances.iter().find(|i| {
                u.kind == UnitKind::Mig
                    && i.device == u.device
                    && Some(i.placement_start) == u.placement_start
            });
            let gi = planned.and_then(|i| {
                dev?.gpu_instances.iter().find(|g| {
                    g.profile_id == i.profile_id && g.placement.start == i.placement_start
                })
            });
            let ci = gi.and_then(|g| g.compute_instances.first());
            serde_json::json!({
                "id": t.unit_id,
                "cluster": t.cluster,
                "vm": t.vm,
                "kind": u.kind.as_str(),
                "attach": t.attach,
                "device": u.device,
                "pci_address": pci,
                "gpu_uuid": dev.map(|d| d.uuid.clone()),
                "profile": u.profile,
                "profile_id": planned.map(|i| i.profile_id),
                "placement": planned.map(|i| serde_json::json!({
                    "start": i.placement_start,
                    "size": i.placement_size,
                })),
                "gi_id": gi.map(|g| g.gi_id),
                "ci_id": ci.map(|c| c.ci_id),
                "mig_device_uuid": ci.and_then(|c| c.mig_device_uuid.clone()),
                // The VF that holds the GI: known where a VF names it (vendor VFIO's gpu_instance_id); else found
                // at apply (hsw_mdev) and null here.
                "vgpu_parent": vgpu_parent(&sysfs, t, pci.as_deref(), gi.map(|g| g.gi_id)),
                "mdev_uuid": u.mdev_uuid,
                "vgpu_type": t.vgpu_type,
            })
        })
        .collect();
    serde_json::json!({
        "metadata": {
            "config": name,
            "config_sha256": sha,
            "generated_at": utc_now(),
            "generator": format!("hsw-cli {}", env!("CARGO_PKG_VERSION")),
            "backend": backend,
            "backend_reason": reason,
            "devices": devices,
        },
        "units": units,
    })
}

/// The vGPU parent (VF) of a unit that reaches its VM as a vGPU, where sysfs already says it: the VF of its GPU
/// whose `nvidia/gpu_instance_id` names the unit's GPU instance. `None` (null in the map) otherwise: on classic
/// mdev, or before the GPU instance exists, `hsw_mdev` finds the parent at apply.
fn vgpu_parent(
    sysfs: &SysfsRoot,
    t: &UnitTarget,
    gpu_pci: Option<&str>,
    gi_id: Option<u32>,
) -> Option<String> {
    if t.attach != Attach::Vgpu {
        return None;
    }
    let gpu = hsw_gpu_backend::mig::normalize_pci(gpu_pci?)?;
    hsw_gpu_backend::vf::vf_of_gpu_instance(sysfs, &gpu, gi_id?)
        .ok()
        .flatten()
}

fn discover(args: &DiscoverArgs, out: &mut dyn Write) -> u8 {
    let seed = match &args.config {
        None => None,
        Some(p) => match load_model(Some(p)) {
            Ok((_, _, cfg)) => Some(devices_from_config(&cfg)),
            Err(code) => return code,
        },
    };
    let opened = match open_backend(&args.backend, seed.as_deref()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CANNOT_RUN;
        }
    };
    let mdev = SysfsMdev::new(SysfsRoot::new(args.backend.sysfs_root.clone()));
    let inv = match discover_inventory(opened.backend.as_ref(), opened.reason.clone(), Some(&mdev))
    {
        Ok(i) => i,
        Err(e) => {
            eprintln!(
                "error: GPU discovery on the {} backend failed: {e}",
                opened.backend.kind()
            );
            return exit::CANNOT_RUN;
        }
    };
    let written = match args.format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&inv).unwrap_or_default()
        ),
        Format::Text => out.write_all(render_text(&inv).as_bytes()),
    };
    if written.is_err() {
        return exit::CANNOT_RUN;
    }
    exit::OK
}

/// What Terraform states and plans account for: MIG instances `(gpu pci, gi id)` and vGPU ids.
#[derive(Debug, Default)]
pub struct Accounted {
    /// `(GPU PCI address, GPU instance id)`.
    pub mig: BTreeSet<(String, u32)>,
    /// mdev UUIDs and vendor-VFIO VF addresses.
    pub vgpus: BTreeSet<String>,
}

/// Walks a state or plan JSON document (`terraform.tfstate` v4, `terraform show -json` of a state or a plan) and
/// records the hsw GPU resources it holds.
pub fn account(doc: &serde_json::Value, acc: &mut Accounted) {
    match doc {
        serde_json::Value::Object(o) => {
            let ty = o.get("type").and_then(|t| t.as_str());
            if matches!(ty, Some("hsw_mig_instance" | "hsw_mdev")) {
                let mut attrs: Vec<&serde_json::Value> = Vec::new();
                attrs.extend(o.get("values"));
                attrs.extend(o.get("attributes"));
                if let Some(c) = o.get("change") {
                    attrs.extend(c.get("before"));
                    attrs.extend(c.get("after"));
                }
                if let Some(serde_json::Value::Array(is)) = o.get("instances") {
                    attrs.extend(is.iter().filter_map(|i| i.get("attributes")));
                }
                for a in attrs {
                    if ty == Some("hsw_mig_instance") {
                        let pci = a.get("gpu_pci").and_then(|v| v.as_str());
                        let gi = a.get("gi_id").and_then(serde_json::Value::as_u64);
                        if let (Some(p), Some(g)) = (pci, gi.and_then(|g| u32::try_from(g).ok())) {
                            acc.mig.insert((p.to_owned(), g));
                        }
                    } else if let Some(id) = a.get("id").and_then(|v| v.as_str()) {
                        acc.vgpus.insert(id.to_ascii_lowercase());
                    }
                }
            }
            for v in o.values() {
                account(v, acc);
            }
        }
        serde_json::Value::Array(a) => {
            for v in a {
                account(v, acc);
            }
        }
        _ => {}
    }
}

fn cleanup(args: &CleanupArgs, out: &mut dyn Write) -> u8 {
    if args.yes && args.states.is_empty() {
        eprintln!(
            "error: --yes needs at least one --state FILE: without one, every MIG instance and vGPU on the host \
             would count as unaccounted for. Pass `terraform show -json > state.json` files of every workspace."
        );
        return exit::CANNOT_RUN;
    }
    let mut acc = Accounted::default();
    for s in &args.states {
        let doc = std::fs::read(s)
            .map_err(|e| format!("cannot read {}: {e}", s.display()))
            .and_then(|b| {
                serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| {
                    format!(
                        "{} is not JSON ({e}); pass `terraform show -json` output",
                        s.display()
                    )
                })
            });
        match doc {
            Ok(d) => account(&d, &mut acc),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::CANNOT_RUN;
            }
        }
    }
    let opened = match open_backend(&args.backend, None) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CANNOT_RUN;
        }
    };
    let mdev = SysfsMdev::new(SysfsRoot::new(args.backend.sysfs_root.clone()));
    let inv: Inventory =
        match discover_inventory(opened.backend.as_ref(), opened.reason.clone(), Some(&mdev)) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("error: GPU discovery failed: {e}");
                return exit::CANNOT_RUN;
            }
        };
    let mut stray_mig = Vec::new();
    for d in &inv.devices {
        for g in &d.gpu_instances {
            if !acc.mig.contains(&(d.pci_address.clone(), g.gi_id)) {
                stray_mig.push((d, g));
            }
        }
    }
    let stray_vgpus: Vec<&Vgpu> = inv
        .vgpus
        .iter()
        .filter(|v| !acc.vgpus.contains(&v.id().to_ascii_lowercase()))
        .collect();
    let now = utc_now();
    let report = serde_json::json!({
        "generated_at": now,
        "backend": inv.backend,
        "backend_reason": inv.backend_reason,
        "states": args.states.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "remove": args.yes,
        "mig_instances": stray_mig.iter().map(|(d, g)| serde_json::json!({
            "gpu_pci": d.pci_address,
            "gpu_uuid": d.uuid,
            "gpu_index": d.index,
            "instance": g,
        })).collect::<Vec<_>>(),
        "vgpus": stray_vgpus,
    });
    let path = args
        .output_dir
        .join(format!("cleanup-{}.json", now.replace(':', "-")));
    if let Err(e) = write_json(&path, &report) {
        eprintln!("error: {e}");
        return exit::CANNOT_RUN;
    }
    let mut text = format!(
        "GPU backend: {}\n{} MIG instance(s) and {} vGPU(s) not accounted for by {} state file(s); described in {}\n",
        inv.backend,
        stray_mig.len(),
        stray_vgpus.len(),
        args.states.len(),
        path.display()
    );
    for (d, g) in &stray_mig {
        text.push_str(&format!(
            "  MIG  {} gi {} {} slices {}..{}\n",
            d.pci_address,
            g.gi_id,
            g.profile,
            g.placement.start,
            g.placement.start + g.placement.size
        ));
    }
    for v in &stray_vgpus {
        text.push_str(&format!(
            "  vGPU {} on {} ({})\n",
            v.id(),
            v.parent,
            v.type_name.as_deref().unwrap_or(&v.type_id)
        ));
    }
    let mut failures = 0;
    if args.yes {
        for (d, g) in &stray_mig {
            match ops::destroy(
                opened.backend.as_ref(),
                &opened.lock_dir,
                &d.pci_address,
                g.gi_id,
                &ops::Expect {
                    profile: Some(g.profile.clone()),
                    placement_start: Some(g.placement.start),
                    ..ops::Expect::default()
                },
            ) {
                Ok(ops::Destroyed::Destroyed | ops::Destroyed::AlreadyGone) => {
                    text.push_str(&format!("  removed MIG {} gi {}\n", d.pci_address, g.gi_id))
                }
                Ok(ops::Destroyed::Replaced(why)) => {
                    failures += 1;
                    text.push_str(&format!(
                        "  NOT removed MIG {} gi {}: {why}\n",
                        d.pci_address, g.gi_id
                    ));
                }
                Err(e) => {
                    failures += 1;
                    text.push_str(&format!(
                        "  NOT removed MIG {} gi {}: {e}\n",
                        d.pci_address, g.gi_id
                    ));
                }
            }
        }
        for v in &stray_vgpus {
            match mdev.remove(v) {
                Ok(()) => text.push_str(&format!("  removed vGPU {}\n", v.id())),
                Err(e) => {
                    failures += 1;
                    text.push_str(&format!("  NOT removed vGPU {}: {e}\n", v.id()));
                }
            }
        }
    } else if !stray_mig.is_empty() || !stray_vgpus.is_empty() {
        text.push_str("nothing removed: run again with --yes to remove them\n");
    }
    let written = match args.format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        Format::Text => out.write_all(text.as_bytes()),
    };
    if written.is_err() {
        return exit::CANNOT_RUN;
    }
    if failures > 0 {
        exit::INVALID
    } else {
        exit::OK
    }
}
