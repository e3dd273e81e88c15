//! The planner's internal model: device classes, cluster groups, per-device options.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::dp;
use super::{DeviceUse, PlanError, PlanInput, TooLarge};
use crate::gpu::catalog::{suggest_profile, GpuModel, MODELS};
use crate::gpu::placement::{multisets, Multiset, MAX_PROFILES};

/// Devices of one model with the same allowed profiles.
#[derive(Debug)]
pub(super) struct Class {
    pub(super) model: &'static GpuModel,
    pub(super) multisets: Vec<Multiset>,
}

#[derive(Debug)]
pub(super) struct MigDevice {
    pub(super) id: String,
    pub(super) class: usize,
}

#[derive(Debug)]
pub(super) struct Cluster {
    pub(super) name: String,
    pub(super) demand: u32,
    /// Eligible profile mask per class, before size floors.
    pub(super) base: Vec<u16>,
}

#[derive(Debug)]
pub(super) struct Problem {
    pub(super) classes: Vec<Class>,
    pub(super) devices: Vec<MigDevice>,
    pub(super) clusters: Vec<Cluster>,
}

/// Size floors per cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Floors {
    pub(super) compute: Vec<u32>,
    pub(super) memory: Vec<u32>,
}

/// Clusters with demand, merged by identical eligibility.
#[derive(Debug, Clone)]
pub(super) struct Groups {
    /// Cluster indices per group.
    pub(super) members: Vec<Vec<usize>>,
    /// Demand per group.
    pub(super) demand: Vec<u32>,
    /// Eligible mask per group per class.
    pub(super) masks: Vec<Vec<u16>>,
}

impl Problem {
    /// Eligible mask of cluster `c` on class `h` under floors.
    pub(super) fn eligible(&self, floors: &Floors, c: usize, h: usize) -> u16 {
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

    pub(super) fn groups(&self, floors: &Floors) -> Groups {
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
    pub(super) fn options(&self, groups: &Groups, h: usize) -> Vec<Vec<u32>> {
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
pub(super) fn distribute(
    parts: &[(u32, Vec<usize>)],
    i: usize,
    acc: &mut [u32],
    f: &mut dyn FnMut(&[u32]),
) {
    let Some((count, groups)) = parts.get(i) else {
        f(acc);
        return;
    };
    compositions(*count, groups, 0, acc, &mut |acc| {
        distribute(parts, i + 1, acc, f)
    });
}

pub(super) fn compositions(
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
pub(super) fn pareto_max(mut v: Vec<Vec<u32>>) -> Vec<Vec<u32>> {
    v.sort_unstable_by(|a, b| {
        b.iter()
            .sum::<u32>()
            .cmp(&a.iter().sum::<u32>())
            .then(b.cmp(a))
    });
    let mut out: Vec<Vec<u32>> = Vec::new();
    for x in v {
        let dominated = out.iter().any(|y| y.iter().zip(&x).all(|(a, b)| a >= b));
        if !dominated {
            out.push(x);
        }
    }
    out
}

/// Options of every class for the groups, plus which devices are capable.
pub(super) struct Prepared {
    pub(super) groups: Groups,
    /// Per class, options flat in DP order (empty: the class cannot host anything).
    pub(super) options: Vec<Vec<u32>>,
    /// Per class, options per group (not reordered).
    pub(super) raw: Vec<Vec<Vec<u32>>>,
    /// The table space; built on creation but its error (too many states) is only reported
    /// when a program needs it, after the cheaper capacity checks.
    space: Result<Option<dp::Space>, TooLarge>,
}

impl Prepared {
    /// The table space (`None`: no group has demand).
    pub(super) fn space(&self) -> Result<Option<&dp::Space>, PlanError> {
        match &self.space {
            Ok(s) => Ok(s.as_ref()),
            Err(e) => Err(e.clone().into()),
        }
    }

    pub(super) fn new(problem: &Problem, floors: &Floors) -> Prepared {
        let groups = problem.groups(floors);
        let raw: Vec<Vec<Vec<u32>>> = (0..problem.classes.len())
            .map(|h| problem.options(&groups, h))
            .collect();
        let space = if groups.demand.is_empty() {
            Ok(None)
        } else {
            dp::Space::new(&groups.demand).map(Some)
        };
        let order = dp::order(&groups.demand);
        let options = raw
            .iter()
            .map(|opts| {
                opts.iter()
                    .flat_map(|o| order.iter().map(|&g| o.get(g).copied().unwrap_or(0)))
                    .collect()
            })
            .collect();
        Prepared {
            groups,
            options,
            raw,
            space,
        }
    }

    /// For a set of groups (bitmask), the most instances one device of class `h` hosts for
    /// them.
    pub(super) fn cap(&self, h: usize, set: u64) -> u32 {
        self.raw
            .get(h)
            .map(|opts| {
                opts.iter()
                    .map(|o| {
                        o.iter()
                            .enumerate()
                            .filter(|(g, _)| set & bit(*g) != 0)
                            .map(|(_, &x)| x)
                            .sum::<u32>()
                    })
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    }

    /// The most weighted instances (sum over groups of weight × instances) one device of class
    /// `h` hosts.
    pub(super) fn weighted_cap(&self, h: usize, w: &[u64]) -> u64 {
        self.raw
            .get(h)
            .map(|opts| {
                opts.iter()
                    .map(|o| {
                        o.iter()
                            .zip(w)
                            .map(|(&x, &wg)| u64::from(x) * wg)
                            .sum::<u64>()
                    })
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    }

    pub(super) fn weighted_demand(&self, w: &[u64]) -> u64 {
        self.groups
            .demand
            .iter()
            .zip(w)
            .map(|(&d, &wg)| u64::from(d) * wg)
            .sum()
    }

    /// Weight vectors for lower bounds: Hall's 0/1 vectors, and for every pair of groups the
    /// weights at which some class's best option changes (the breakpoints of the pair's
    /// fractional bound), others 0.
    pub(super) fn weights(&self) -> Vec<Vec<u64>> {
        let g = self.groups.demand.len();
        let mut out: Vec<Vec<u64>> = self
            .subsets()
            .into_iter()
            .map(|set| (0..g).map(|i| u64::from(set & bit(i) != 0)).collect())
            .collect();
        let mut seen: HashSet<Vec<u64>> = out.iter().cloned().collect();
        for a in 0..g {
            for b in a + 1..g {
                for opts in &self.raw {
                    for o in opts {
                        for q in opts {
                            let (oa, ob) = (o.get(a).copied(), o.get(b).copied());
                            let (qa, qb) = (q.get(a).copied(), q.get(b).copied());
                            let (Some(oa), Some(ob), Some(qa), Some(qb)) = (oa, ob, qa, qb) else {
                                continue;
                            };
                            // o·w = q·w with w = (wa, wb): wa (oa - qa) = wb (qb - ob).
                            if oa <= qa || qb <= ob {
                                continue;
                            }
                            let (mut wa, mut wb) = (u64::from(qb - ob), u64::from(oa - qa));
                            let d = gcd(wa, wb);
                            wa /= d;
                            wb /= d;
                            let mut w = vec![0u64; g];
                            if let Some(x) = w.get_mut(a) {
                                *x = wa;
                            }
                            if let Some(x) = w.get_mut(b) {
                                *x = wb;
                            }
                            if seen.insert(w.clone()) {
                                out.push(w);
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Group subsets for Hall's condition: all of them for up to 12 groups, else singletons
    /// and the full set.
    pub(super) fn subsets(&self) -> Vec<u64> {
        let g = self.groups.demand.len();
        if g == 0 {
            return Vec::new();
        }
        if g <= 12 {
            (1u64..(1u64 << g)).collect()
        } else {
            let mut v: Vec<u64> = (0..g).map(bit).collect();
            v.push(if g >= 64 { u64::MAX } else { (1u64 << g) - 1 });
            v
        }
    }

    pub(super) fn demand_of(&self, set: u64) -> u64 {
        self.groups
            .demand
            .iter()
            .enumerate()
            .filter(|(g, _)| set & bit(*g) != 0)
            .map(|(_, &d)| u64::from(d))
            .sum()
    }

    /// Whether the devices (class per device) meet the demand.
    pub(super) fn feasible(&self, classes: &[usize]) -> Result<bool, PlanError> {
        if self.groups.demand.is_empty() {
            return Ok(true);
        }
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
        let Some(space) = self.space()? else {
            return Ok(true);
        };
        let devices = classes
            .iter()
            .map(|&h| self.options.get(h).map_or(&[][..], Vec::as_slice));
        Ok(dp::feasible(space, devices)?)
    }
}

pub(super) fn build_problem(input: &PlanInput) -> Result<Problem, PlanError> {
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
            let profiles = match input
                .clusters
                .get(c)
                .and_then(|x| x.allowed_profiles.as_ref())
            {
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

/// `1 << i` as a group-set bit (0 past 63 groups, which the state bound rules out anyway).
pub(super) fn bit(i: usize) -> u64 {
    u32::try_from(i)
        .ok()
        .and_then(|i| 1u64.checked_shl(i))
        .unwrap_or(0)
}

pub(super) fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a.max(1)
    } else {
        gcd(b, a % b)
    }
}
