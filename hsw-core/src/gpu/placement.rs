//! The geometry of one MIG GPU: which sets of GPU instances fit, and where.
//!
//! Rules (facts file, "Placement rules that bite"): a GPU instance occupies memory slices
//! `[start, start + size)`; instances on one GPU never overlap; a profile starts only at its
//! legal placement starts; at most `max_count` instances of a profile; at most one `+me`
//! instance per GPU; the compute slices of all instances add up to at most the GPU's.

use super::catalog::{GpuModel, Profile};

/// Why a layout of GPU instances is not valid on a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The profile is not one of the model's.
    #[error("profile `{profile}` does not exist on the {model}")]
    UnknownProfile {
        /// Profile name.
        profile: String,
        /// Model display name.
        model: String,
    },
    /// The start is not a legal placement start of the profile.
    #[error("`{profile}` cannot start at memory slice {start}; its legal starts are {legal:?}")]
    IllegalStart {
        /// Profile name.
        profile: String,
        /// The start asked for.
        start: u32,
        /// The legal starts.
        legal: Vec<u32>,
    },
    /// Two instances share memory slices.
    #[error("`{first}` at {first_start} and `{second}` at {second_start} overlap")]
    Overlap {
        /// One instance's profile.
        first: String,
        /// Its start.
        first_start: u32,
        /// The other instance's profile.
        second: String,
        /// Its start.
        second_start: u32,
    },
    /// More instances of one profile than its maximum.
    #[error("{count} instances of `{profile}` but at most {max} fit on one GPU")]
    TooMany {
        /// Profile name.
        profile: String,
        /// How many were asked for.
        count: u32,
        /// The profile's maximum.
        max: u32,
    },
    /// More than one `+me` instance.
    #[error("{count} `+me` instances but a GPU has media engines for only one")]
    MediaExtensions {
        /// How many `+me` instances were asked for.
        count: u32,
    },
    /// More compute slices than the GPU has.
    #[error("the instances need {needed} compute slices but the {model} has {available}")]
    Compute {
        /// Sum of compute slices.
        needed: u32,
        /// The GPU's compute slices.
        available: u32,
        /// Model display name.
        model: String,
    },
}

/// Checks a layout (profile, placement start) of GPU instances on one GPU of `model`.
pub fn check_layout(model: &GpuModel, layout: &[(&Profile, u32)]) -> Result<(), LayoutError> {
    let mut counts = vec![0u32; model.profiles.len()];
    let mut media = 0u32;
    let mut compute = 0u32;
    for &(p, start) in layout {
        let idx = model
            .profile_index(p)
            .ok_or_else(|| LayoutError::UnknownProfile {
                profile: p.name.to_owned(),
                model: model.display_name.to_owned(),
            })?;
        if !p.placement_starts.contains(&start) || start + p.placement_size > model.memory_slices {
            return Err(LayoutError::IllegalStart {
                profile: p.name.to_owned(),
                start,
                legal: p.placement_starts.to_vec(),
            });
        }
        if let Some(c) = counts.get_mut(idx) {
            *c += 1;
        }
        media += u32::from(p.media_extensions);
        compute += p.compute_slices;
    }
    for (i, &(a, sa)) in layout.iter().enumerate() {
        for &(b, sb) in layout.iter().skip(i + 1) {
            if sa < sb + b.placement_size && sb < sa + a.placement_size {
                return Err(LayoutError::Overlap {
                    first: a.name.to_owned(),
                    first_start: sa,
                    second: b.name.to_owned(),
                    second_start: sb,
                });
            }
        }
    }
    for (p, &count) in model.profiles.iter().zip(&counts) {
        if count > p.max_count {
            return Err(LayoutError::TooMany {
                profile: p.name.to_owned(),
                count,
                max: p.max_count,
            });
        }
    }
    if media > 1 {
        return Err(LayoutError::MediaExtensions { count: media });
    }
    if compute > model.compute_slices {
        return Err(LayoutError::Compute {
            needed: compute,
            available: model.compute_slices,
            model: model.display_name.to_owned(),
        });
    }
    Ok(())
}

/// Finds placements for a multiset of profiles on one GPU of `model`.
///
/// Returns the placement start of each input profile (same order), or `None` when the
/// multiset does not fit (or a profile is not the model's). The layout is the canonical one
/// the planner uses: instances ordered by size (compute slices, then memory slices, largest
/// first; plain before `+me`; then catalog order) take the lexicographically lowest starts.
pub fn place(model: &GpuModel, profiles: &[&Profile]) -> Option<Vec<u32>> {
    if profiles.is_empty() {
        return Some(Vec::new());
    }
    let mut counts = [0u8; MAX_PROFILES];
    let mut mask: u16 = 0;
    for p in profiles {
        let idx = model.profile_index(p)?;
        let c = counts.get_mut(idx)?;
        *c = c.checked_add(1)?;
        mask |= 1 << idx;
    }
    let multiset = multisets(model, mask)
        .into_iter()
        .find(|m| m.counts == counts)?;
    // Hand out each profile's starts (ascending) to its occurrences in input order.
    let mut per_profile: Vec<Vec<u32>> = vec![Vec::new(); model.profiles.len()];
    for &(pidx, start) in &multiset.layout {
        per_profile
            .get_mut(usize::from(pidx))?
            .push(u32::from(start));
    }
    for starts in &mut per_profile {
        starts.sort_unstable();
        starts.reverse();
    }
    profiles
        .iter()
        .map(|p| {
            let idx = model.profile_index(p)?;
            per_profile.get_mut(idx)?.pop()
        })
        .collect()
}

/// Profiles per model are at most this many (the 7/8-slice tables have 7, A30 has 5).
pub(crate) const MAX_PROFILES: usize = 8;

/// A multiset of profiles that fits on one GPU, with its canonical layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Multiset {
    /// Instances per profile index.
    pub counts: [u8; MAX_PROFILES],
    /// Canonical layout: (profile index, start), ordered by size (largest first), then start.
    pub layout: Vec<(u8, u8)>,
}

/// Every non-empty multiset of the profiles in `mask` (bit i = `model.profiles[i]`) that fits
/// on one GPU of `model`, each with its canonical layout, in a fixed order.
pub(crate) fn multisets(model: &GpuModel, mask: u16) -> Vec<Multiset> {
    let profiles: Vec<(usize, &Profile)> = model
        .profiles
        .iter()
        .enumerate()
        .take(MAX_PROFILES)
        .filter(|(i, _)| mask & (1 << i) != 0)
        .collect();
    let mut state = Search {
        model,
        profiles: &profiles,
        current: Vec::new(),
        counts: [0; MAX_PROFILES],
        found: Vec::new(),
    };
    state.dfs(0, 0, 0, 0);
    let mut found = state.found;
    // Canonical layout per multiset: the lexicographically smallest start vector with
    // instances in size order.
    for (_, layout) in &mut found {
        sort_canonical(model, layout);
    }
    found.sort_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| {
            let sa: Vec<u8> = a.1.iter().map(|x| x.1).collect();
            let sb: Vec<u8> = b.1.iter().map(|x| x.1).collect();
            sa.cmp(&sb)
        })
    });
    found.dedup_by(|later, earlier| later.0 == earlier.0);
    found
        .into_iter()
        .map(|(counts, layout)| Multiset { counts, layout })
        .collect()
}

/// Orders a layout canonically: compute slices desc, memory slices desc, plain before `+me`,
/// catalog order, start asc.
fn sort_canonical(model: &GpuModel, layout: &mut [(u8, u8)]) {
    layout.sort_by_key(|&(pidx, start)| {
        let p = model.profiles.get(usize::from(pidx));
        (
            std::cmp::Reverse(p.map_or(0, |p| p.compute_slices)),
            std::cmp::Reverse(p.map_or(0, |p| p.memory_slices)),
            p.is_some_and(|p| p.media_extensions),
            pidx,
            start,
        )
    });
}

/// A layout found by the search: counts per profile and (profile index, start) pairs.
type Found = ([u8; MAX_PROFILES], Vec<(u8, u8)>);

struct Search<'a> {
    model: &'a GpuModel,
    profiles: &'a [(usize, &'a Profile)],
    current: Vec<(u8, u8)>,
    counts: [u8; MAX_PROFILES],
    found: Vec<Found>,
}

impl Search<'_> {
    /// Adds instances in increasing (profile position, start) order so each set is visited
    /// once.
    fn dfs(&mut self, from: usize, occupied: u32, compute: u32, media: u32) {
        if !self.current.is_empty() {
            self.found.push((self.counts, self.current.clone()));
        }
        for (pos, &(pidx, p)) in self.profiles.iter().enumerate().skip(from) {
            let count = self.counts.get(pidx).copied().unwrap_or(u8::MAX);
            if u32::from(count) >= p.max_count
                || compute + p.compute_slices > self.model.compute_slices
                || (p.media_extensions && media > 0)
            {
                continue;
            }
            let last_start = match self.current.last() {
                Some(&(lp, ls)) if usize::from(lp) == pidx => Some(u32::from(ls)),
                _ => None,
            };
            for &start in p.placement_starts {
                if last_start.is_some_and(|ls| start <= ls) {
                    continue;
                }
                let end = start + p.placement_size;
                if end > self.model.memory_slices || end > 31 {
                    continue;
                }
                let bits = ((1u32 << p.placement_size) - 1) << start;
                if occupied & bits != 0 {
                    continue;
                }
                let (Ok(pi), Ok(st)) = (u8::try_from(pidx), u8::try_from(start)) else {
                    continue;
                };
                if let Some(c) = self.counts.get_mut(pidx) {
                    *c += 1;
                }
                self.current.push((pi, st));
                self.dfs(
                    pos,
                    occupied | bits,
                    compute + p.compute_slices,
                    media + u32::from(p.media_extensions),
                );
                self.current.pop();
                if let Some(c) = self.counts.get_mut(pidx) {
                    *c -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;
    use crate::gpu::catalog::{A100_40GB, A100_80GB, A30_24GB, MODELS};

    fn p(model: &GpuModel, name: &str) -> &'static Profile {
        match model.profile(name) {
            Some(p) => p,
            None => panic!("no {name}"),
        }
    }

    fn fits(model: &GpuModel, names: &[&str]) -> Option<Vec<u32>> {
        let ps: Vec<&Profile> = names.iter().map(|n| p(model, n)).collect();
        place(model, &ps)
    }

    #[test]
    fn four_g_plus_three_g_is_4_at_0_and_3_at_4() {
        let m = &A100_80GB;
        assert_eq!(fits(m, &["3g.40gb", "4g.40gb"]), Some(vec![4, 0]));
        assert!(check_layout(m, &[(p(m, "4g.40gb"), 0), (p(m, "3g.40gb"), 4)]).is_ok());
        // A 3g at 0 blocks any 4g.
        assert!(check_layout(m, &[(p(m, "3g.40gb"), 0), (p(m, "4g.40gb"), 0)]).is_err());
    }

    #[test]
    fn three_g_three_g_one_g_is_impossible() {
        let m = &A100_80GB;
        assert_eq!(fits(m, &["3g.40gb", "3g.40gb"]), Some(vec![0, 4]));
        assert_eq!(fits(m, &["3g.40gb", "3g.40gb", "1g.10gb"]), None);
        assert_eq!(fits(m, &["3g.40gb", "3g.40gb", "1g.20gb"]), None);
    }

    #[test]
    fn slice_seven_only_for_rev2_one_g_at_6() {
        let m = &A100_80GB;
        let seven = ["1g.10gb"; 7];
        assert_eq!(fits(m, &seven), Some(vec![0, 1, 2, 3, 4, 5, 6]));
        assert_eq!(fits(m, &["1g.10gb"; 8]), None);
        // 1g.20gb at 6 uses slice 7: six 1g.10gb + one 1g.20gb.
        let mut mixed = vec!["1g.10gb"; 6];
        mixed.push("1g.20gb");
        let starts = fits(m, &mixed);
        assert_eq!(starts, Some(vec![0, 1, 2, 3, 4, 5, 6]));
        assert!(check_layout(m, &[(p(m, "1g.20gb"), 6)]).is_ok());
        assert!(check_layout(m, &[(p(m, "1g.10gb"), 7)]).is_err());
    }

    #[test]
    fn two_g_cannot_start_at_6() {
        let m = &A100_80GB;
        assert!(matches!(
            check_layout(m, &[(p(m, "2g.20gb"), 6)]),
            Err(LayoutError::IllegalStart { .. })
        ));
        assert_eq!(
            fits(m, &["4g.40gb", "2g.20gb", "1g.10gb"]),
            Some(vec![0, 4, 6])
        );
        assert!(check_layout(
            m,
            &[
                (p(m, "4g.40gb"), 0),
                (p(m, "2g.20gb"), 4),
                (p(m, "1g.10gb"), 6)
            ]
        )
        .is_ok());
        // 3 × 2g + a REV2 1g at 6.
        assert_eq!(
            fits(m, &["2g.20gb", "2g.20gb", "2g.20gb", "1g.20gb"]),
            Some(vec![0, 2, 4, 6])
        );
        // 4g + 2g + 2g: the second 2g would need start 6.
        assert_eq!(fits(m, &["4g.40gb", "2g.20gb", "2g.20gb"]), None);
    }

    #[test]
    fn one_media_extension_instance_per_gpu() {
        let m = &A100_40GB;
        assert!(fits(m, &["1g.5gb+me", "1g.5gb"]).is_some());
        assert_eq!(fits(m, &["1g.5gb+me", "1g.5gb+me"]), None);
        assert!(matches!(
            check_layout(m, &[(p(m, "1g.5gb+me"), 0), (p(m, "1g.5gb+me"), 1)]),
            Err(LayoutError::TooMany { .. })
        ));
        let a30 = &A30_24GB;
        assert_eq!(fits(a30, &["1g.6gb+me", "2g.12gb+me"]), None);
        assert!(matches!(
            check_layout(a30, &[(p(a30, "1g.6gb+me"), 0), (p(a30, "2g.12gb+me"), 2)]),
            Err(LayoutError::MediaExtensions { count: 2 })
        ));
        assert!(fits(a30, &["1g.6gb+me", "1g.6gb", "2g.12gb"]).is_some());
    }

    #[test]
    fn max_counts_and_compute_hold() {
        let m = &A100_80GB;
        assert_eq!(fits(m, &["1g.20gb"; 5]), None);
        assert!(fits(m, &["1g.20gb"; 4]).is_some());
        assert_eq!(fits(m, &["7g.80gb", "1g.10gb"]), None);
        for model in MODELS {
            let all = multisets(model, u16::MAX);
            assert!(!all.is_empty());
            for ms in &all {
                let layout: Vec<(&Profile, u32)> = ms
                    .layout
                    .iter()
                    .filter_map(|&(i, s)| {
                        model
                            .profiles
                            .get(usize::from(i))
                            .map(|p| (p, u32::from(s)))
                    })
                    .collect();
                assert_eq!(check_layout(model, &layout), Ok(()), "{}", model.key);
            }
        }
    }

    #[test]
    fn a30_geometry() {
        let m = &A30_24GB;
        assert!(fits(m, &["2g.12gb", "2g.12gb"]).is_some());
        assert!(fits(m, &["2g.12gb", "1g.6gb", "1g.6gb"]).is_some());
        assert_eq!(fits(m, &["4g.24gb", "1g.6gb"]), None);
        assert_eq!(fits(m, &["1g.6gb"; 5]), None);
    }
}
