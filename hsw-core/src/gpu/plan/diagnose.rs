//! Why a demand cannot be met, in numbers.

use super::problem::{Floors, Problem};
use super::PlanError;
use crate::gpu::catalog::{GpuModel, Profile};
use crate::gpu::placement::Multiset;

/// Explains why the demand cannot be met: one cluster over its own capacity, then a set of
/// clusters over their joint capacity, else a combination that does not fit.
pub(super) fn diagnose(problem: &Problem) -> PlanError {
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
                .filter_map(|&(c, m)| problem
                    .clusters
                    .get(c)
                    .map(|x| format!("{m} for `{}`", x.name)))
                .collect::<Vec<_>>()
        )
    );
    PlanError::Unsatisfiable { demands, detail }
}

/// `7 × 1g.10gb` or `3 × 2g.20gb + 1 × 1g.20gb`, largest profiles first.
pub(super) fn describe(model: &GpuModel, ms: &Multiset) -> String {
    let mut parts: Vec<(&Profile, u8)> = model
        .profiles
        .iter()
        .zip(ms.counts.iter())
        .filter(|(_, &n)| n > 0)
        .map(|(p, &n)| (p, n))
        .collect();
    parts.sort_by_key(|(p, _)| {
        (
            std::cmp::Reverse(p.compute_slices),
            std::cmp::Reverse(p.memory_slices),
        )
    });
    parts
        .iter()
        .map(|(p, n)| format!("{n} × {}", p.name))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Joins per-device entries, eliding after six.
pub(super) fn summarise(entries: &[String]) -> String {
    if entries.is_empty() {
        return "no MIG device can host any of the allowed profiles".to_owned();
    }
    const SHOWN: usize = 6;
    if entries.len() <= SHOWN {
        return entries.join(", ");
    }
    let shown: Vec<&str> = entries.iter().take(SHOWN).map(String::as_str).collect();
    format!(
        "{}, and {} more devices",
        shown.join(", "),
        entries.len() - SHOWN
    )
}

pub(super) fn names_and(problem: &Problem, set: &[usize]) -> String {
    join_and(
        &set.iter()
            .filter_map(|&c| problem.clusters.get(c))
            .map(|c| format!("`{}`", c.name))
            .collect::<Vec<_>>(),
    )
}

pub(super) fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {}", rest.join(", "), last),
    }
}
