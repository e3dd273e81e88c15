//! Stages 2 and 3 of the objective: the fewest devices, then the lowest ones.

use std::collections::HashSet;

use super::dp;
use super::problem::{Prepared, Problem};
use super::PlanError;

/// Stages 2 and 3: which capable devices (indices into `problem.devices`) are used.
///
/// Selections are tested with exact shortcuts first: Hall's condition proves "no", a
/// candidate selection checked by the plain program proves "yes"; only when both are
/// inconclusive does the layered program run.
pub(super) fn choose_devices(
    problem: &Problem,
    prepared: &Prepared,
    space: &dp::Space,
    capable: &[usize],
) -> Result<Vec<usize>, PlanError> {
    let sel = Selection {
        prepared,
        space,
        classes: capable
            .iter()
            .map(|&i| problem.devices.get(i).map_or(usize::MAX, |d| d.class))
            .collect(),
        weights: prepared.weights(),
    };
    let n = capable.len();
    let all: Vec<usize> = (0..n).collect();
    let (lb, binding) = sel.bound(&[], &all).ok_or_else(|| PlanError::Internal {
        detail: "the devices met the demand but not the capacity bound".to_owned(),
    })?;
    let (t_star, mut witness) = match sel.candidate(&[], &all, lb, binding)? {
        Some(w) => (lb, w),
        None => {
            let devs: Vec<dp::Dev<'_>> = all
                .iter()
                .map(|&p| dp::Dev {
                    options: sel.options(p),
                    forced: false,
                })
                .collect();
            let (t, used) = fewest(space, &devs, lb)?.ok_or_else(|| PlanError::Internal {
                detail: "the devices met the demand but no device count did".to_owned(),
            })?;
            (t, positions(&used, &all))
        }
    };
    if t_star as usize == n {
        return Ok(capable.to_vec());
    }

    // Greedy in device order, keeping a witness (a valid choice of t_star devices).
    let mut included: Vec<usize> = Vec::new();
    let mut closed: HashSet<usize> = HashSet::new();
    for pos in 0..n {
        if included.len() == t_star as usize {
            break;
        }
        let class = sel.class(pos);
        if closed.contains(&class) {
            continue;
        }
        if witness.contains(&pos) {
            included.push(pos);
            continue;
        }
        // Swap with a later witness device of the same class (identical devices).
        if let Some(k) = witness
            .iter()
            .position(|&j| j > pos && sel.class(j) == class)
        {
            if let Some(w) = witness.get_mut(k) {
                *w = pos;
            }
            included.push(pos);
            continue;
        }
        // Is there a choice of t_star devices with this one and the earlier choices?
        let mut forced = included.clone();
        forced.push(pos);
        let free: Vec<usize> = (pos + 1..n)
            .filter(|&j| !closed.contains(&sel.class(j)))
            .collect();
        match sel.exists(&forced, &free, t_star)? {
            Some(w) => {
                witness = w;
                included.push(pos);
            }
            None => {
                // No later device of this class can be added either (they are identical
                // and the choices so far only grow).
                closed.insert(class);
            }
        }
    }
    Ok(included
        .iter()
        .filter_map(|&pos| capable.get(pos).copied())
        .collect())
}

/// Positions (into `of`) whose flag is set.
pub(super) fn positions(flags: &[bool], of: &[usize]) -> Vec<usize> {
    flags
        .iter()
        .zip(of)
        .filter(|(f, _)| **f)
        .map(|(_, &p)| p)
        .collect()
}

/// The device-selection questions of stages 2 and 3, over the capable devices (by position).
pub(super) struct Selection<'a> {
    pub(super) prepared: &'a Prepared,
    pub(super) space: &'a dp::Space,
    pub(super) classes: Vec<usize>,
    /// Weight vectors for the lower bounds (see [`Prepared::weights`]).
    pub(super) weights: Vec<Vec<u64>>,
}

impl Selection<'_> {
    pub(super) fn class(&self, pos: usize) -> usize {
        self.classes.get(pos).copied().unwrap_or(usize::MAX)
    }

    pub(super) fn options(&self, pos: usize) -> &[u32] {
        self.prepared
            .options
            .get(self.class(pos))
            .map_or(&[][..], Vec::as_slice)
    }

    /// A lower bound on the devices used when `forced` are used and the others come from
    /// `free`, with the weight vector that gives it; `None` when even all of them fail.
    ///
    /// For weights `w ≥ 0`, a device of class `h` holds at most `cap_w(h)` weighted instances
    /// and the demand needs `w · n`, so the devices with the largest `cap_w` bound the count
    /// from below (0/1 weights: Hall's condition).
    pub(super) fn bound(&self, forced: &[usize], free: &[usize]) -> Option<(u32, usize)> {
        let mut best = (u32::try_from(forced.len()).unwrap_or(u32::MAX), 0usize);
        for (wi, w) in self.weights.iter().enumerate() {
            let need = self.prepared.weighted_demand(w);
            let mut sum: u64 = forced
                .iter()
                .map(|&p| self.prepared.weighted_cap(self.class(p), w))
                .sum();
            let mut caps: Vec<u64> = free
                .iter()
                .map(|&p| self.prepared.weighted_cap(self.class(p), w))
                .collect();
            caps.sort_unstable_by(|a, b| b.cmp(a));
            let mut count = u32::try_from(forced.len()).unwrap_or(u32::MAX);
            for c in caps {
                if sum >= need {
                    break;
                }
                sum += c;
                count += 1;
            }
            if sum < need {
                return None;
            }
            if count > best.0 {
                best = (count, wi);
            }
        }
        Some(best)
    }

    /// Tries a few selections of `t` devices (`forced` plus free devices taken in input order,
    /// then by weighted capacity for the binding weights and each group alone); returns the
    /// first that meets the demand.
    pub(super) fn candidate(
        &self,
        forced: &[usize],
        free: &[usize],
        t: u32,
        binding: usize,
    ) -> Result<Option<Vec<usize>>, PlanError> {
        let Some(take) = (t as usize).checked_sub(forced.len()) else {
            return Ok(None);
        };
        let g = self.prepared.groups.demand.len();
        let mut weight_orders: Vec<&Vec<u64>> = Vec::new();
        if let Some(w) = self.weights.get(binding) {
            weight_orders.push(w);
        }
        weight_orders.extend(self.weights.iter().filter(|w| {
            let nonzero = w.iter().filter(|&&x| x > 0).count();
            w.iter().all(|&x| x <= 1) && (nonzero == 1 || nonzero == g)
        }));
        let mut orders: Vec<Vec<usize>> = vec![free.to_vec()];
        for w in weight_orders {
            let mut o = free.to_vec();
            o.sort_by_key(|&p| {
                (
                    std::cmp::Reverse(self.prepared.weighted_cap(self.class(p), w)),
                    p,
                )
            });
            orders.push(o);
        }
        let mut tried: HashSet<Vec<usize>> = HashSet::new();
        for order in orders {
            let mut chosen: Vec<usize> = forced.to_vec();
            chosen.extend(order.into_iter().take(take));
            let mut classes: Vec<usize> = chosen.iter().map(|&p| self.class(p)).collect();
            classes.sort_unstable();
            if !tried.insert(classes.clone()) {
                continue;
            }
            if self.prepared.feasible(&classes)? {
                chosen.sort_unstable();
                return Ok(Some(chosen));
            }
        }
        Ok(None)
    }

    /// Whether `t` devices (all of `forced`, the rest from `free`) can meet the demand, with one
    /// such choice. Exact.
    pub(super) fn exists(
        &self,
        forced: &[usize],
        free: &[usize],
        t: u32,
    ) -> Result<Option<Vec<usize>>, PlanError> {
        let binding = match self.bound(forced, free) {
            Some((lb, binding)) if lb <= t => binding,
            _ => return Ok(None),
        };
        if let Some(w) = self.candidate(forced, free, t, binding)? {
            return Ok(Some(w));
        }
        let mut all: Vec<usize> = forced.iter().chain(free).copied().collect();
        all.sort_unstable();
        let devs: Vec<dp::Dev<'_>> = all
            .iter()
            .map(|&p| dp::Dev {
                options: self.options(p),
                forced: forced.contains(&p),
            })
            .collect();
        let total = u32::try_from(all.len()).unwrap_or(u32::MAX);
        let empties = total.saturating_sub(t);
        let used = if t <= empties {
            let r = dp::layered(self.space, &devs, dp::Mode::Used, t, true)?;
            r.answer.filter(|&a| a <= t).and(r.used)
        } else {
            let r = dp::layered(self.space, &devs, dp::Mode::Empty, empties, true)?;
            r.answer.filter(|&a| a >= empties).and(r.used)
        };
        Ok(used.map(|u| positions(&u, &all)))
    }
}

/// The fewest devices that meet the demand and one choice of that many (exact).
pub(super) fn fewest(
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
