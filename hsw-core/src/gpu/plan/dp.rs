//! Exact dynamic programs over devices for the planner.
//!
//! The demand is a vector over *groups* (clusters with identical eligible profiles, merged).
//! One group, the "value" group (the one with the largest demand), is carried as the value
//! of a table; the others index it. A table `T` answers: given that the other groups need at
//! least `s` instances (capped at their demand), how many instances of the value group can the
//! devices processed so far provide at most (capped at its demand)? `NEG` means "cannot".
//!
//! Adding a device with options `O` (its Pareto-maximal instance-count vectors) is a pull
//! step: `T'[s] = max over o in O of min(T[(s - o)+] + o_value, cap)`. A layered table adds a
//! count of used devices (at most `l` used) or of empty devices (at least `l` empty) so that
//! the fewest devices can be found exactly.

use super::TooLarge;

/// "Cannot" in a table. Far from `i32::MIN` so that adding small counts never wraps.
pub(super) const NEG: i32 = i32::MIN / 4;

/// Most states one table may have.
const MAX_STATES: usize = 1 << 22;
/// Most table entries kept at once (for suffix tables and reconstruction), ~64 MiB.
const MAX_KEPT_ENTRIES: usize = 1 << 24;
/// Most state × option updates one program may do (a few seconds).
const MAX_WORK: u128 = 1 << 33;

/// The index space: the demands of the non-value groups, and the value group's demand.
#[derive(Debug, Clone)]
pub(super) struct Space {
    /// Group index of each table dimension; the last entry of `order` is the value group.
    pub order: Vec<usize>,
    /// Demand (cap) per dimension, in `order` (without the value group).
    pub dims: Vec<u32>,
    /// Stride per dimension (dimension 0 is contiguous).
    pub strides: Vec<usize>,
    /// Number of states.
    pub size: usize,
    /// Demand of the value group.
    pub value_cap: i32,
}

impl Space {
    /// Builds the space for group demands (each ≥ 1; at least one group).
    pub fn new(demands: &[u32]) -> Result<Space, TooLarge> {
        let order = order(demands);
        let dims: Vec<u32> = order
            .iter()
            .take(order.len().saturating_sub(1))
            .map(|&g| demands.get(g).copied().unwrap_or(0))
            .collect();
        let value_group = order.last().copied().unwrap_or(0);
        let mut strides = Vec::with_capacity(dims.len());
        let mut size: usize = 1;
        for &d in &dims {
            strides.push(size);
            size = size
                .checked_mul(d as usize + 1)
                .filter(|&s| s <= MAX_STATES)
                .ok_or_else(|| TooLarge {
                    detail: format!(
                        "the demands {demands:?} of clusters with different profile choices span \
                         more than {MAX_STATES} combinations"
                    ),
                })?;
        }
        // Values stay far from i32::MAX so that adding an option's count never wraps.
        let value_cap = i32::try_from(demands.get(value_group).copied().unwrap_or(0))
            .ok()
            .filter(|&v| v <= i32::MAX / 4)
            .ok_or_else(|| TooLarge {
                detail: "a cluster asks for more MIG instances than can be counted".to_owned(),
            })?;
        Ok(Space {
            order,
            dims,
            strides,
            size,
            value_cap,
        })
    }

    /// A device option given per group, rearranged into DP order.
    pub fn reorder(&self, per_group: &[u32]) -> Vec<u32> {
        self.order
            .iter()
            .map(|&g| per_group.get(g).copied().unwrap_or(0))
            .collect()
    }

    /// Index of a need vector given in DP order (the value entry is ignored), capped.
    pub fn index(&self, need: &[u32]) -> usize {
        self.dims
            .iter()
            .zip(&self.strides)
            .zip(need)
            .map(|((&d, &st), &n)| n.min(d) as usize * st)
            .sum()
    }

    /// The table of zero devices.
    pub fn initial(&self) -> Vec<i32> {
        let mut t = vec![NEG; self.size];
        if let Some(first) = t.first_mut() {
            *first = 0;
        }
        t
    }

    /// Whether `table` meets the need vector (DP order, value entry last).
    pub fn meets(&self, table: &[i32], need: &[u32]) -> bool {
        let want = need.last().copied().unwrap_or(0);
        let want = i64::from(want).min(i64::from(self.value_cap));
        table
            .get(self.index(need))
            .is_some_and(|&v| v >= 0 && i64::from(v) >= want)
    }

    /// Whether `table` meets the whole demand.
    pub fn meets_all(&self, table: &[i32]) -> bool {
        table
            .get(self.size.saturating_sub(1))
            .is_some_and(|&v| v >= 0 && v >= self.value_cap)
    }

    fn check_work(&self, devices: usize, layers: usize, options: usize) -> Result<(), TooLarge> {
        let work = devices as u128 * layers as u128 * self.size as u128 * options.max(1) as u128;
        if work > MAX_WORK {
            return Err(TooLarge {
                detail: format!(
                    "an exact search over {devices} devices would take about {work} steps"
                ),
            });
        }
        Ok(())
    }
}

/// The DP order of groups for these demands: all but the largest in input order, then the
/// largest (the value group; the first of equal ones).
pub(super) fn order(demands: &[u32]) -> Vec<usize> {
    let value_group = demands
        .iter()
        .enumerate()
        .max_by_key(|&(i, d)| (*d, std::cmp::Reverse(i)))
        .map_or(0, |(i, _)| i);
    let mut order: Vec<usize> = (0..demands.len()).filter(|&g| g != value_group).collect();
    order.push(value_group);
    order
}

/// One device for a program: its options (flat, `order.len()` numbers each, DP order) and
/// whether it must be used.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dev<'a> {
    pub options: &'a [u32],
    pub forced: bool,
}

/// `new[s] = max(new[s], max_o min(old[(s - o)+] + o_value, cap))` over the device's options.
fn pull(space: &Space, old: &[i32], new: &mut [i32], options: &[u32]) {
    let width = space.order.len();
    if width == 0 {
        return;
    }
    for o in options.chunks_exact(width) {
        let (shift, value) = o.split_at(width - 1);
        let add = value
            .first()
            .map_or(0, |&v| i32::try_from(v).unwrap_or(i32::MAX / 4));
        pull_one(space, old, new, shift, add);
    }
    let cap = space.value_cap;
    for v in new.iter_mut() {
        if *v > cap {
            *v = cap;
        }
    }
}

fn pull_one(space: &Space, old: &[i32], new: &mut [i32], shift: &[u32], add: i32) {
    let Some((&d0, outer_dims)) = space.dims.split_first() else {
        // No dimension: one state.
        if let (Some(n), Some(&o)) = (new.first_mut(), old.first()) {
            *n = (*n).max(o + add);
        }
        return;
    };
    let len0 = d0 as usize + 1;
    let s0 = shift.first().map_or(0, |&s| (s as usize).min(len0));
    let outer_count = space.size / len0;
    let mut digits = vec![0usize; outer_dims.len()];
    for outer in 0..outer_count {
        // Source offset of the outer digits shifted by the option.
        let mut src_base = 0usize;
        for (k, &dig) in digits.iter().enumerate() {
            let sh = shift.get(k + 1).map_or(0, |&s| s as usize);
            let stride = space.strides.get(k + 1).copied().unwrap_or(0);
            src_base += dig.saturating_sub(sh) * stride;
        }
        let dst_base = outer * len0;
        if let (Some(dst), Some(src)) = (
            new.get_mut(dst_base..dst_base + len0),
            old.get(src_base..src_base + len0),
        ) {
            let head = src.first().copied().unwrap_or(NEG) + add;
            let (dst_head, dst_tail) = dst.split_at_mut(s0);
            for d in dst_head {
                *d = (*d).max(head);
            }
            for (d, &s) in dst_tail.iter_mut().zip(src) {
                *d = (*d).max(s + add);
            }
        }
        // Next outer multi-index.
        for (k, dig) in digits.iter_mut().enumerate() {
            let limit = outer_dims.get(k).map_or(0, |&d| d as usize);
            if *dig < limit {
                *dig += 1;
                break;
            }
            *dig = 0;
        }
    }
}

/// Whether devices (each a slice of options in DP order) meet the whole demand.
pub(super) fn feasible<'a>(
    space: &Space,
    devices: impl Iterator<Item = &'a [u32]> + Clone,
) -> Result<bool, TooLarge> {
    let width = space.order.len().max(1);
    let (n, opts) = devices.clone().fold((0usize, 0usize), |(n, o), d| {
        (n + 1, o.max(d.len() / width))
    });
    space.check_work(n, 1, opts)?;
    let mut table = space.initial();
    let mut next = vec![NEG; space.size];
    for options in devices {
        if options.is_empty() {
            continue;
        }
        next.fill(NEG);
        pull(space, &table, &mut next, options);
        std::mem::swap(&mut table, &mut next);
    }
    Ok(space.meets_all(&table))
}

/// Tables for every suffix: `out[i]` is the table of devices `i..`; `out[len]` is empty.
pub(super) fn suffix_tables(space: &Space, devices: &[&[u32]]) -> Result<Vec<Vec<i32>>, TooLarge> {
    let width = space.order.len().max(1);
    let opts = devices.iter().map(|d| d.len() / width).max().unwrap_or(0);
    space.check_work(devices.len(), 1, opts)?;
    if (devices.len() + 1).saturating_mul(space.size) > MAX_KEPT_ENTRIES {
        return Err(TooLarge {
            detail: format!(
                "keeping {} tables of {} states exceeds the memory bound",
                devices.len() + 1,
                space.size
            ),
        });
    }
    let mut out = Vec::with_capacity(devices.len() + 1);
    out.push(space.initial());
    for options in devices.iter().rev() {
        let prev = out.last().cloned().unwrap_or_else(|| space.initial());
        let mut next = if options.is_empty() {
            prev.clone()
        } else {
            vec![NEG; space.size]
        };
        if !options.is_empty() {
            pull(space, &prev, &mut next, options);
        }
        out.push(next);
    }
    out.reverse();
    Ok(out)
}

/// What a layered program counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Layer `l`: at most `l` devices used.
    Used,
    /// Layer `l`: at least `l` devices empty (the last layer: at least that many).
    Empty,
}

/// Result of a layered program.
#[derive(Debug)]
pub(super) struct Layered {
    /// `Used`: the fewest devices used, if at most `limit`. `Empty`: the most empty devices,
    /// capped at `limit`; `None` when the demand cannot be met at all.
    pub answer: Option<u32>,
    /// With `keep`, which devices are used in one solution that attains `answer`.
    pub used: Option<Vec<bool>>,
}

/// Runs a layered program over `devices` with layers `0..=limit`.
pub(super) fn layered(
    space: &Space,
    devices: &[Dev<'_>],
    mode: Mode,
    limit: u32,
    keep: bool,
) -> Result<Layered, TooLarge> {
    let layers = limit as usize + 1;
    let width = space.order.len().max(1);
    let opts = devices
        .iter()
        .map(|d| d.options.len() / width)
        .max()
        .unwrap_or(0);
    space.check_work(devices.len(), layers, opts + 1)?;
    let per = layers.saturating_mul(space.size);
    if keep && (devices.len() + 1).saturating_mul(per) > MAX_KEPT_ENTRIES {
        return Err(TooLarge {
            detail: format!(
                "reconstructing a plan over {} devices needs {} × {} table entries",
                devices.len(),
                devices.len() + 1,
                per
            ),
        });
    }
    // table[l * size + s]
    let mut table = vec![NEG; per];
    match mode {
        Mode::Used => {
            for l in 0..layers {
                if let Some(v) = table.get_mut(l * space.size) {
                    *v = 0;
                }
            }
        }
        Mode::Empty => {
            if let Some(v) = table.first_mut() {
                *v = 0;
            }
        }
    }
    let mut kept: Vec<Vec<i32>> = Vec::new();
    let mut next = vec![NEG; per];
    for dev in devices {
        if keep {
            kept.push(table.clone());
        }
        next.fill(NEG);
        for l in 0..layers {
            let lo = l * space.size;
            let hi = lo + space.size;
            // Used with an option: same layer (Empty) or from layer l - 1 (Used).
            let from = match mode {
                Mode::Used => l.checked_sub(1),
                Mode::Empty => Some(l),
            };
            if let Some(f) = from {
                let (src, dst) = split_layers(&table, &mut next, f, l, space.size);
                if let (Some(src), Some(dst)) = (src, dst) {
                    pull(space, src, dst, dev.options);
                }
            }
            // Left empty.
            if !dev.forced {
                let from = match mode {
                    Mode::Used => Some(l),
                    Mode::Empty => Some(l.saturating_sub(1)),
                };
                if let Some(f) = from {
                    let flo = f * space.size;
                    if let (Some(src), Some(dst)) =
                        (table.get(flo..flo + space.size), next.get_mut(lo..hi))
                    {
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d = (*d).max(s);
                        }
                    }
                }
                if mode == Mode::Empty && l + 1 == layers && l > 0 {
                    // "At least `limit` empty" stays so with one more empty device.
                    if let (Some(src), Some(dst)) = (table.get(lo..hi), next.get_mut(lo..hi)) {
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d = (*d).max(s);
                        }
                    }
                }
            }
        }
        std::mem::swap(&mut table, &mut next);
    }
    let meets = |l: usize| {
        table
            .get(l * space.size..(l + 1) * space.size)
            .is_some_and(|t| space.meets_all(t))
    };
    let answer = match mode {
        Mode::Used => (0..layers).find(|&l| meets(l)),
        Mode::Empty => (0..layers).rev().find(|&l| meets(l)),
    };
    let answer_u32 = answer.and_then(|a| u32::try_from(a).ok());
    let used = match (keep, answer) {
        (true, Some(a)) => reconstruct(space, devices, mode, layers, &kept, a),
        _ => None,
    };
    Ok(Layered {
        answer: answer_u32,
        used,
    })
}

/// Borrows layer `from` of `table` and layer `to` of `next`.
fn split_layers<'t>(
    table: &'t [i32],
    next: &'t mut [i32],
    from: usize,
    to: usize,
    size: usize,
) -> (Option<&'t [i32]>, Option<&'t mut [i32]>) {
    (
        table.get(from * size..(from + 1) * size),
        next.get_mut(to * size..(to + 1) * size),
    )
}

/// Walks the kept tables back to find which devices one solution uses.
fn reconstruct(
    space: &Space,
    devices: &[Dev<'_>],
    mode: Mode,
    layers: usize,
    kept: &[Vec<i32>],
    answer_layer: usize,
) -> Option<Vec<bool>> {
    let width = space.order.len();
    let mut need: Vec<u32> = space.dims.clone();
    need.push(u32::try_from(space.value_cap).unwrap_or(0));
    let mut layer = answer_layer;
    let mut used = vec![false; devices.len()];
    for (i, dev) in devices.iter().enumerate().rev() {
        let before = kept.get(i)?;
        let layer_slice = |l: usize| before.get(l * space.size..(l + 1) * space.size);
        // Try leaving the device empty first.
        if !dev.forced {
            let candidates: Vec<usize> = match mode {
                Mode::Used => vec![layer],
                Mode::Empty if layer + 1 == layers && layer > 0 => vec![layer - 1, layer],
                Mode::Empty => vec![layer.saturating_sub(1)],
            };
            if let Some(&l) = candidates
                .iter()
                .find(|&&l| layer_slice(l).is_some_and(|t| space.meets(t, &need)))
            {
                layer = l;
                continue;
            }
        }
        let from = match mode {
            Mode::Used => layer.checked_sub(1)?,
            Mode::Empty => layer,
        };
        let t = layer_slice(from)?;
        let mut found = false;
        for o in dev.options.chunks_exact(width.max(1)) {
            let rest: Vec<u32> = need
                .iter()
                .zip(o)
                .map(|(&n, &x)| n.saturating_sub(x))
                .collect();
            if space.meets(t, &rest) {
                need = rest;
                found = true;
                break;
            }
        }
        if !found {
            return None;
        }
        if let Some(u) = used.get_mut(i) {
            *u = true;
        }
        layer = from;
    }
    Some(used)
}
