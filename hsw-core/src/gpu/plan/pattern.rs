//! Stage 4 of the objective: the best pattern per device, device by device.

use std::collections::HashMap;

use super::dp;
use super::problem::{compositions, Floors, Prepared, Problem};
use super::{PlanError, PlannedInstance};
use crate::gpu::catalog::GpuModel;
use crate::gpu::placement::{Multiset, MAX_PROFILES};

/// One way to fill a device: instances (profile index, start, cluster) and the key.
#[derive(Debug, Clone)]
pub(super) struct Pattern {
    pub(super) counts: Vec<u32>,
    pub(super) key: PatternKey,
    pub(super) instances: Vec<(u8, u8, usize)>,
}

/// Larger is better (see the module docs, objective 4).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct PatternKey {
    pub(super) compute: u32,
    pub(super) memory: u32,
    pub(super) counts: Vec<u32>,
    pub(super) cluster_compute: Vec<u32>,
    pub(super) cluster_memory: Vec<u32>,
    pub(super) fewer_media: std::cmp::Reverse<u32>,
    pub(super) sizes: Vec<(u32, u32)>,
    pub(super) catalog_order: std::cmp::Reverse<[u8; MAX_PROFILES]>,
    pub(super) cluster_order: std::cmp::Reverse<Vec<usize>>,
}

/// Per class, the best pattern for each per-cluster count vector, best first.
pub(super) fn class_patterns(problem: &Problem, floors: &Floors) -> Vec<Vec<Pattern>> {
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

pub(super) fn enumerate_matrices(
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

pub(super) fn make_pattern(
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
pub(super) fn assign_patterns(
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
        let rest_after =
            |counts: Option<&[u32]>| -> Vec<u32> {
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
