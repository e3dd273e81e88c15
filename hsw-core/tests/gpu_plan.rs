//! Cross-checks of the MIG catalog, placement helper and planner against brute force written
//! independently here (it shares only the catalog tables with the code under test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hsw_core::config::model::CLUSTER_KEYS;
use hsw_core::gpu::catalog::{GpuModel, Profile, MODELS};
use hsw_core::gpu::placement::{check_layout, place};
use hsw_core::gpu::plan::{
    plan, ClusterDemand, DeviceUse, GpuPlan, PlanDevice, PlanError, PlanInput,
};

// ---------------------------------------------------------------------------------------
// Independent geometry
// ---------------------------------------------------------------------------------------

/// Whether (profile index, start) pairs form a valid layout, checked rule by rule.
fn valid(model: &GpuModel, inst: &[(usize, u32)]) -> bool {
    let mut used = vec![false; model.memory_slices as usize];
    let mut counts = vec![0u32; model.profiles.len()];
    let (mut media, mut compute) = (0, 0);
    for &(p, s) in inst {
        let prof = &model.profiles[p];
        if !prof.placement_starts.contains(&s) {
            return false;
        }
        for x in s..s + prof.memory_slices {
            if x >= model.memory_slices || used[x as usize] {
                return false;
            }
            used[x as usize] = true;
        }
        counts[p] += 1;
        if counts[p] > prof.max_count {
            return false;
        }
        media += u32::from(prof.media_extensions);
        compute += prof.compute_slices;
    }
    media <= 1 && compute <= model.compute_slices
}

/// Every valid layout (sorted slot lists), by include/exclude over all (profile, start) slots.
fn all_layouts(model: &GpuModel) -> Vec<Vec<(usize, u32)>> {
    let slots: Vec<(usize, u32)> = model
        .profiles
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.placement_starts.iter().map(move |&s| (i, s)))
        .collect();
    let mut out = Vec::new();
    let mut cur = Vec::new();
    fn rec(
        model: &GpuModel,
        slots: &[(usize, u32)],
        i: usize,
        cur: &mut Vec<(usize, u32)>,
        out: &mut Vec<Vec<(usize, u32)>>,
    ) {
        if !valid(model, cur) {
            return; // every rule is monotone: a superset of an invalid layout is invalid
        }
        if i == slots.len() {
            out.push(cur.clone());
            return;
        }
        rec(model, slots, i + 1, cur, out);
        cur.push(slots[i]);
        rec(model, slots, i + 1, cur, out);
        cur.pop();
    }
    rec(model, &slots, 0, &mut cur, &mut out);
    out
}

fn counts_of(model: &GpuModel, layout: &[(usize, u32)]) -> Vec<u32> {
    let mut c = vec![0u32; model.profiles.len()];
    for &(p, _) in layout {
        c[p] += 1;
    }
    c
}

struct Geometry {
    layouts: Vec<Vec<(usize, u32)>>,
    multisets: BTreeSet<Vec<u32>>,
}

fn geometry() -> HashMap<&'static str, Geometry> {
    MODELS
        .iter()
        .map(|m| {
            let layouts = all_layouts(m);
            let multisets = layouts.iter().map(|l| counts_of(m, l)).collect();
            (m.key, Geometry { layouts, multisets })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Placement helper vs brute force, every multiset of every model
// ---------------------------------------------------------------------------------------

#[test]
fn place_agrees_with_brute_force_on_every_multiset() {
    let geo = geometry();
    let mut checked = 0usize;
    for model in MODELS {
        let g = &geo[model.key];
        // Every count vector with each count up to the profile's maximum, plus one over.
        let limits: Vec<u32> = model.profiles.iter().map(|p| p.max_count + 1).collect();
        let mut counts = vec![0u32; limits.len()];
        loop {
            let total_mem: u32 = counts
                .iter()
                .zip(model.profiles)
                .map(|(c, p)| c * p.memory_slices)
                .sum();
            // "Up to the device capacity": at most the memory slices plus one instance more.
            if total_mem <= model.memory_slices + 2 {
                let profiles: Vec<&Profile> = counts
                    .iter()
                    .zip(model.profiles)
                    .flat_map(|(&c, p)| std::iter::repeat_n(p, c as usize))
                    .collect();
                let got = place(model, &profiles);
                let want = g.multisets.contains(&counts);
                assert_eq!(got.is_some(), want, "{} {:?}", model.key, counts);
                if let Some(starts) = got {
                    let layout: Vec<(usize, u32)> = profiles
                        .iter()
                        .zip(&starts)
                        .map(|(p, &s)| (model.profile_index(p).unwrap(), s))
                        .collect();
                    assert!(valid(model, &layout), "{} {:?}", model.key, layout);
                    let pairs: Vec<(&Profile, u32)> = profiles
                        .iter()
                        .copied()
                        .zip(starts.iter().copied())
                        .collect();
                    assert_eq!(check_layout(model, &pairs), Ok(()));
                }
                checked += 1;
            }
            // Next count vector.
            let mut i = 0;
            loop {
                if i == counts.len() {
                    assert!(checked > 0);
                    break;
                }
                counts[i] += 1;
                if counts[i] <= limits[i] {
                    break;
                }
                counts[i] = 0;
                i += 1;
            }
            if i == counts.len() {
                break;
            }
        }
        // check_layout agrees with the brute-force validator on every valid layout and on
        // every layout with one extra slot.
        for layout in &g.layouts {
            let pairs: Vec<(&Profile, u32)> = layout
                .iter()
                .map(|&(p, s)| (&model.profiles[p], s))
                .collect();
            assert_eq!(check_layout(model, &pairs), Ok(()));
        }
    }
    assert!(checked > 2_500, "{checked}");
}

#[test]
fn check_layout_rejects_exactly_the_invalid_layouts() {
    for model in MODELS {
        let slots: Vec<(usize, u32)> = model
            .profiles
            .iter()
            .enumerate()
            .flat_map(|(i, _)| (0..model.memory_slices).map(move |s| (i, s)))
            .collect();
        // All layouts of up to 3 instances at any start (legal or not).
        for a in 0..slots.len() {
            for b in a..slots.len() {
                for c in b..slots.len() {
                    let l = [slots[a], slots[b], slots[c]];
                    let pairs: Vec<(&Profile, u32)> =
                        l.iter().map(|&(p, s)| (&model.profiles[p], s)).collect();
                    assert_eq!(
                        check_layout(model, &pairs).is_ok(),
                        valid(model, &l),
                        "{l:?}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Planner vs brute force
// ---------------------------------------------------------------------------------------

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Per device of the input: its model and allowed profile indices; per cluster and device: the
/// profile indices the cluster may use there.
struct Eligibility {
    models: Vec<&'static GpuModel>,
    /// [cluster][device] → profile indices
    cluster: Vec<Vec<BTreeSet<usize>>>,
}

fn eligibility(input: &PlanInput) -> Eligibility {
    let mig: Vec<&PlanDevice> = input
        .devices
        .iter()
        .filter(|d| d.use_ == DeviceUse::Mig)
        .collect();
    let models: Vec<&'static GpuModel> = mig.iter().map(|d| d.model.unwrap()).collect();
    let device_allowed: Vec<BTreeSet<usize>> = mig
        .iter()
        .map(|d| {
            let m = d.model.unwrap();
            m.profiles
                .iter()
                .enumerate()
                .filter(|(_, p)| match &d.allowed_profiles {
                    None => !p.media_extensions,
                    Some(names) => names.iter().any(|n| n == p.name),
                })
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    let cluster = input
        .clusters
        .iter()
        .map(|c| {
            mig.iter()
                .zip(&device_allowed)
                .map(|(d, allowed)| {
                    let m = d.model.unwrap();
                    allowed
                        .iter()
                        .copied()
                        .filter(|&i| match &c.allowed_profiles {
                            None => true,
                            Some(names) => names.iter().any(|n| n == m.profiles[i].name),
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    Eligibility { models, cluster }
}

/// Brute-force feasibility for two clusters: reachable (a, b) sets per device, summed.
fn brute_feasible(input: &PlanInput, geo: &HashMap<&'static str, Geometry>) -> bool {
    let e = eligibility(input);
    let need: Vec<u32> = input.clusters.iter().map(|c| c.mig_instances).collect();
    assert_eq!(need.len(), 2);
    let mut reach: BTreeSet<(u32, u32)> = BTreeSet::from([(0, 0)]);
    for (d, model) in e.models.iter().enumerate() {
        let mut dev: BTreeSet<(u32, u32)> = BTreeSet::new();
        for layout in &geo[model.key].layouts {
            let (mut only_a, mut only_b, mut both) = (0, 0, 0);
            let mut usable = true;
            for &(p, _) in layout {
                let a = e.cluster[0][d].contains(&p);
                let b = e.cluster[1][d].contains(&p);
                match (a, b) {
                    (true, true) => both += 1,
                    (true, false) => only_a += 1,
                    (false, true) => only_b += 1,
                    (false, false) => usable = false,
                }
            }
            if !usable {
                continue; // the same layout without that instance is enumerated too
            }
            for t in 0..=both {
                dev.insert((only_a + t, only_b + both - t));
            }
        }
        let mut next = BTreeSet::new();
        for &(a, b) in &reach {
            next.insert((a, b));
            for &(x, y) in &dev {
                next.insert(((a + x).min(need[0]), (b + y).min(need[1])));
            }
        }
        // Downward closure is implied by capping plus sub-layouts; keep it small anyway.
        reach = next;
    }
    reach.iter().any(|&(a, b)| a >= need[0] && b >= need[1])
}

/// Validates a plan against the input with the brute-force rules.
fn validate(input: &PlanInput, plan: &GpuPlan) {
    let e = eligibility(input);
    let mig: Vec<&PlanDevice> = input
        .devices
        .iter()
        .filter(|d| d.use_ == DeviceUse::Mig)
        .collect();
    let mut per_device: BTreeMap<usize, Vec<(usize, u32)>> = BTreeMap::new();
    let mut per_cluster: HashMap<&str, u32> = HashMap::new();
    let mut last: Option<(usize, u32)> = None;
    for inst in &plan.instances {
        let d = mig
            .iter()
            .position(|x| x.id == inst.device)
            .unwrap_or_else(|| panic!("{} is not a MIG device", inst.device));
        let model = e.models[d];
        let p = model
            .profiles
            .iter()
            .position(|p| p.name == inst.profile)
            .unwrap_or_else(|| panic!("{} not on {}", inst.profile, model.key));
        assert_eq!(model.profiles[p].id, inst.profile_id);
        assert_eq!(model.profiles[p].placement_size, inst.placement_size);
        let c = input
            .clusters
            .iter()
            .position(|c| c.name == inst.cluster)
            .unwrap();
        assert!(e.cluster[c][d].contains(&p), "{inst:?} not allowed");
        per_device
            .entry(d)
            .or_default()
            .push((p, inst.placement_start));
        *per_cluster.entry(inst.cluster.as_str()).or_default() += 1;
        // Ordered by device, then start.
        if let Some(prev) = last {
            assert!(prev < (d, inst.placement_start), "order");
        }
        last = Some((d, inst.placement_start));
    }
    for (d, layout) in &per_device {
        assert!(valid(e.models[*d], layout), "invalid layout {layout:?}");
    }
    for c in &input.clusters {
        assert_eq!(
            per_cluster.get(c.name.as_str()).copied().unwrap_or(0),
            c.mig_instances,
            "count of {}",
            c.name
        );
    }
}

fn random_input(
    rng: &mut Rng,
    max_devices: u64,
    models: &[&'static GpuModel],
    max_demand: u64,
) -> PlanInput {
    let n = 1 + rng.below(max_devices) as usize;
    let mut devices = Vec::new();
    for i in 0..n {
        let model = models[rng.below(models.len() as u64) as usize];
        let allowed = if rng.below(3) == 0 {
            None
        } else {
            let names: Vec<String> = model
                .profiles
                .iter()
                .filter(|_| rng.below(2) == 0)
                .map(|p| p.name.to_owned())
                .collect();
            if names.is_empty() {
                None
            } else {
                Some(names)
            }
        };
        devices.push(PlanDevice {
            id: format!("GPU-{i}"),
            model: Some(model),
            use_: DeviceUse::Mig,
            allowed_profiles: allowed,
        });
    }
    let names: Vec<&str> = devices
        .iter()
        .flat_map(|d| d.model.unwrap().profiles.iter().map(|p| p.name))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let clusters = CLUSTER_KEYS
        .iter()
        .map(|name| {
            let allowed = if rng.below(3) == 0 {
                None
            } else {
                let v: Vec<String> = names
                    .iter()
                    .filter(|_| rng.below(3) == 0)
                    .map(|s| (*s).to_owned())
                    .collect();
                if v.is_empty() {
                    None
                } else {
                    Some(v)
                }
            };
            ClusterDemand {
                name: (*name).to_owned(),
                mig_instances: rng.below(max_demand + 1) as u32,
                allowed_profiles: allowed,
                whole_gpus: 0,
            }
        })
        .collect();
    PlanInput { devices, clusters }
}

#[test]
fn plan_exists_exactly_when_brute_force_finds_one() {
    let geo = geometry();
    let models: Vec<&'static GpuModel> = MODELS.iter().collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut feasible, mut infeasible) = (0, 0);
    for case in 0..1500 {
        let input = random_input(&mut rng, 3, &models, 8);
        let want = brute_feasible(&input, &geo);
        match plan(&input) {
            Ok(p) => {
                assert!(
                    want,
                    "case {case}: planned but brute force says no: {input:#?}"
                );
                validate(&input, &p);
                feasible += 1;
            }
            Err(e) => {
                assert!(
                    !want,
                    "case {case}: brute force found a plan but the planner said: {e}\n{input:#?}"
                );
                assert!(
                    matches!(
                        e,
                        PlanError::ClusterCapacity { .. }
                            | PlanError::ClustersCapacity { .. }
                            | PlanError::Unsatisfiable { .. }
                            | PlanError::ProfilesNotAllowed { .. }
                    ),
                    "case {case}: {e}"
                );
                infeasible += 1;
            }
        }
    }
    // Both outcomes are well represented.
    assert!(
        feasible > 300 && infeasible > 300,
        "{feasible} / {infeasible}"
    );
}

#[test]
fn near_capacity_cases_agree_with_brute_force() {
    // Demands drawn near each cluster's joint capacity, where layouts interact most.
    let geo = geometry();
    let models: Vec<&'static GpuModel> = MODELS.iter().collect();
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    for case in 0..400 {
        let mut input = random_input(&mut rng, 3, &models, 1);
        let devices = input.devices.len() as u32;
        for c in &mut input.clusters {
            c.mig_instances = rng.below(u64::from(4 * devices) + 1) as u32;
        }
        let want = brute_feasible(&input, &geo);
        let got = plan(&input);
        assert_eq!(got.is_ok(), want, "case {case}: {got:?}\n{input:#?}");
        if let Ok(p) = got {
            validate(&input, &p);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The objective vs brute force over every plan (tiny cases)
// ---------------------------------------------------------------------------------------

/// One device's contents: instances (profile index, cluster) without placements.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    counts: Vec<u32>,
    key: Vec<i64>,
    instances: Vec<(usize, usize)>,
}

/// The documented pattern key (objective 4), as a flat vector compared lexicographically
/// (larger is better).
fn pattern_key(model: &GpuModel, instances: &[(usize, usize)], k: usize) -> Vec<i64> {
    let p = |i: usize| &model.profiles[i];
    let compute: i64 = instances
        .iter()
        .map(|&(i, _)| i64::from(p(i).compute_slices))
        .sum();
    let memory: i64 = instances
        .iter()
        .map(|&(i, _)| i64::from(p(i).memory_slices))
        .sum();
    let mut key = vec![compute, memory];
    for c in 0..k {
        key.push(instances.iter().filter(|x| x.1 == c).count() as i64);
    }
    for c in 0..k {
        key.push(
            instances
                .iter()
                .filter(|x| x.1 == c)
                .map(|&(i, _)| i64::from(p(i).compute_slices))
                .sum(),
        );
    }
    for c in 0..k {
        key.push(
            instances
                .iter()
                .filter(|x| x.1 == c)
                .map(|&(i, _)| i64::from(p(i).memory_slices))
                .sum(),
        );
    }
    key.push(
        -(instances
            .iter()
            .filter(|&&(i, _)| p(i).media_extensions)
            .count() as i64),
    );
    let mut sizes: Vec<(u32, u32)> = instances
        .iter()
        .map(|&(i, _)| (p(i).compute_slices, p(i).memory_slices))
        .collect();
    sizes.sort_by(|a, b| b.cmp(a));
    // Lists of different lengths: pad so that longer (more instances) compares as in Vec order.
    for s in 0..8 {
        match sizes.get(s) {
            Some(&(c, m)) => {
                key.push(i64::from(c) + 1);
                key.push(i64::from(m) + 1);
            }
            None => {
                key.push(0);
                key.push(0);
            }
        }
    }
    for i in 0..8 {
        key.push(-(instances.iter().filter(|x| x.0 == i).count() as i64));
    }
    // Clusters in placement order: by size (compute, memory desc; plain before +me; catalog
    // order); within a profile the placement order pairs lower clusters with lower starts.
    let mut ordered: Vec<(usize, usize)> = instances.to_vec();
    ordered.sort_by_key(|&(i, c)| {
        (
            std::cmp::Reverse(p(i).compute_slices),
            std::cmp::Reverse(p(i).memory_slices),
            p(i).media_extensions,
            i,
            c,
        )
    });
    for s in 0..8 {
        key.push(ordered.get(s).map_or(0, |&(_, c)| -(c as i64) - 1));
    }
    key
}

fn device_patterns(
    model: &GpuModel,
    geo: &Geometry,
    eligible: &[BTreeSet<usize>],
    demand: &[u32],
) -> Vec<Pattern> {
    let k = eligible.len();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for ms in &geo.multisets {
        let profiles: Vec<usize> = ms
            .iter()
            .enumerate()
            .flat_map(|(i, &n)| std::iter::repeat_n(i, n as usize))
            .collect();
        if profiles.is_empty() {
            continue;
        }
        // Every assignment of instances to clusters (then dedupe by sorted form).
        let total = k.pow(profiles.len() as u32);
        for code in 0..total {
            let mut x = code;
            let mut inst = Vec::new();
            let mut ok = true;
            for &i in &profiles {
                let c = x % k;
                x /= k;
                if !eligible[c].contains(&i) || demand[c] == 0 {
                    ok = false;
                    break;
                }
                inst.push((i, c));
            }
            if !ok {
                continue;
            }
            inst.sort();
            if !seen.insert(inst.clone()) {
                continue;
            }
            let mut counts = vec![0u32; k];
            for &(_, c) in &inst {
                counts[c] += 1;
            }
            if counts.iter().zip(demand).any(|(a, b)| a > b) {
                continue;
            }
            out.push(Pattern {
                key: pattern_key(model, &inst, k),
                counts,
                instances: inst,
            });
        }
    }
    out
}

/// The documented objective of a whole plan (per device: pattern or None), larger is better.
fn plan_key(
    models: &[&GpuModel],
    choice: &[Option<&Pattern>],
    demand: &[u32],
) -> (Vec<i64>, Vec<Vec<i64>>) {
    let k = demand.len();
    let mut cmin = vec![u32::MAX; k];
    let mut mmin = vec![u32::MAX; k];
    for (d, pat) in choice.iter().enumerate() {
        if let Some(pat) = pat {
            for &(i, c) in &pat.instances {
                let p = &models[d].profiles[i];
                cmin[c] = cmin[c].min(p.compute_slices);
                mmin[c] = mmin[c].min(p.memory_slices);
            }
        }
    }
    let active: Vec<usize> = (0..k).filter(|&c| demand[c] > 0).collect();
    let mut head = Vec::new();
    head.push(
        active
            .iter()
            .map(|&c| i64::from(cmin[c]))
            .min()
            .unwrap_or(0),
    );
    head.extend(active.iter().map(|&c| i64::from(cmin[c])));
    head.push(
        active
            .iter()
            .map(|&c| i64::from(mmin[c]))
            .min()
            .unwrap_or(0),
    );
    head.extend(active.iter().map(|&c| i64::from(mmin[c])));
    let used: Vec<usize> = (0..choice.len()).filter(|&d| choice[d].is_some()).collect();
    head.push(-(used.len() as i64));
    // Lexicographically smallest used set: compare membership flags, earlier set first.
    head.extend((0..choice.len()).map(|d| i64::from(choice[d].is_some())));
    let tail = used
        .iter()
        .map(|&d| choice[d].map(|p| p.key.clone()).unwrap_or_default())
        .collect();
    (head, tail)
}

/// A plan's key and its per-device patterns.
type Best = ((Vec<i64>, Vec<Vec<i64>>), Vec<Option<Pattern>>);

/// The best plan by brute force: (device, profile name, cluster) lists, then the planner's
/// placements are checked to be the canonical lowest ones.
fn brute_best(
    input: &PlanInput,
    geo: &HashMap<&'static str, Geometry>,
) -> Option<Vec<Option<Pattern>>> {
    let e = eligibility(input);
    let demand: Vec<u32> = input.clusters.iter().map(|c| c.mig_instances).collect();
    let k = demand.len();
    let per_device: Vec<Vec<Pattern>> = e
        .models
        .iter()
        .enumerate()
        .map(|(d, m)| {
            let elig: Vec<BTreeSet<usize>> = (0..k).map(|c| e.cluster[c][d].clone()).collect();
            device_patterns(m, &geo[m.key], &elig, &demand)
        })
        .collect();
    let mut best: Option<Best> = None;
    let mut choice: Vec<Option<&Pattern>> = Vec::new();
    fn rec<'a>(
        d: usize,
        per_device: &'a [Vec<Pattern>],
        left: &mut Vec<u32>,
        choice: &mut Vec<Option<&'a Pattern>>,
        models: &[&GpuModel],
        demand: &[u32],
        best: &mut Option<Best>,
    ) {
        if d == per_device.len() {
            if left.iter().any(|&x| x > 0) {
                return;
            }
            let key = plan_key(models, choice, demand);
            if best.as_ref().is_none_or(|(b, _)| key > *b) {
                *best = Some((key, choice.iter().map(|c| c.cloned()).collect()));
            }
            return;
        }
        choice.push(None);
        rec(d + 1, per_device, left, choice, models, demand, best);
        choice.pop();
        for pat in &per_device[d] {
            if pat.counts.iter().zip(left.iter()).any(|(a, b)| a > b) {
                continue;
            }
            for (l, a) in left.iter_mut().zip(&pat.counts) {
                *l -= a;
            }
            choice.push(Some(pat));
            rec(d + 1, per_device, left, choice, models, demand, best);
            choice.pop();
            for (l, a) in left.iter_mut().zip(&pat.counts) {
                *l += a;
            }
        }
    }
    let mut left = demand.clone();
    let models: Vec<&GpuModel> = e.models.clone();
    rec(
        0,
        &per_device,
        &mut left,
        &mut choice,
        &models,
        &demand,
        &mut best,
    );
    best.map(|(_, c)| c)
}

/// The lowest start vector (instances in size order) over all layouts of a multiset.
fn lowest_starts(model: &GpuModel, geo: &Geometry, profiles: &[usize]) -> Vec<u32> {
    let mut want = vec![0u32; model.profiles.len()];
    for &i in profiles {
        want[i] += 1;
    }
    let order = |l: &Vec<(usize, u32)>| {
        let mut l = l.clone();
        let p = |i: usize| &model.profiles[i];
        l.sort_by_key(|&(i, s)| {
            (
                std::cmp::Reverse(p(i).compute_slices),
                std::cmp::Reverse(p(i).memory_slices),
                p(i).media_extensions,
                i,
                s,
            )
        });
        l.iter().map(|x| x.1).collect::<Vec<u32>>()
    };
    geo.layouts
        .iter()
        .filter(|l| counts_of(model, l) == want)
        .map(order)
        .min()
        .unwrap()
}

#[test]
fn objective_matches_brute_force_on_tiny_cases() {
    let geo = geometry();
    // Small geometries keep the enumeration of every plan fast.
    let a30 = MODELS.iter().find(|m| m.key == "a30-24gb").unwrap();
    let a100 = MODELS.iter().find(|m| m.key == "a100-80gb").unwrap();
    let h200 = MODELS.iter().find(|m| m.key == "h200-141gb").unwrap();
    let models = [a30, a100, h200];
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    let mut compared = 0;
    const CASES: usize = 3000;
    for case in 0..CASES {
        let mut input = random_input(&mut rng, 2, &models, 5);
        // Keep A100/H200 devices to at most 4 allowed profiles so every plan can be listed.
        for d in &mut input.devices {
            let m = d.model.unwrap();
            if m.key != "a30-24gb" {
                let mut names: Vec<String> = d
                    .allowed_profiles
                    .clone()
                    .unwrap_or_else(|| m.profiles.iter().map(|p| p.name.to_owned()).collect());
                while names.len() > 4 {
                    names.remove(rng.below(names.len() as u64) as usize);
                }
                d.allowed_profiles = Some(names);
            }
        }
        let best = brute_best(&input, &geo);
        let got = plan(&input);
        match (best, got) {
            (None, Ok(p)) => panic!("case {case}: planned {p:?} but none exists\n{input:#?}"),
            (Some(_), Err(e)) => panic!("case {case}: {e}\n{input:#?}"),
            (None, Err(_)) => {}
            (Some(best), Ok(p)) => {
                validate(&input, &p);
                let e = eligibility(&input);
                for (d, pat) in best.iter().enumerate() {
                    let id = format!("GPU-{d}");
                    let mut got: Vec<(usize, usize, u32)> = p
                        .instances
                        .iter()
                        .filter(|i| i.device == id)
                        .map(|i| {
                            let pi = e.models[d]
                                .profiles
                                .iter()
                                .position(|x| x.name == i.profile)
                                .unwrap();
                            let c = input
                                .clusters
                                .iter()
                                .position(|c| c.name == i.cluster)
                                .unwrap();
                            (pi, c, i.placement_start)
                        })
                        .collect();
                    let mut want: Vec<(usize, usize)> = pat
                        .as_ref()
                        .map(|x| x.instances.clone())
                        .unwrap_or_default();
                    want.sort();
                    let mut got_pc: Vec<(usize, usize)> =
                        got.iter().map(|&(p, c, _)| (p, c)).collect();
                    got_pc.sort();
                    assert_eq!(got_pc, want, "case {case} device {d}\n{input:#?}\n{p:#?}");
                    // Placements: the lowest starts in size order, lower clusters first within
                    // a profile.
                    if !got.is_empty() {
                        let model = e.models[d];
                        let profiles: Vec<usize> = got.iter().map(|x| x.0).collect();
                        let lowest = lowest_starts(model, &geo[model.key], &profiles);
                        let pr = |i: usize| &model.profiles[i];
                        got.sort_by_key(|&(i, _, s)| {
                            (
                                std::cmp::Reverse(pr(i).compute_slices),
                                std::cmp::Reverse(pr(i).memory_slices),
                                pr(i).media_extensions,
                                i,
                                s,
                            )
                        });
                        let starts: Vec<u32> = got.iter().map(|x| x.2).collect();
                        assert_eq!(starts, lowest, "case {case} device {d}");
                        for w in got.windows(2) {
                            if w[0].0 == w[1].0 {
                                assert!(w[0].1 <= w[1].1, "case {case}: cluster order");
                            }
                        }
                    }
                }
                compared += 1;
            }
        }
    }
    assert!(compared > 100, "{compared}");
}

#[test]
fn objective_matches_brute_force_on_four_devices() {
    // Four small devices with two allowed profiles each: the fewest and lowest devices.
    let geo = geometry();
    let a30 = MODELS.iter().find(|m| m.key == "a30-24gb").unwrap();
    let a100 = MODELS.iter().find(|m| m.key == "a100-40gb").unwrap();
    let models = [a30, a100];
    let mut rng = Rng(0x5EED_0004_0004_0004);
    let mut compared = 0;
    for case in 0..400 {
        let mut input = random_input(&mut rng, 1, &models, 6);
        while input.devices.len() < 4 {
            let i = input.devices.len();
            let mut d = input.devices[0].clone();
            d.id = format!("GPU-{i}");
            d.model = Some(models[rng.below(2) as usize]);
            input.devices.push(d);
        }
        for d in &mut input.devices {
            let m = d.model.unwrap();
            let mut names: Vec<String> = m
                .profiles
                .iter()
                .filter(|p| !p.media_extensions)
                .map(|p| p.name.to_owned())
                .collect();
            while names.len() > 2 {
                names.remove(rng.below(names.len() as u64) as usize);
            }
            d.allowed_profiles = Some(names);
        }
        let names: Vec<String> = input
            .devices
            .iter()
            .flat_map(|d| d.allowed_profiles.clone().unwrap_or_default())
            .collect();
        for c in &mut input.clusters {
            c.allowed_profiles = if rng.below(3) == 0 {
                None
            } else {
                Some(
                    names
                        .iter()
                        .filter(|_| rng.below(2) == 0)
                        .cloned()
                        .collect(),
                )
            };
            if c.allowed_profiles.as_ref().is_some_and(Vec::is_empty) {
                c.allowed_profiles = None;
            }
        }
        let best = brute_best(&input, &geo);
        let got = plan(&input);
        assert_eq!(
            best.is_some(),
            got.is_ok(),
            "case {case}: {got:?}\n{input:#?}"
        );
        if let (Some(best), Ok(p)) = (best, got) {
            validate(&input, &p);
            let e = eligibility(&input);
            for (d, pat) in best.iter().enumerate() {
                let id = format!("GPU-{d}");
                let mut got: Vec<(usize, usize)> = p
                    .instances
                    .iter()
                    .filter(|i| i.device == id)
                    .map(|i| {
                        (
                            e.models[d]
                                .profiles
                                .iter()
                                .position(|x| x.name == i.profile)
                                .unwrap(),
                            input
                                .clusters
                                .iter()
                                .position(|c| c.name == i.cluster)
                                .unwrap(),
                        )
                    })
                    .collect();
                got.sort();
                let mut want = pat
                    .as_ref()
                    .map(|x| x.instances.clone())
                    .unwrap_or_default();
                want.sort();
                assert_eq!(got, want, "case {case} device {d}\n{input:#?}\n{p:#?}");
            }
            compared += 1;
        }
    }
    assert!(compared > 150, "{compared}");
}

#[test]
fn three_clusters_agree_with_brute_force() {
    // Feasibility with three clusters (the planner's general table), by exhaustive search.
    let geo = geometry();
    let a30 = MODELS.iter().find(|m| m.key == "a30-24gb").unwrap();
    let a100 = MODELS.iter().find(|m| m.key == "a100-40gb").unwrap();
    let models = [a30, a100];
    let mut rng = Rng(0x0F0F_1234_4321_F0F0);
    for case in 0..150 {
        let mut input = random_input(&mut rng, 2, &models, 3);
        for d in &mut input.devices {
            let m = d.model.unwrap();
            let mut names: Vec<String> = d.allowed_profiles.clone().unwrap_or_else(|| {
                m.profiles
                    .iter()
                    .filter(|p| !p.media_extensions)
                    .map(|p| p.name.to_owned())
                    .collect()
            });
            while names.len() > 3 {
                names.remove(rng.below(names.len() as u64) as usize);
            }
            d.allowed_profiles = Some(names);
        }
        let mut third = input.clusters[0].clone();
        third.name = "batch".into();
        third.mig_instances = rng.below(3) as u32;
        third.allowed_profiles = input.clusters[1].allowed_profiles.clone().map(|mut v| {
            v.truncate(1);
            v
        });
        input.clusters.push(third);
        let best = brute_best(&input, &geo);
        let got = plan(&input);
        assert_eq!(
            best.is_some(),
            got.is_ok(),
            "case {case}: {got:?}\n{input:#?}"
        );
        if let (Some(best), Ok(p)) = (best, got) {
            validate(&input, &p);
            // Same per-device contents as the brute-force optimum.
            let e = eligibility(&input);
            for (d, pat) in best.iter().enumerate() {
                let id = format!("GPU-{d}");
                let mut got: Vec<(usize, usize)> = p
                    .instances
                    .iter()
                    .filter(|i| i.device == id)
                    .map(|i| {
                        (
                            e.models[d]
                                .profiles
                                .iter()
                                .position(|x| x.name == i.profile)
                                .unwrap(),
                            input
                                .clusters
                                .iter()
                                .position(|c| c.name == i.cluster)
                                .unwrap(),
                        )
                    })
                    .collect();
                got.sort();
                let mut want = pat
                    .as_ref()
                    .map(|x| x.instances.clone())
                    .unwrap_or_default();
                want.sort();
                assert_eq!(got, want, "case {case} device {d}\n{input:#?}");
            }
        }
    }
}

#[test]
fn same_input_same_plan() {
    let models: Vec<&'static GpuModel> = MODELS.iter().collect();
    let mut rng = Rng(42);
    for _ in 0..50 {
        let input = random_input(&mut rng, 4, &models, 10);
        let a = plan(&input);
        let b = plan(&input.clone());
        assert_eq!(a, b);
        if let (Ok(a), Ok(b)) = (a, b) {
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                serde_json::to_string(&b).unwrap()
            );
        }
    }
}

#[test]
fn large_fleet_plans() {
    // 240 GPUs of four models, two clusters with different profiles, near capacity.
    let names = ["a100-80gb", "h100-80gb", "h200-141gb", "a30-24gb"];
    let devices: Vec<PlanDevice> = (0..240)
        .map(|i| PlanDevice {
            id: format!("GPU-{i}"),
            model: MODELS.iter().find(|m| m.key == names[i % 4]),
            use_: DeviceUse::Mig,
            allowed_profiles: None,
        })
        .collect();
    let input = PlanInput {
        devices,
        clusters: vec![
            ClusterDemand {
                name: "hpc".into(),
                mig_instances: 700,
                allowed_profiles: Some(vec!["1g.10gb".into(), "1g.18gb".into(), "1g.6gb".into()]),
                whole_gpus: 0,
            },
            ClusterDemand {
                name: "cloud".into(),
                mig_instances: 250,
                allowed_profiles: None,
                whole_gpus: 0,
            },
        ],
    };
    let p = plan(&input).unwrap();
    validate(&input, &p);
}
