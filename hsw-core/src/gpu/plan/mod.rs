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
//! eligible profiles are merged). Feasibility of a demand is then decided by Hall's condition
//! (exact for one group) or by an exact dynamic program over devices whose table is indexed by
//! the capped needs of all groups but the largest (see `dp`). The objective is optimised
//! stage by stage with that exact test: binary search on each size floor, a layered program
//! (devices used / left empty) for the fewest devices, a witness-guided greedy for the lowest
//! devices, and suffix tables for the device-by-device patterns.
//!
//! Cost: with one group (every cluster allows the same profiles), near-linear in devices. With
//! `g` differing groups the table has `∏(demand + 1)` states over all groups but the largest;
//! the fewest-devices search multiplies by `min(used, left empty)`. Programs that would exceed
//! fixed time or memory bounds stop with [`PlanError::TooLarge`] instead of running for minutes.

mod dp;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use super::catalog::{suggest_profile, GpuModel, Profile, MODELS};
use super::placement::{multisets, Multiset, MAX_PROFILES};

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
    pub fn instances_of<'a>(&'a self, cluster: &'a str) -> impl Iterator<Item = &'a PlannedInstance> {
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
// Internal model
// ---------------------------------------------------------------------------------------

/// Devices of one model with the same allowed profiles.
#[derive(Debug)]
struct Class {
    model: &'static GpuModel,
    multisets: Vec<Multiset>,
}

#[derive(Debug)]
struct MigDevice {
    id: String,
    class: usize,
}

#[derive(Debug)]
struct Cluster {
    name: String,
    demand: u32,
    /// Eligible profile mask per class, before size floors.
    base: Vec<u16>,
}

#[derive(Debug)]
struct Problem {
    classes: Vec<Class>,
    devices: Vec<MigDevice>,
    clusters: Vec<Cluster>,
}

/// Size floors per cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Floors {
    compute: Vec<u32>,
    memory: Vec<u32>,
}

/// Clusters with demand, merged by identical eligibility.
#[derive(Debug, Clone)]
struct Groups {
    /// Cluster indices per group.
    members: Vec<Vec<usize>>,
    /// Demand per group.
    demand: Vec<u32>,
    /// Eligible mask per group per class.
    masks: Vec<Vec<u16>>,
}

impl Problem {
    /// Eligible mask of cluster `c` on class `h` under floors.
    fn eligible(&self, floors: &Floors, c: usize, h: usize) -> u16 {
        let (Some(cluster), Some(class)) = (self.clusters.get(c), self.classes.get(h)) else {
            return 0;
        };
        let base = cluster.base.get(h).copied().unwrap_or(0);
        let fc = floors.compute.get(c).copied().unwrap_or(0);
        let fm = floors.memory.get(c).copied().unwrap_or(0);
        let mut mask = 0u16;
        for (i, p) in class.model.profiles.iter().enumerate().take(MAX_PROFILES) {
            if base & (1 << i) != 0 && p.compute_slices >= fc && p.memory_slices >= fm {
                mask |= 1 << i;
            }
        }
        mask
    }

    fn groups(&self, floors: &Floors) -> Groups {
        let mut members: Vec<Vec<usize>> = Vec::new();
        let mut demand: Vec<u32> = Vec::new();
        let mut masks: Vec<Vec<u16>> = Vec::new();
        for (c, cluster) in self.clusters.iter().enumerate() {
            if cluster.demand == 0 {
                continue;
            }
            let m: Vec<u16> = (0..self.classes.len())
                .map(|h| self.eligible(floors, c, h))
                .collect();
            if let Some(g) = masks.iter().position(|x| *x == m) {
                if let (Some(mem), Some(d)) = (members.get_mut(g), demand.get_mut(g)) {
                    mem.push(c);
                    *d = d.saturating_add(cluster.demand);
                }
            } else {
                members.push(vec![c]);
                demand.push(cluster.demand);
                masks.push(m);
            }
        }
        Groups {
            members,
            demand,
            masks,
        }
    }

    /// Pareto-maximal instance-count vectors (per group) of one device of class `h`.
    fn options(&self, groups: &Groups, h: usize) -> Vec<Vec<u32>> {
        let Some(class) = self.classes.get(h) else {
            return Vec::new();
        };
        let gmasks: Vec<u16> = groups
            .masks
            .iter()
            .map(|m| m.get(h).copied().unwrap_or(0))
            .collect();
        let mut set: HashSet<Vec<u32>> = HashSet::new();
        for ms in &class.multisets {
            // Per profile with instances: the groups that may use it.
            let mut parts: Vec<(u32, Vec<usize>)> = Vec::new();
            let mut usable = true;
            for (p, &count) in ms.counts.iter().enumerate() {
                if count == 0 {
                    continue;
                }
                let eligible: Vec<usize> = gmasks
                    .iter()
                    .enumerate()
                    .filter(|(_, &m)| m & (1 << p) != 0)
                    .map(|(g, _)| g)
                    .collect();
                if eligible.is_empty() {
                    usable = false;
                    break;
                }
                parts.push((u32::from(count), eligible));
            }
            if !usable {
                continue;
            }
            let mut acc = vec![0u32; gmasks.len()];
            distribute(&parts, 0, &mut acc, &mut |v| {
                set.insert(v.to_vec());
            });
        }
        pareto_max(set.into_iter().collect())
    }
}

/// Calls `f` with every way to hand out each part's count among its groups.
fn distribute(parts: &[(u32, Vec<usize>)], i: usize, acc: &mut [u32], f: &mut dyn FnMut(&[u32])) {
    let Some((count, groups)) = parts.get(i) else {
        f(acc);
        return;
    };
    compositions(*count, groups, 0, acc, &mut |acc| distribute(parts, i + 1, acc, f));
}

fn compositions(
    left: u32,
    groups: &[usize],
    j: usize,
    acc: &mut [u32],
    f: &mut dyn FnMut(&mut [u32]),
) {
    let Some(&g) = groups.get(j) else {
        return;
    };
    if j + 1 == groups.len() {
        if let Some(a) = acc.get_mut(g) {
            *a += left;
        }
        f(acc);
        if let Some(a) = acc.get_mut(g) {
            *a -= left;
        }
        return;
    }
    for take in 0..=left {
        if let Some(a) = acc.get_mut(g) {
            *a += take;
        }
        compositions(left - take, groups, j + 1, acc, f);
        if let Some(a) = acc.get_mut(g) {
            *a -= take;
        }
    }
}

/// Keeps vectors no other vector dominates; sorted for determinism.
fn pareto_max(mut v: Vec<Vec<u32>>) -> Vec<Vec<u32>> {
    v.sort_unstable_by(|a, b| b.iter().sum::<u32>().cmp(&a.iter().sum::<u32>()).then(b.cmp(a)));
    let mut out: Vec<Vec<u32>> = Vec::new();
    for x in v {
        let dominated = out
            .iter()
            .any(|y| y.iter().zip(&x).all(|(a, b)| a >= b));
        if !dominated {
            out.push(x);
        }
    }
    out
}

/// Options of every class for the groups, plus which devices are capable.
struct Prepared {
    groups: Groups,
    /// Per class, options flat in DP order (empty: the class cannot host anything).
    options: Vec<Vec<u32>>,
    /// Per class, options per group (not reordered).
    raw: Vec<Vec<Vec<u32>>>,
    space: Option<dp::Space>,
}

impl Prepared {
    fn new(problem: &Problem, floors: &Floors) -> Result<Prepared, PlanError> {
        let groups = problem.groups(floors);
        let raw: Vec<Vec<Vec<u32>>> = (0..problem.classes.len())
            .map(|h| problem.options(&groups, h))
            .collect();
        let space = if groups.demand.is_empty() {
            None
        } else {
            Some(dp::Space::new(&groups.demand)?)
        };
        let options = raw
            .iter()
            .map(|opts| match &space {
                Some(s) => opts.iter().flat_map(|o| s.reorder(o)).collect(),
                None => Vec::new(),
            })
            .collect();
        Ok(Prepared {
            groups,
            options,
            raw,
            space,
        })
    }

    /// For a set of groups (bitmask), the most instances one device of class `h` hosts for
    /// them.
    fn cap(&self, h: usize, set: u64) -> u32 {
        self.raw
            .get(h)
            .map(|opts| {
                opts.iter()
                    .map(|o| {
                        o.iter()
                            .enumerate()
                            .filter(|(g, _)| set & (1u64 << g) != 0)
                            .map(|(_, &x)| x)
                            .sum::<u32>()
                    })
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    }

    /// Group subsets for Hall's condition: all of them for up to 12 groups, else singletons
    /// and the full set.
    fn subsets(&self) -> Vec<u64> {
        let g = self.groups.demand.len();
        if g == 0 {
            return Vec::new();
        }
        if g <= 12 {
            (1u64..(1u64 << g)).collect()
        } else {
            let mut v: Vec<u64> = (0..g).map(|i| 1u64 << i).collect();
            v.push(if g >= 64 { u64::MAX } else { (1u64 << g) - 1 });
            v
        }
    }

    fn demand_of(&self, set: u64) -> u64 {
        self.groups
            .demand
            .iter()
            .enumerate()
            .filter(|(g, _)| set & (1u64 << g) != 0)
            .map(|(_, &d)| u64::from(d))
            .sum()
    }

    /// Whether the devices (class per device) meet the demand.
    fn feasible(&self, classes: &[usize]) -> Result<bool, PlanError> {
        let Some(space) = &self.space else {
            return Ok(true);
        };
        let mut counts: BTreeMap<usize, u64> = BTreeMap::new();
        for &h in classes {
            *counts.entry(h).or_insert(0) += 1;
        }
        for set in self.subsets() {
            let cap: u64 = counts
                .iter()
                .map(|(&h, &n)| n * u64::from(self.cap(h, set)))
                .sum();
            if cap < self.demand_of(set) {
                return Ok(false);
            }
        }
        if self.groups.demand.len() == 1 {
            return Ok(true);
        }
        let devices = classes
            .iter()
            .map(|&h| self.options.get(h).map_or(&[][..], Vec::as_slice));
        Ok(dp::feasible(space, devices)?)
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
                whole.iter().map(|d| d.id.as_str()).collect::<Vec<_>>().join(", ")
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

fn build_problem(input: &PlanInput) -> Result<Problem, PlanError> {
    // Devices and classes.
    let mut classes: Vec<Class> = Vec::new();
    let mut class_of: HashMap<(&'static str, u16), usize> = HashMap::new();
    let mut devices = Vec::new();
    for d in input.devices.iter().filter(|d| d.use_ == DeviceUse::Mig) {
        let model = d.model.ok_or_else(|| PlanError::MigDeviceWithoutModel {
            device: d.id.clone(),
        })?;
        let mask = match &d.allowed_profiles {
            None => model
                .profiles
                .iter()
                .enumerate()
                .take(MAX_PROFILES)
                .filter(|(_, p)| !p.media_extensions)
                .fold(0u16, |m, (i, _)| m | (1 << i)),
            Some(names) => {
                let mut m = 0u16;
                for name in names {
                    let idx = model
                        .profile(name)
                        .and_then(|p| model.profile_index(p))
                        .filter(|&i| i < MAX_PROFILES)
                        .ok_or_else(|| PlanError::UnknownDeviceProfile {
                            device: d.id.clone(),
                            model: model.display_name.to_owned(),
                            profile: name.clone(),
                            suggestion: suggest_profile(model, name).map(|p| p.name.to_owned()),
                        })?;
                    m |= 1 << idx;
                }
                m
            }
        };
        let next = classes.len();
        let h = *class_of.entry((model.key, mask)).or_insert(next);
        if h == next {
            classes.push(Class {
                model,
                multisets: multisets(model, mask),
            });
        }
        devices.push(MigDevice {
            id: d.id.clone(),
            class: h,
        });
    }

    // Clusters.
    let mig_models: Vec<&'static GpuModel> = {
        let mut v: Vec<&'static GpuModel> = Vec::new();
        for c in &classes {
            if !v.iter().any(|m| m.key == c.model.key) {
                v.push(c.model);
            }
        }
        v
    };
    let mut clusters = Vec::new();
    for c in &input.clusters {
        if c.mig_instances > 0 && devices.is_empty() {
            let detail = if input.devices.is_empty() {
                " (there are no devices)".to_owned()
            } else {
                format!(
                    " ({})",
                    input
                        .devices
                        .iter()
                        .map(|d| format!(
                            "{} is {}",
                            d.id,
                            match d.use_ {
                                DeviceUse::Mig => "MIG",
                                DeviceUse::Whole => "whole",
                                DeviceUse::Unused => "unused",
                            }
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(PlanError::NoMigDevices {
                cluster: c.name.clone(),
                requested: c.mig_instances,
                detail,
            });
        }
        if let Some(names) = &c.allowed_profiles {
            let lookup_models: Vec<&'static GpuModel> = if mig_models.is_empty() {
                MODELS.iter().collect()
            } else {
                mig_models.clone()
            };
            for name in names {
                if !lookup_models.iter().any(|m| m.profile(name).is_some()) {
                    let models = if mig_models.is_empty() {
                        "no catalogued GPU".to_owned()
                    } else {
                        format!(
                            "the {}",
                            mig_models
                                .iter()
                                .map(|m| m.display_name)
                                .collect::<Vec<_>>()
                                .join(", the ")
                        )
                    };
                    return Err(PlanError::UnknownClusterProfile {
                        cluster: c.name.clone(),
                        profile: name.clone(),
                        models,
                        suggestion: lookup_models
                            .first()
                            .and_then(|m| suggest_profile(m, name))
                            .map(|p| p.name.to_owned()),
                    });
                }
            }
        }
        let base: Vec<u16> = classes
            .iter()
            .enumerate()
            .map(|(h, class)| {
                let device_mask = class_of
                    .iter()
                    .find(|(_, &v)| v == h)
                    .map_or(0, |((_, m), _)| *m);
                match &c.allowed_profiles {
                    None => device_mask,
                    Some(names) => {
                        let mut m = 0u16;
                        for name in names {
                            if let Some(i) = class
                                .model
                                .profile(name)
                                .and_then(|p| class.model.profile_index(p))
                                .filter(|&i| i < MAX_PROFILES)
                            {
                                m |= 1 << i;
                            }
                        }
                        m & device_mask
                    }
                }
            })
            .collect();
        clusters.push(Cluster {
            name: c.name.clone(),
            demand: c.mig_instances,
            base,
        });
    }
    let problem = Problem {
        classes,
        devices,
        clusters,
    };
    // A cluster with demand whose profiles no device allows.
    for (c, cluster) in problem.clusters.iter().enumerate() {
        let class_used: Vec<bool> = (0..problem.classes.len())
            .map(|h| problem.devices.iter().any(|d| d.class == h))
            .collect();
        let any = cluster
            .base
            .iter()
            .zip(&class_used)
            .any(|(&m, &used)| used && m != 0);
        if cluster.demand > 0 && !any {
            let profiles = match input.clusters.get(c).and_then(|x| x.allowed_profiles.as_ref()) {
                Some(names) if !names.is_empty() => names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                Some(_) => "none".to_owned(),
                None => "any".to_owned(),
            };
            let devices = problem
                .devices
                .iter()
                .map(|d| {
                    let allowed = problem
                        .classes
                        .get(d.class)
                        .map(|class| {
                            let mask = class_of
                                .iter()
                                .find(|(_, &v)| v == d.class)
                                .map_or(0, |((_, m), _)| *m);
                            let names: Vec<&str> = class
                                .model
                                .profiles
                                .iter()
                                .enumerate()
                                .filter(|(i, _)| *i < MAX_PROFILES && mask & (1 << i) != 0)
                                .map(|(_, p)| p.name)
                                .collect();
                            if names.is_empty() {
                                "nothing".to_owned()
                            } else {
                                names.join(", ")
                            }
                        })
                        .unwrap_or_default();
                    format!("{} allows {}", d.id, allowed)
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(PlanError::ProfilesNotAllowed {
                cluster: cluster.name.clone(),
                requested: cluster.demand,
                profiles,
                devices,
            });
        }
    }
    Ok(problem)
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
    if !Prepared::new(problem, &floors)?.feasible(&all_classes)? {
        return Err(diagnose(problem));
    }
    let demanding: Vec<usize> = (0..k)
        .filter(|&c| problem.clusters.get(c).is_some_and(|x| x.demand > 0))
        .collect();
    let feasible = |f: &Floors| -> Result<bool, PlanError> {
        Prepared::new(problem, f)?.feasible(&all_classes)
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

    let prepared = Prepared::new(problem, &floors)?;
    let Some(space) = prepared.space.as_ref() else {
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

/// Stages 2 and 3: which capable devices (indices into `problem.devices`) are used.
fn choose_devices(
    problem: &Problem,
    prepared: &Prepared,
    space: &dp::Space,
    capable: &[usize],
) -> Result<Vec<usize>, PlanError> {
    let class_of = |i: usize| problem.devices.get(i).map_or(usize::MAX, |d| d.class);
    let opts = |i: usize| -> &[u32] {
        prepared
            .options
            .get(class_of(i))
            .map_or(&[][..], Vec::as_slice)
    };
    let n = capable.len();
    let devs: Vec<dp::Dev<'_>> = capable
        .iter()
        .map(|&i| dp::Dev {
            options: opts(i),
            forced: false,
        })
        .collect();
    let lb = hall_lower_bound(prepared, capable.iter().map(|&i| class_of(i)), 0);
    let (t_star, mut witness) = fewest(space, &devs, lb)?.ok_or_else(|| PlanError::Internal {
        detail: "the devices met the demand but no device count did".to_owned(),
    })?;
    if t_star as usize == n {
        return Ok(capable.to_vec());
    }

    // Greedy in device order, keeping a witness (a valid choice of t_star devices).
    let mut included = vec![false; n];
    let mut excluded = vec![false; n];
    let mut closed: HashSet<usize> = HashSet::new();
    let mut count = 0u32;
    for pos in 0..n {
        if count == t_star {
            break;
        }
        let dev_class = capable.get(pos).map_or(usize::MAX, |&i| class_of(i));
        if closed.contains(&dev_class) {
            set(&mut excluded, pos);
            continue;
        }
        if witness.get(pos).copied().unwrap_or(false) {
            set(&mut included, pos);
            count += 1;
            continue;
        }
        // Swap with a later witness device of the same class.
        let swap = (pos + 1..n).find(|&j| {
            witness.get(j).copied().unwrap_or(false)
                && capable.get(j).map_or(usize::MAX, |&i| class_of(i)) == dev_class
        });
        if let Some(j) = swap {
            set_to(&mut witness, j, false);
            set_to(&mut witness, pos, true);
            set(&mut included, pos);
            count += 1;
            continue;
        }
        // Check: is there a choice of t_star devices with this one and the earlier choices?
        let mut sub: Vec<dp::Dev<'_>> = Vec::new();
        let mut sub_pos: Vec<usize> = Vec::new();
        for (j, &i) in capable.iter().enumerate() {
            let is_excluded = excluded.get(j).copied().unwrap_or(true)
                || (j < pos && !included.get(j).copied().unwrap_or(false))
                || (j > pos && closed.contains(&class_of(i)));
            if is_excluded {
                continue;
            }
            let forced = j <= pos;
            sub.push(dp::Dev {
                options: opts(i),
                forced,
            });
            sub_pos.push(j);
        }
        let forced_count = u32::try_from(sub.iter().filter(|d| d.forced).count()).unwrap_or(u32::MAX);
        let free = u32::try_from(sub.len()).unwrap_or(u32::MAX).saturating_sub(forced_count);
        let found = if forced_count > t_star {
            None
        } else {
            let empties_needed = (forced_count + free).saturating_sub(t_star);
            let result = if t_star <= empties_needed {
                let r = dp::layered(space, &sub, dp::Mode::Used, t_star, true)?;
                r.answer.filter(|&a| a <= t_star).and(r.used)
            } else {
                let r = dp::layered(space, &sub, dp::Mode::Empty, empties_needed, true)?;
                r.answer.filter(|&a| a >= empties_needed).and(r.used)
            };
            result
        };
        match found {
            Some(used) => {
                let mut w = vec![false; n];
                for (u, &j) in used.iter().zip(&sub_pos) {
                    if *u {
                        set(&mut w, j);
                    }
                }
                witness = w;
                set(&mut included, pos);
                count += 1;
            }
            None => {
                set(&mut excluded, pos);
                closed.insert(dev_class);
            }
        }
    }
    Ok(capable
        .iter()
        .zip(&included)
        .filter(|(_, &inc)| inc)
        .map(|(&i, _)| i)
        .collect())
}

fn set(v: &mut [bool], i: usize) {
    set_to(v, i, true);
}

fn set_to(v: &mut [bool], i: usize, value: bool) {
    if let Some(x) = v.get_mut(i) {
        *x = value;
    }
}

/// A lower bound on the devices needed (Hall's condition per group subset, largest devices
/// first), counting `forced` devices as used.
fn hall_lower_bound(prepared: &Prepared, classes: impl Iterator<Item = usize> + Clone, forced: u32) -> u32 {
    let mut lb = forced;
    for set in prepared.subsets() {
        let need = prepared.demand_of(set);
        let mut caps: Vec<u32> = classes.clone().map(|h| prepared.cap(h, set)).collect();
        caps.sort_unstable_by(|a, b| b.cmp(a));
        let mut sum = 0u64;
        let mut count = 0u32;
        for c in caps {
            if sum >= need {
                break;
            }
            sum += u64::from(c);
            count += 1;
        }
        lb = lb.max(count);
    }
    lb
}

/// The fewest devices that meet the demand and one choice of that many (exact).
fn fewest(
    space: &dp::Space,
    devs: &[dp::Dev<'_>],
    lb: u32,
) -> Result<Option<(u32, Vec<bool>)>, PlanError> {
    let n = u32::try_from(devs.len()).unwrap_or(u32::MAX);
    let max_empty = n.saturating_sub(lb);
    let mut budget = 1u32;
    loop {
        // At least `l` empty devices, l ≤ min(budget, max_empty).
        let l = budget.min(max_empty);
        let r = dp::layered(space, devs, dp::Mode::Empty, l, false)?;
        match r.answer {
            None => return Ok(None),
            Some(e) if e < l || l == max_empty => {
                let r = dp::layered(space, devs, dp::Mode::Empty, e, true)?;
                return Ok(r.used.map(|u| (n - e, u)));
            }
            Some(_) => {}
        }
        if budget >= lb {
            let t = budget.min(n);
            let r = dp::layered(space, devs, dp::Mode::Used, t, false)?;
            if let Some(used) = r.answer {
                let r = dp::layered(space, devs, dp::Mode::Used, used, true)?;
                return Ok(r.used.map(|u| (used, u)));
            }
        }
        if budget >= n {
            return Ok(None);
        }
        budget = budget.saturating_mul(2);
    }
}

// ---------------------------------------------------------------------------------------
// Patterns
// ---------------------------------------------------------------------------------------

/// One way to fill a device: instances (profile index, start, cluster) and the key.
#[derive(Debug, Clone)]
struct Pattern {
    counts: Vec<u32>,
    key: PatternKey,
    instances: Vec<(u8, u8, usize)>,
}

/// Larger is better (see the module docs, objective 4).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PatternKey {
    compute: u32,
    memory: u32,
    counts: Vec<u32>,
    cluster_compute: Vec<u32>,
    cluster_memory: Vec<u32>,
    fewer_media: std::cmp::Reverse<u32>,
    sizes: Vec<(u32, u32)>,
    catalog_order: std::cmp::Reverse<[u8; MAX_PROFILES]>,
    cluster_order: std::cmp::Reverse<Vec<usize>>,
}

/// Per class, the best pattern for each per-cluster count vector, best first.
fn class_patterns(problem: &Problem, floors: &Floors) -> Vec<Vec<Pattern>> {
    let k = problem.clusters.len();
    problem
        .classes
        .iter()
        .enumerate()
        .map(|(h, class)| {
            let masks: Vec<u16> = (0..k)
                .map(|c| {
                    if problem.clusters.get(c).is_some_and(|x| x.demand > 0) {
                        problem.eligible(floors, c, h)
                    } else {
                        0
                    }
                })
                .collect();
            let mut best: HashMap<Vec<u32>, Pattern> = HashMap::new();
            for ms in &class.multisets {
                let mut parts: Vec<(u32, Vec<usize>)> = Vec::new();
                let mut profile_of_part: Vec<usize> = Vec::new();
                let mut usable = true;
                for (p, &count) in ms.counts.iter().enumerate() {
                    if count == 0 {
                        continue;
                    }
                    let eligible: Vec<usize> = masks
                        .iter()
                        .enumerate()
                        .filter(|(_, &m)| m & (1 << p) != 0)
                        .map(|(c, _)| c)
                        .collect();
                    if eligible.is_empty() {
                        usable = false;
                        break;
                    }
                    parts.push((u32::from(count), eligible));
                    profile_of_part.push(p);
                }
                if !usable {
                    continue;
                }
                // Enumerate count matrices part by part.
                let mut matrix: Vec<Vec<u32>> = vec![vec![0; k]; parts.len()];
                enumerate_matrices(&parts, 0, &mut matrix, &mut |m| {
                    let pattern = make_pattern(class.model, ms, &profile_of_part, m, k);
                    match best.get(&pattern.counts) {
                        Some(existing) if existing.key >= pattern.key => {}
                        _ => {
                            best.insert(pattern.counts.clone(), pattern);
                        }
                    }
                });
            }
            let mut v: Vec<Pattern> = best.into_values().collect();
            v.sort_by(|a, b| b.key.cmp(&a.key));
            v
        })
        .collect()
}

fn enumerate_matrices(
    parts: &[(u32, Vec<usize>)],
    i: usize,
    matrix: &mut Vec<Vec<u32>>,
    f: &mut dyn FnMut(&[Vec<u32>]),
) {
    let Some((count, clusters)) = parts.get(i) else {
        f(matrix);
        return;
    };
    let mut row = vec![0u32; matrix.first().map_or(0, Vec::len)];
    compositions(*count, clusters, 0, &mut row, &mut |row| {
        if let Some(r) = matrix.get_mut(i) {
            r.copy_from_slice(row);
        }
        enumerate_matrices(parts, i + 1, matrix, f);
    });
}

fn make_pattern(
    model: &GpuModel,
    ms: &Multiset,
    profile_of_part: &[usize],
    matrix: &[Vec<u32>],
    k: usize,
) -> Pattern {
    let mut counts = vec![0u32; k];
    let mut cluster_compute = vec![0u32; k];
    let mut cluster_memory = vec![0u32; k];
    let mut compute = 0;
    let mut memory = 0;
    let mut media = 0;
    let mut sizes = Vec::new();
    for (row, &p) in matrix.iter().zip(profile_of_part) {
        let Some(profile) = model.profiles.get(p) else {
            continue;
        };
        for (c, &n) in row.iter().enumerate() {
            if let (Some(a), Some(b), Some(d)) = (
                counts.get_mut(c),
                cluster_compute.get_mut(c),
                cluster_memory.get_mut(c),
            ) {
                *a += n;
                *b += n * profile.compute_slices;
                *d += n * profile.memory_slices;
            }
            compute += n * profile.compute_slices;
            memory += n * profile.memory_slices;
            media += n * u32::from(profile.media_extensions);
            for _ in 0..n {
                sizes.push((profile.compute_slices, profile.memory_slices));
            }
        }
    }
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    // Instances: canonical layout; within a profile, lower clusters take lower starts.
    let mut instances = Vec::new();
    for (row, &p) in matrix.iter().zip(profile_of_part) {
        let mut starts: Vec<u8> = ms
            .layout
            .iter()
            .filter(|&&(pi, _)| usize::from(pi) == p)
            .map(|&(_, s)| s)
            .collect();
        starts.sort_unstable();
        let mut it = starts.into_iter();
        for (c, &n) in row.iter().enumerate() {
            for _ in 0..n {
                if let (Some(s), Ok(pi)) = (it.next(), u8::try_from(p)) {
                    instances.push((pi, s, c));
                }
            }
        }
    }
    // Clusters in the canonical layout order (size, then start).
    let cluster_order: Vec<usize> = ms
        .layout
        .iter()
        .filter_map(|&(pi, s)| {
            instances
                .iter()
                .find(|&&(ip, is, _)| ip == pi && is == s)
                .map(|&(_, _, c)| c)
        })
        .collect();
    instances.sort_by_key(|&(_, s, _)| s);
    Pattern {
        key: PatternKey {
            compute,
            memory,
            counts: counts.clone(),
            cluster_compute,
            cluster_memory,
            fewer_media: std::cmp::Reverse(media),
            sizes,
            catalog_order: std::cmp::Reverse(ms.counts),
            cluster_order: std::cmp::Reverse(cluster_order),
        },
        counts,
        instances,
    }
}

/// Stage 4: walks the used devices in order, giving each the best pattern that leaves the
/// rest satisfiable by the later used devices.
fn assign_patterns(
    problem: &Problem,
    prepared: &Prepared,
    space: &dp::Space,
    used: &[usize],
    patterns: &[Vec<Pattern>],
) -> Result<Vec<PlannedInstance>, PlanError> {
    let class_of = |i: usize| problem.devices.get(i).map_or(usize::MAX, |d| d.class);
    let opts: Vec<&[u32]> = used
        .iter()
        .map(|&i| {
            prepared
                .options
                .get(class_of(i))
                .map_or(&[][..], Vec::as_slice)
        })
        .collect();
    let tables = dp::suffix_tables(space, &opts)?;
    let mut remaining: Vec<u32> = problem.clusters.iter().map(|c| c.demand).collect();
    let mut out = Vec::new();
    for (pos, &dev_index) in used.iter().enumerate() {
        if remaining.iter().all(|&r| r == 0) {
            break;
        }
        let Some(device) = problem.devices.get(dev_index) else {
            continue;
        };
        let Some(class) = problem.classes.get(device.class) else {
            continue;
        };
        let Some(next_table) = tables.get(pos + 1) else {
            continue;
        };
        // Need per group after taking `counts` (zero: none) from this device.
        let rest_after = |counts: Option<&[u32]>| -> Vec<u32> {
            prepared
                .groups
                .members
                .iter()
                .map(|members| {
                    members
                        .iter()
                        .map(|&c| {
                            remaining.get(c).copied().unwrap_or(0).saturating_sub(
                                counts.and_then(|v| v.get(c)).copied().unwrap_or(0),
                            )
                        })
                        .sum()
                })
                .collect()
        };
        let chosen = patterns
            .get(device.class)
            .into_iter()
            .flatten()
            .find(|pattern| {
                !pattern.counts.iter().zip(&remaining).any(|(v, r)| v > r)
                    && space.meets(
                        next_table,
                        &space.reorder(&rest_after(Some(&pattern.counts))),
                    )
            });
        let Some(chosen) = chosen else {
            // Only reachable if this device is not needed (the used set is minimal, so this
            // does not happen); leave it empty if the later devices can do without it.
            if space.meets(next_table, &space.reorder(&rest_after(None))) {
                continue;
            }
            return Err(PlanError::Internal {
                detail: format!("no pattern fits device `{}`", device.id),
            });
        };
        for (r, v) in remaining.iter_mut().zip(&chosen.counts) {
            *r -= v;
        }
        for &(pidx, start, c) in &chosen.instances {
            let (Some(profile), Some(cluster)) = (
                class.model.profiles.get(usize::from(pidx)),
                problem.clusters.get(c),
            ) else {
                continue;
            };
            out.push(PlannedInstance {
                cluster: cluster.name.clone(),
                device: device.id.clone(),
                profile: profile.name.to_owned(),
                profile_id: profile.id,
                placement_start: u32::from(start),
                placement_size: profile.placement_size,
            });
        }
    }
    if remaining.iter().any(|&r| r > 0) {
        return Err(PlanError::Internal {
            detail: "the chosen devices did not meet the demand".to_owned(),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Diagnostics
// ---------------------------------------------------------------------------------------

/// Explains why the demand cannot be met: one cluster over its own capacity, then a set of
/// clusters over their joint capacity, else a combination that does not fit.
fn diagnose(problem: &Problem) -> PlanError {
    let k = problem.clusters.len();
    let floors = Floors {
        compute: vec![0; k],
        memory: vec![0; k],
    };
    let demanding: Vec<usize> = (0..k)
        .filter(|&c| problem.clusters.get(c).is_some_and(|x| x.demand > 0))
        .collect();
    // Subsets of demanding clusters by size (up to 12 clusters; else singletons and all).
    let mut subsets: Vec<Vec<usize>> = Vec::new();
    if demanding.len() <= 12 {
        let mut all: Vec<Vec<usize>> = (1u32..(1u32 << demanding.len()))
            .map(|bits| {
                demanding
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| bits & (1 << i) != 0)
                    .map(|(_, &c)| c)
                    .collect()
            })
            .collect();
        all.sort_by_key(Vec::len);
        subsets = all;
    } else {
        subsets.extend(demanding.iter().map(|&c| vec![c]));
        subsets.push(demanding.clone());
    }
    let mut per_cluster_max: Vec<(usize, u32)> = Vec::new();
    for set in &subsets {
        let mut max = 0u64;
        let mut breakdown: Vec<String> = Vec::new();
        for d in &problem.devices {
            let Some(class) = problem.classes.get(d.class) else {
                continue;
            };
            let mask = set
                .iter()
                .fold(0u16, |m, &c| m | problem.eligible(&floors, c, d.class));
            let best = class
                .multisets
                .iter()
                .filter(|ms| {
                    ms.counts
                        .iter()
                        .enumerate()
                        .all(|(p, &n)| n == 0 || mask & (1 << p) != 0)
                })
                .max_by(|a, b| {
                    let total = |m: &Multiset| m.counts.iter().map(|&x| u32::from(x)).sum::<u32>();
                    total(a)
                        .cmp(&total(b))
                        .then_with(|| b.counts.cmp(&a.counts))
                });
            if let Some(ms) = best {
                let total: u32 = ms.counts.iter().map(|&x| u32::from(x)).sum();
                max += u64::from(total);
                breakdown.push(format!("{}: {}", d.id, describe(class.model, ms)));
            }
        }
        let requested: u64 = set
            .iter()
            .filter_map(|&c| problem.clusters.get(c))
            .map(|c| u64::from(c.demand))
            .sum();
        if let [c] = set.as_slice() {
            per_cluster_max.push((*c, u32::try_from(max).unwrap_or(u32::MAX)));
        }
        if requested > max {
            let breakdown = summarise(&breakdown);
            let requested = u32::try_from(requested).unwrap_or(u32::MAX);
            let max = u32::try_from(max).unwrap_or(u32::MAX);
            return match set.as_slice() {
                [c] => PlanError::ClusterCapacity {
                    cluster: problem
                        .clusters
                        .get(*c)
                        .map(|x| x.name.clone())
                        .unwrap_or_default(),
                    requested,
                    max,
                    breakdown,
                },
                _ => PlanError::ClustersCapacity {
                    clusters: names_and(problem, set),
                    requested,
                    max,
                    breakdown,
                },
            };
        }
    }
    let demands = join_and(
        &demanding
            .iter()
            .filter_map(|&c| problem.clusters.get(c))
            .map(|c| format!("`{}`: {}", c.name, c.demand))
            .collect::<Vec<_>>(),
    );
    let detail = format!(
        "alone, the devices could host {}",
        join_and(
            &per_cluster_max
                .iter()
                .filter_map(|&(c, m)| problem.clusters.get(c).map(|x| format!("{m} for `{}`", x.name)))
                .collect::<Vec<_>>()
        )
    );
    PlanError::Unsatisfiable { demands, detail }
}

/// `7 × 1g.10gb` or `3 × 2g.20gb + 1 × 1g.20gb`, largest profiles first.
fn describe(model: &GpuModel, ms: &Multiset) -> String {
    let mut parts: Vec<(&Profile, u8)> = model
        .profiles
        .iter()
        .zip(ms.counts.iter())
        .filter(|(_, &n)| n > 0)
        .map(|(p, &n)| (p, n))
        .collect();
    parts.sort_by_key(|(p, _)| (std::cmp::Reverse(p.compute_slices), std::cmp::Reverse(p.memory_slices)));
    parts
        .iter()
        .map(|(p, n)| format!("{n} × {}", p.name))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Joins per-device entries, eliding after six.
fn summarise(entries: &[String]) -> String {
    if entries.is_empty() {
        return "no MIG device can host any of the allowed profiles".to_owned();
    }
    const SHOWN: usize = 6;
    if entries.len() <= SHOWN {
        return entries.join(", ");
    }
    let shown: Vec<&str> = entries.iter().take(SHOWN).map(String::as_str).collect();
    format!("{}, and {} more devices", shown.join(", "), entries.len() - SHOWN)
}

fn names_and(problem: &Problem, set: &[usize]) -> String {
    join_and(
        &set.iter()
            .filter_map(|&c| problem.clusters.get(c))
            .map(|c| format!("`{}`", c.name))
            .collect::<Vec<_>>(),
    )
}

fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {}", rest.join(", "), last),
    }
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
