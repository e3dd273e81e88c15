//! The exact, deterministic MIG planner.
//!
//! [`plan`] spreads each cluster's MIG instances and whole GPUs over the devices. It returns a
//! plan whenever one exists and an error otherwise; the tests prove this against brute force.
//!
//! # Rules
//!
//! A MIG instance lives on a device whose use is [`DeviceUse::Mig`] and has a catalogued model.
//! Its profile must be allowed on the device ([`PlanDevice::allowed_profiles`]; `None` = every
//! profile of the model except the `+me` ones, which take the GPU's only media engines and must
//! be named) and allowed for its cluster ([`ClusterDemand::allowed_profiles`]; `None` = any).
//! On one device, instances follow the geometry of [`super::placement`]: memory slices
//! `[start, start + size)` never overlap, legal starts only, per-profile maximum counts, at
//! most one `+me` instance, compute slices within the GPU's. Instances of different clusters
//! may share a device. Each cluster gets exactly the number of instances it asks for.
//!
//! # Objective
//!
//! Among all valid plans, the planner returns the one that is best by these criteria, each
//! deciding only among plans that tie on the ones before it:
//!
//! 1. **Largest instances** (bottleneck first, then per cluster in input order).
//!    Write `cmin(c)` / `mmin(c)` for the fewest compute / memory slices of any instance of
//!    cluster `c`.
//!    1. the smallest `cmin(c)` over all clusters is as large as possible;
//!    2. then, for each cluster in input order, `cmin(c)` is as large as possible;
//!    3. then the smallest `mmin(c)` over all clusters is as large as possible;
//!    4. then, for each cluster in input order, `mmin(c)` is as large as possible.
//!
//!    From here on each cluster may use only profiles with at least `cmin(c)` compute and
//!    `mmin(c)` memory slices.
//! 2. **Fewest devices**: the number of MIG devices that host at least one instance is as
//!    small as possible.
//! 3. **Lowest devices**: the set of used devices, as a list of input positions in ascending
//!    order, is lexicographically smallest (earlier devices are used first).
//! 4. **Device by device**, in input order, each used device gets the best *pattern* (its
//!    instances and their clusters), comparing by, in order:
//!    1. more compute slices on the device in total, 2. more memory slices in total,
//!    3. the instance count per cluster, as a vector in cluster input order, lexicographically
//!       larger (earlier clusters are served first),
//!    4. the compute slices per cluster, as such a vector, larger, 5. the memory slices per
//!       cluster, larger, 6. fewer `+me` instances, 7. larger instances (the list of
//!       (compute, memory) slices in descending order, lexicographically larger), 8. the
//!       profile counts in catalog order, lexicographically smaller, 9. the clusters of the
//!       instances listed in the placement order of rule 5, lexicographically smaller.
//! 5. **Placements**: on a device, the instances ordered by size (compute, then memory slices,
//!    largest first; plain before `+me`; then catalog order) take the lexicographically lowest
//!    legal starts; among instances of one profile, the earlier cluster gets the lower start.
//!
//! The result is therefore a pure function of the input: the same input always gives a
//! byte-identical plan. Instances are listed by device input order, then placement start.
//!
//! Whole GPUs: the devices whose use is [`DeviceUse::Whole`] go to clusters in cluster input
//! order, each taking the next ones in device input order.
//!
//! # Method
//!
//! Devices with the same model and allowed profiles form a class; every valid layout of one
//! device of a class is enumerated once (at most a few thousand on 8 memory slices) and
//! reduced to the Pareto-maximal vectors of instances per cluster group (clusters with equal
//! eligible profiles are merged). Feasibility of a demand is decided by Hall's condition
//! (exact for one group) or by an exact dynamic program over devices whose table is indexed by
//! the capped needs of all groups but the largest (`dp`). The objective is optimised stage by
//! stage with that exact test (`problem`, `select`, `pattern`):
//!
//! - size floors: binary search on each floor (feasibility is monotone in it);
//! - fewest devices: a lower bound from weighted capacities (for weights `w ≥ 0` over groups,
//!   a device holds at most `max_o w·o` weighted instances; 0/1 weights are Hall's condition,
//!   and the weights where a class's best option changes give the fractional optimum's bound),
//!   then candidate selections of that many devices checked by the exact program; only if no
//!   candidate meets the demand, an exact layered program (devices used / left empty);
//! - lowest devices: a greedy in device order that keeps a witness selection, swaps identical
//!   devices for free, and asks the same bound → candidates → layered chain otherwise;
//! - patterns: suffix tables over the used devices, then each device in order takes the best
//!   pattern whose remainder the later devices can still meet.
//!
//! Cost: with one group (every cluster allows the same profiles) near-linear in devices; a
//! 1,000-GPU fleet with two differing groups near capacity plans in about 30 ms (release). With
//! `g` differing groups a table has `∏(demand + 1)` states over all groups but the largest, so
//! three or more differing groups fit fleets of up to a few hundred GPUs. The layered fallback
//! multiplies by `min(used, left empty)`. Programs that would exceed fixed time (about 2³³
//! steps) or memory (2²⁴ kept table entries) bounds stop with [`PlanError::TooLarge`] instead
//! of running for minutes.

mod diagnose;
mod dp;
mod pattern;
mod problem;
mod select;

use std::collections::HashSet;
use std::fmt;

use super::catalog::GpuModel;
use super::placement::MAX_PROFILES;
use diagnose::diagnose;
use pattern::{assign_patterns, class_patterns};
use problem::{build_problem, Floors, Prepared, Problem};
use select::choose_devices;
#[cfg(test)]
use select::Selection;

// ---------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------

/// What the planner is given.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlanInput {
    /// The GPUs, in a fixed order (the order decides ties).
    pub devices: Vec<PlanDevice>,
    /// The clusters' demands, in a fixed order (the order decides ties).
    pub clusters: Vec<ClusterDemand>,
}

/// One GPU.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlanDevice {
    /// Unique id, e.g. `GPU-0`.
    pub id: String,
    /// The catalogued model; `None` when unknown (allowed only for whole or unused devices).
    pub model: Option<&'static GpuModel>,
    /// How the device is used.
    #[serde(rename = "use")]
    pub use_: DeviceUse,
    /// Profiles that may be created on this device (names of the model's profiles).
    /// `None`: every profile of the model except `+me` ones.
    pub allowed_profiles: Option<Vec<String>>,
}

/// How a device is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceUse {
    /// Partitioned into MIG instances.
    Mig,
    /// Passed through whole to one VM.
    Whole,
    /// Left alone.
    Unused,
}

/// What one cluster asks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterDemand {
    /// Unique cluster name, e.g. `hpc`.
    pub name: String,
    /// How many MIG instances the cluster needs.
    pub mig_instances: u32,
    /// Profiles the cluster accepts (names); `None`: any profile allowed on the device.
    pub allowed_profiles: Option<Vec<String>>,
    /// How many whole GPUs the cluster needs.
    pub whole_gpus: u32,
}

/// The plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GpuPlan {
    /// MIG instances, by device input order, then placement start.
    pub instances: Vec<PlannedInstance>,
    /// Whole GPUs, by cluster input order, then device input order.
    pub whole_gpus: Vec<WholeGpu>,
}

impl GpuPlan {
    /// The instances of one cluster.
    pub fn instances_of<'a>(
        &'a self,
        cluster: &'a str,
    ) -> impl Iterator<Item = &'a PlannedInstance> {
        self.instances.iter().filter(move |i| i.cluster == cluster)
    }
}

/// One MIG GPU instance to create.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedInstance {
    /// The cluster it serves.
    pub cluster: String,
    /// The device id.
    pub device: String,
    /// Profile name, e.g. `1g.10gb`.
    pub profile: String,
    /// The `nvidia-smi mig -lgip` profile ID.
    pub profile_id: u32,
    /// First memory slice.
    pub placement_start: u32,
    /// Memory slices covered.
    pub placement_size: u32,
}

/// One whole GPU given to a cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WholeGpu {
    /// The cluster.
    pub cluster: String,
    /// The device id.
    pub device: String,
}

/// Why no plan exists (or could not be computed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Two devices share an id.
    #[error("device id `{id}` is used by more than one device; give each GPU its own id")]
    DuplicateDevice {
        /// The id.
        id: String,
    },
    /// Two clusters share a name.
    #[error("cluster name `{name}` appears more than once")]
    DuplicateCluster {
        /// The name.
        name: String,
    },
    /// A MIG device without a catalogued model.
    #[error(
        "device `{device}` is set to MIG use but its model is not in the MIG catalog; \
         name a supported model or use the device whole"
    )]
    MigDeviceWithoutModel {
        /// The device id.
        device: String,
    },
    /// A device allows a profile its model does not have.
    #[error("device `{device}` allows MIG profile `{profile}`, which the {model} does not have{}", hint(.suggestion))]
    UnknownDeviceProfile {
        /// The device id.
        device: String,
        /// Model display name.
        model: String,
        /// The unknown name.
        profile: String,
        /// The closest existing profile.
        suggestion: Option<String>,
    },
    /// A cluster allows a profile that none of the MIG devices' models has.
    #[error("cluster `{cluster}` allows MIG profile `{profile}`, which {models} {}{}", if .models.contains(", ") { "do not have" } else { "does not have" }, hint(.suggestion))]
    UnknownClusterProfile {
        /// The cluster.
        cluster: String,
        /// The unknown name.
        profile: String,
        /// The models it was looked up in, e.g. `the NVIDIA A100 80GB`.
        models: String,
        /// The closest existing profile.
        suggestion: Option<String>,
    },
    /// None of a cluster's profiles is allowed on any MIG device.
    #[error(
        "cluster `{cluster}` asks for {requested} MIG instances but none of the profiles it \
         allows ({profiles}) is allowed on a MIG device ({devices})"
    )]
    ProfilesNotAllowed {
        /// The cluster.
        cluster: String,
        /// Instances asked for.
        requested: u32,
        /// The cluster's profiles.
        profiles: String,
        /// What each MIG device allows.
        devices: String,
    },
    /// MIG instances asked for but no device is set to MIG use.
    #[error("cluster `{cluster}` asks for {requested} MIG instances but no device is set to MIG use{detail}")]
    NoMigDevices {
        /// The cluster.
        cluster: String,
        /// Instances asked for.
        requested: u32,
        /// The devices there are, e.g. ` (GPU-1 is whole)`.
        detail: String,
    },
    /// One cluster asks for more instances than the devices can host for it alone.
    #[error(
        "cluster `{cluster}` asks for {requested} MIG instances but the MIG devices can host at \
         most {max} with the allowed profiles ({breakdown})"
    )]
    ClusterCapacity {
        /// The cluster.
        cluster: String,
        /// Instances asked for.
        requested: u32,
        /// The most the devices can host for it.
        max: u32,
        /// Per device, the largest set, e.g. `GPU-0: 7 × 1g.10gb`.
        breakdown: String,
    },
    /// Several clusters together ask for more than the devices can host for them.
    #[error(
        "clusters {clusters} together ask for {requested} MIG instances but the MIG devices can \
         host at most {max} instances of their allowed profiles at once ({breakdown})"
    )]
    ClustersCapacity {
        /// The clusters, e.g. `` `hpc` and `cloud` ``.
        clusters: String,
        /// Instances asked for in total.
        requested: u32,
        /// The most the devices can host for them together.
        max: u32,
        /// Per device, the largest set.
        breakdown: String,
    },
    /// The counts fit one by one but the layouts do not combine.
    #[error(
        "the MIG devices cannot host {demands} instances at the same time: the profiles the \
         clusters allow do not fit together on the devices ({detail})"
    )]
    Unsatisfiable {
        /// e.g. `` `hpc`: 4 and `cloud`: 3 ``.
        demands: String,
        /// The per-cluster maxima.
        detail: String,
    },
    /// More whole GPUs asked for than devices set to whole use.
    #[error(
        "the clusters ask for {requested} whole GPUs ({by_cluster}) but only {available} \
         {} set to whole use{devices}",
        if *.available == 1 { "device is" } else { "devices are" }
    )]
    WholeGpusShort {
        /// Whole GPUs asked for.
        requested: u32,
        /// Per cluster, e.g. `hpc 1, cloud 2`.
        by_cluster: String,
        /// Devices set to whole use.
        available: u32,
        /// e.g. ` (GPU-1)`.
        devices: String,
    },
    /// The exact search would exceed the planner's time or memory bounds.
    #[error(
        "the MIG plan is too large to solve exactly ({detail}); give the clusters the same \
         allowed profiles or fewer devices"
    )]
    TooLarge {
        /// What was too large.
        detail: String,
    },
    /// A planner bug (an invariant did not hold). Please report it.
    #[error("internal planner error: {detail}")]
    Internal {
        /// What went wrong.
        detail: String,
    },
}

fn hint(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    }
}

/// An exact program that would exceed the bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TooLarge {
    detail: String,
}

impl From<TooLarge> for PlanError {
    fn from(t: TooLarge) -> Self {
        PlanError::TooLarge { detail: t.detail }
    }
}

// ---------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------

/// Plans MIG instances and whole GPUs; see the module docs for the rules and the objective.
pub fn plan(input: &PlanInput) -> Result<GpuPlan, PlanError> {
    check_unique(input)?;
    let whole_gpus = plan_whole(input)?;
    let problem = build_problem(input)?;
    let instances = plan_mig(&problem)?;
    Ok(GpuPlan {
        instances,
        whole_gpus,
    })
}

fn check_unique(input: &PlanInput) -> Result<(), PlanError> {
    let mut seen = HashSet::new();
    for d in &input.devices {
        if !seen.insert(d.id.as_str()) {
            return Err(PlanError::DuplicateDevice { id: d.id.clone() });
        }
    }
    let mut seen = HashSet::new();
    for c in &input.clusters {
        if !seen.insert(c.name.as_str()) {
            return Err(PlanError::DuplicateCluster {
                name: c.name.clone(),
            });
        }
    }
    Ok(())
}

fn plan_whole(input: &PlanInput) -> Result<Vec<WholeGpu>, PlanError> {
    let whole: Vec<&PlanDevice> = input
        .devices
        .iter()
        .filter(|d| d.use_ == DeviceUse::Whole)
        .collect();
    let requested: u64 = input.clusters.iter().map(|c| u64::from(c.whole_gpus)).sum();
    if requested > whole.len() as u64 {
        let by_cluster = input
            .clusters
            .iter()
            .filter(|c| c.whole_gpus > 0)
            .map(|c| format!("{} {}", c.name, c.whole_gpus))
            .collect::<Vec<_>>()
            .join(", ");
        let devices = if whole.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                whole
                    .iter()
                    .map(|d| d.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(PlanError::WholeGpusShort {
            requested: u32::try_from(requested).unwrap_or(u32::MAX),
            by_cluster,
            available: u32::try_from(whole.len()).unwrap_or(u32::MAX),
            devices,
        });
    }
    let mut next = whole.into_iter();
    let mut out = Vec::new();
    for c in &input.clusters {
        for _ in 0..c.whole_gpus {
            if let Some(d) = next.next() {
                out.push(WholeGpu {
                    cluster: c.name.clone(),
                    device: d.id.clone(),
                });
            }
        }
    }
    Ok(out)
}

fn plan_mig(problem: &Problem) -> Result<Vec<PlannedInstance>, PlanError> {
    let k = problem.clusters.len();
    if problem.clusters.iter().all(|c| c.demand == 0) {
        return Ok(Vec::new());
    }
    let all_classes: Vec<usize> = problem.devices.iter().map(|d| d.class).collect();
    let mut floors = Floors {
        compute: vec![0; k],
        memory: vec![0; k],
    };
    if !Prepared::new(problem, &floors).feasible(&all_classes)? {
        return Err(diagnose(problem));
    }
    let demanding: Vec<usize> = (0..k)
        .filter(|&c| problem.clusters.get(c).is_some_and(|x| x.demand > 0))
        .collect();
    let feasible = |f: &Floors| -> Result<bool, PlanError> {
        Prepared::new(problem, f).feasible(&all_classes)
    };

    // 1.1 global compute floor, 1.2 per cluster, 1.3 global memory floor, 1.4 per cluster.
    for kind in [Kind::Compute, Kind::Memory] {
        let values = floor_values(problem, &floors, &demanding, kind);
        let best = search_max(&values, |t| {
            let mut f = floors.clone();
            for &c in &demanding {
                set_floor(&mut f, kind, c, t);
            }
            feasible(&f)
        })?;
        for &c in &demanding {
            set_floor(&mut floors, kind, c, best);
        }
        for &c in &demanding {
            let values = floor_values(problem, &floors, &[c], kind);
            let best = search_max(&values, |t| {
                let mut f = floors.clone();
                set_floor(&mut f, kind, c, t);
                feasible(&f)
            })?;
            set_floor(&mut floors, kind, c, best);
        }
    }

    let prepared = Prepared::new(problem, &floors);
    let Some(space) = prepared.space()? else {
        return Ok(Vec::new());
    };

    // 2. fewest devices and 3. lowest devices.
    let capable: Vec<usize> = problem
        .devices
        .iter()
        .enumerate()
        .filter(|(_, d)| prepared.options.get(d.class).is_some_and(|o| !o.is_empty()))
        .map(|(i, _)| i)
        .collect();
    let used = choose_devices(problem, &prepared, space, &capable)?;

    // 4. patterns device by device.
    let patterns = class_patterns(problem, &floors);
    assign_patterns(problem, &prepared, space, &used, &patterns)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Compute,
    Memory,
}

fn set_floor(f: &mut Floors, kind: Kind, c: usize, t: u32) {
    let v = match kind {
        Kind::Compute => f.compute.get_mut(c),
        Kind::Memory => f.memory.get_mut(c),
    };
    if let Some(v) = v {
        *v = (*v).max(t);
    }
}

/// Distinct sizes (ascending) of the profiles the clusters may use now, at or above their
/// current floors.
fn floor_values(problem: &Problem, floors: &Floors, clusters: &[usize], kind: Kind) -> Vec<u32> {
    let mut v: Vec<u32> = Vec::new();
    for &c in clusters {
        for (h, class) in problem.classes.iter().enumerate() {
            if !problem.devices.iter().any(|d| d.class == h) {
                continue;
            }
            let mask = problem.eligible(floors, c, h);
            for (i, p) in class.model.profiles.iter().enumerate().take(MAX_PROFILES) {
                if mask & (1 << i) != 0 {
                    v.push(match kind {
                        Kind::Compute => p.compute_slices,
                        Kind::Memory => p.memory_slices,
                    });
                }
            }
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// The largest value in `values` (ascending) for which `ok` holds, given that `ok` is
/// monotone (true up to some point) and holds for the first value. 0 if `values` is empty.
fn search_max(
    values: &[u32],
    mut ok: impl FnMut(u32) -> Result<bool, PlanError>,
) -> Result<u32, PlanError> {
    let Some(&first) = values.first() else {
        return Ok(0);
    };
    // Invariant: values[lo] is ok; values[hi..] are not.
    let (mut lo, mut hi) = (0usize, values.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let v = values.get(mid).copied().unwrap_or(first);
        if ok(v)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(values.get(lo).copied().unwrap_or(first))
}

impl fmt::Display for DeviceUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceUse::Mig => "mig",
            DeviceUse::Whole => "whole",
            DeviceUse::Unused => "unused",
        })
    }
}

#[cfg(test)]
mod tests;
