//! Unit tests of the planner: examples, errors and the objective.
#![allow(clippy::panic)]

use super::*;
use crate::gpu::catalog::{A100_40GB, A100_80GB, A30_24GB, H100_80GB};

fn mig(id: &str, model: &'static GpuModel, allowed: Option<&[&str]>) -> PlanDevice {
    PlanDevice {
        id: id.to_owned(),
        model: Some(model),
        use_: DeviceUse::Mig,
        allowed_profiles: allowed.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
    }
}

fn whole(id: &str) -> PlanDevice {
    PlanDevice {
        id: id.to_owned(),
        model: None,
        use_: DeviceUse::Whole,
        allowed_profiles: None,
    }
}

fn cluster(name: &str, n: u32, allowed: Option<&[&str]>, whole: u32) -> ClusterDemand {
    ClusterDemand {
        name: name.to_owned(),
        mig_instances: n,
        allowed_profiles: allowed.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
        whole_gpus: whole,
    }
}

/// `device profile@start cluster` lines.
fn lines(p: &GpuPlan) -> Vec<String> {
    p.instances
        .iter()
        .map(|i| {
            format!(
                "{} {}@{} {}",
                i.device, i.profile, i.placement_start, i.cluster
            )
        })
        .collect()
}

fn ok(input: &PlanInput) -> GpuPlan {
    match plan(input) {
        Ok(p) => p,
        Err(e) => panic!("no plan: {e}"),
    }
}

fn err(input: &PlanInput) -> PlanError {
    match plan(input) {
        Ok(p) => panic!("unexpected plan: {p:?}"),
        Err(e) => e,
    }
}

fn seed() -> PlanInput {
    PlanInput {
        devices: vec![
            mig(
                "GPU-0",
                &A100_80GB,
                Some(&["1g.10gb", "2g.20gb", "3g.40gb", "7g.80gb"]),
            ),
            whole("GPU-1"),
        ],
        clusters: vec![cluster("hpc", 4, None, 0), cluster("cloud", 3, None, 1)],
    }
}

#[test]
fn seed_case() {
    let p = ok(&seed());
    assert_eq!(
        lines(&p),
        [
            "GPU-0 1g.10gb@0 hpc",
            "GPU-0 1g.10gb@1 hpc",
            "GPU-0 1g.10gb@2 hpc",
            "GPU-0 1g.10gb@3 hpc",
            "GPU-0 1g.10gb@4 cloud",
            "GPU-0 1g.10gb@5 cloud",
            "GPU-0 1g.10gb@6 cloud",
        ]
    );
    assert!(p
        .instances
        .iter()
        .all(|i| i.profile_id == 19 && i.placement_size == 1));
    assert_eq!(
        p.whole_gpus,
        [WholeGpu {
            cluster: "cloud".into(),
            device: "GPU-1".into()
        }]
    );
    assert_eq!(p.instances_of("hpc").count(), 4);
}

#[test]
fn seed_names_from_another_sku_get_a_suggestion() {
    let mut input = seed();
    if let Some(d) = input.devices.first_mut() {
        d.allowed_profiles = Some(vec!["1g.5gb".into(), "2g.10gb".into()]);
    }
    let e = err(&input);
    assert_eq!(
        e.to_string(),
        "device `GPU-0` allows MIG profile `1g.5gb`, which the NVIDIA A100 80GB does not have; \
         did you mean `1g.10gb`?"
    );
}

#[test]
fn largest_profiles_first() {
    let one = |n: u32| PlanInput {
        devices: vec![mig("GPU-0", &A100_80GB, None)],
        clusters: vec![cluster("hpc", n, None, 0)],
    };
    assert_eq!(lines(&ok(&one(1))), ["GPU-0 7g.80gb@0 hpc"]);
    assert_eq!(
        lines(&ok(&one(2))),
        ["GPU-0 4g.40gb@0 hpc", "GPU-0 3g.40gb@4 hpc"]
    );
    // Three: the bottleneck is 2 compute slices; then 3g@4 + 2g + 2g beats 3 × 2g.
    assert_eq!(
        lines(&ok(&one(3))),
        [
            "GPU-0 2g.20gb@0 hpc",
            "GPU-0 2g.20gb@2 hpc",
            "GPU-0 3g.40gb@4 hpc"
        ]
    );
    // Four: 1g.20gb (2 memory slices) beats 1g.10gb once compute is settled at 1... but 4
    // instances of 2g do not fit, so the floor is 1 compute slice, then 2 memory slices.
    let four = lines(&ok(&one(4)));
    assert_eq!(four.len(), 4);
    // Seven: six 1g.10gb and one 1g.20gb at 6 (slice 7 used).
    let seven = ok(&one(7));
    assert_eq!(seven.instances.len(), 7);
    assert_eq!(
        seven
            .instances
            .iter()
            .filter(|i| i.profile == "1g.20gb")
            .count(),
        1
    );
    assert!(seven
        .instances
        .iter()
        .any(|i| i.profile == "1g.20gb" && i.placement_start == 6));
}

#[test]
fn earlier_cluster_gets_the_larger_instance() {
    let input = PlanInput {
        devices: vec![mig("GPU-0", &A100_80GB, None)],
        clusters: vec![cluster("hpc", 1, None, 0), cluster("cloud", 1, None, 0)],
    };
    assert_eq!(
        lines(&ok(&input)),
        ["GPU-0 4g.40gb@0 hpc", "GPU-0 3g.40gb@4 cloud"]
    );
}

#[test]
fn bottleneck_protects_the_later_cluster() {
    // hpc alone could take 7g on both GPUs, but then cloud gets nothing; the plan keeps every
    // instance at 3+ compute slices. On GPU-0, the pattern serving both clusters (count vector
    // (1, 1)) beats the one serving hpc only ((1, 0)) at equal compute and memory.
    let input = PlanInput {
        devices: vec![
            mig("GPU-0", &A100_80GB, None),
            mig("GPU-1", &A100_80GB, None),
        ],
        clusters: vec![cluster("hpc", 2, None, 0), cluster("cloud", 1, None, 0)],
    };
    let p = ok(&input);
    assert_eq!(
        lines(&p),
        [
            "GPU-0 4g.40gb@0 hpc",
            "GPU-0 3g.40gb@4 cloud",
            "GPU-1 7g.80gb@0 hpc"
        ]
    );
}

#[test]
fn fewest_devices_then_lowest() {
    // Two small instances fit on one GPU: GPU-0 only.
    let input = PlanInput {
        devices: vec![
            mig("GPU-0", &A100_80GB, None),
            mig("GPU-1", &A100_80GB, None),
            mig("GPU-2", &A100_80GB, None),
        ],
        clusters: vec![cluster("hpc", 2, Some(&["1g.10gb"]), 0)],
    };
    assert_eq!(
        lines(&ok(&input)),
        ["GPU-0 1g.10gb@0 hpc", "GPU-0 1g.10gb@1 hpc"]
    );
    // Five 1g fit on the H100 alone but not on the A30: one device, the H100.
    let input = PlanInput {
        devices: vec![
            mig("GPU-0", &A30_24GB, None),
            mig("GPU-1", &H100_80GB, None),
        ],
        clusters: vec![cluster("hpc", 5, Some(&["1g.6gb", "1g.10gb"]), 0)],
    };
    let p = ok(&input);
    assert!(
        p.instances.iter().all(|i| i.device == "GPU-1"),
        "{:?}",
        lines(&p)
    );
    assert_eq!(p.instances.len(), 5);
}

#[test]
fn clusters_with_different_profiles_share_a_device() {
    let input = PlanInput {
        devices: vec![mig("GPU-0", &A100_80GB, None)],
        clusters: vec![
            cluster("hpc", 4, Some(&["1g.10gb"]), 0),
            cluster("cloud", 1, Some(&["3g.40gb"]), 0),
        ],
    };
    assert_eq!(
        lines(&ok(&input)),
        [
            "GPU-0 1g.10gb@0 hpc",
            "GPU-0 1g.10gb@1 hpc",
            "GPU-0 1g.10gb@2 hpc",
            "GPU-0 1g.10gb@3 hpc",
            "GPU-0 3g.40gb@4 cloud",
        ]
    );
}

#[test]
fn media_extensions_only_when_named() {
    let input = PlanInput {
        devices: vec![mig("GPU-0", &A100_40GB, None)],
        clusters: vec![cluster("hpc", 1, Some(&["1g.5gb+me"]), 0)],
    };
    assert!(matches!(err(&input), PlanError::ProfilesNotAllowed { .. }));
    let input = PlanInput {
        devices: vec![mig("GPU-0", &A100_40GB, Some(&["1g.5gb", "1g.5gb+me"]))],
        clusters: vec![cluster("hpc", 2, Some(&["1g.5gb+me"]), 0)],
    };
    // Only one +me instance per GPU.
    assert!(matches!(
        err(&input),
        PlanError::ClusterCapacity { max: 1, .. }
    ));
}

#[test]
fn capacity_error_names_the_numbers() {
    let input = PlanInput {
        devices: vec![mig("GPU-0", &A100_80GB, Some(&["1g.10gb"]))],
        clusters: vec![cluster("hpc", 8, None, 0)],
    };
    assert_eq!(
        err(&input).to_string(),
        "cluster `hpc` asks for 8 MIG instances but the MIG devices can host at most 7 with the \
         allowed profiles (GPU-0: 7 × 1g.10gb)"
    );
}

#[test]
fn joint_capacity_error() {
    let input = PlanInput {
        devices: vec![mig("GPU-0", &A100_80GB, None)],
        clusters: vec![cluster("hpc", 4, None, 0), cluster("cloud", 4, None, 0)],
    };
    assert_eq!(
        err(&input).to_string(),
        "clusters `hpc` and `cloud` together ask for 8 MIG instances but the MIG devices can host \
         at most 7 instances of their allowed profiles at once (GPU-0: 1 × 1g.20gb + 6 × 1g.10gb)"
    );
}

#[test]
fn layouts_that_do_not_combine() {
    let input = PlanInput {
        devices: vec![mig("GPU-0", &A100_80GB, None)],
        clusters: vec![
            cluster("hpc", 1, Some(&["1g.10gb"]), 0),
            cluster("cloud", 2, Some(&["3g.40gb"]), 0),
        ],
    };
    let e = err(&input);
    assert!(matches!(e, PlanError::Unsatisfiable { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "the MIG devices cannot host `hpc`: 1 and `cloud`: 2 instances at the same time: the \
         profiles the clusters allow do not fit together on the devices (alone, the devices \
         could host 7 for `hpc` and 2 for `cloud`)"
    );
}

#[test]
fn input_errors() {
    let dup = PlanInput {
        devices: vec![whole("GPU-0"), whole("GPU-0")],
        clusters: vec![],
    };
    assert!(matches!(err(&dup), PlanError::DuplicateDevice { .. }));
    let dup = PlanInput {
        devices: vec![],
        clusters: vec![cluster("a", 0, None, 0), cluster("a", 0, None, 0)],
    };
    assert!(matches!(err(&dup), PlanError::DuplicateCluster { .. }));

    let no_model = PlanInput {
        devices: vec![PlanDevice {
            id: "GPU-0".into(),
            model: None,
            use_: DeviceUse::Mig,
            allowed_profiles: None,
        }],
        clusters: vec![],
    };
    assert!(matches!(
        err(&no_model),
        PlanError::MigDeviceWithoutModel { .. }
    ));

    let no_mig = PlanInput {
        devices: vec![whole("GPU-1")],
        clusters: vec![cluster("hpc", 2, None, 0)],
    };
    assert_eq!(
        err(&no_mig).to_string(),
        "cluster `hpc` asks for 2 MIG instances but no device is set to MIG use (GPU-1 is whole)"
    );

    let unknown = PlanInput {
        devices: vec![mig("GPU-0", &A100_80GB, None)],
        clusters: vec![cluster("hpc", 2, Some(&["3g.20gb"]), 0)],
    };
    assert_eq!(
        err(&unknown).to_string(),
        "cluster `hpc` allows MIG profile `3g.20gb`, which the NVIDIA A100 80GB does not have; \
         did you mean `3g.40gb`?"
    );

    let not_allowed = PlanInput {
        devices: vec![mig("GPU-0", &A100_80GB, Some(&["1g.10gb"]))],
        clusters: vec![cluster("hpc", 1, Some(&["7g.80gb"]), 0)],
    };
    assert_eq!(
        err(&not_allowed).to_string(),
        "cluster `hpc` asks for 1 MIG instances but none of the profiles it allows (`7g.80gb`) \
         is allowed on a MIG device (GPU-0 allows 1g.10gb)"
    );

    let short = PlanInput {
        devices: vec![whole("GPU-1"), mig("GPU-0", &A100_80GB, None)],
        clusters: vec![cluster("hpc", 0, None, 1), cluster("cloud", 0, None, 2)],
    };
    assert_eq!(
        err(&short).to_string(),
        "the clusters ask for 3 whole GPUs (hpc 1, cloud 2) but only 1 device is set to whole use \
         (GPU-1)"
    );
}

#[test]
fn whole_gpus_in_cluster_then_device_order() {
    let input = PlanInput {
        devices: vec![whole("W-0"), whole("W-1"), whole("W-2"), whole("W-3")],
        clusters: vec![cluster("hpc", 0, None, 1), cluster("cloud", 0, None, 2)],
    };
    let p = ok(&input);
    let got: Vec<(String, String)> = p
        .whole_gpus
        .iter()
        .map(|w| (w.cluster.clone(), w.device.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("hpc".to_owned(), "W-0".to_owned()),
            ("cloud".to_owned(), "W-1".to_owned()),
            ("cloud".to_owned(), "W-2".to_owned()),
        ]
    );
    assert!(p.instances.is_empty());
}

#[test]
fn unused_devices_and_zero_demands() {
    let input = PlanInput {
        devices: vec![PlanDevice {
            id: "GPU-9".into(),
            model: None,
            use_: DeviceUse::Unused,
            allowed_profiles: None,
        }],
        clusters: vec![cluster("hpc", 0, None, 0)],
    };
    assert_eq!(
        ok(&input),
        GpuPlan {
            instances: vec![],
            whole_gpus: vec![]
        }
    );
    assert_eq!(
        ok(&PlanInput {
            devices: vec![],
            clusters: vec![]
        }),
        GpuPlan {
            instances: vec![],
            whole_gpus: vec![]
        }
    );
}

#[test]
fn deterministic_output() {
    let input = PlanInput {
        devices: vec![
            mig("GPU-0", &A100_80GB, None),
            mig("GPU-1", &H100_80GB, None),
            mig("GPU-2", &A30_24GB, None),
        ],
        clusters: vec![
            cluster("hpc", 6, Some(&["1g.10gb", "1g.6gb", "2g.20gb"]), 0),
            cluster("cloud", 5, None, 0),
        ],
    };
    let a = ok(&input);
    let b = ok(&input);
    assert_eq!(a, b);
    let ja = serde_json::to_string(&a).unwrap_or_default();
    let jb = serde_json::to_string(&b).unwrap_or_default();
    assert_eq!(ja, jb);
    assert!(ja.contains("\"placement_start\""));
}

#[test]
fn lowest_device_set_not_just_any_fewest() {
    // Fewest devices is 2, and {GPU-0, GPU-3} and {GPU-1, GPU-2} both work; the lowest set
    // (lexicographically, by input position) is {GPU-0, GPU-3}.
    let input = PlanInput {
        devices: vec![
            mig("GPU-0", &A100_80GB, Some(&["7g.80gb"])),
            mig("GPU-1", &A30_24GB, Some(&["1g.6gb"])),
            mig("GPU-2", &A30_24GB, Some(&["1g.6gb"])),
            mig("GPU-3", &A100_80GB, Some(&["1g.10gb"])),
        ],
        clusters: vec![cluster(
            "hpc",
            8,
            Some(&["7g.80gb", "1g.6gb", "1g.10gb"]),
            0,
        )],
    };
    let p = ok(&input);
    let devices: Vec<&str> = p.instances.iter().map(|i| i.device.as_str()).collect();
    assert_eq!(
        devices,
        ["GPU-0", "GPU-3", "GPU-3", "GPU-3", "GPU-3", "GPU-3", "GPU-3", "GPU-3"]
    );
    // The same with two clusters of different profiles (the general table).
    let input = PlanInput {
        devices: input.devices,
        clusters: vec![
            cluster("hpc", 7, Some(&["1g.6gb", "1g.10gb"]), 0),
            cluster("cloud", 1, Some(&["7g.80gb"]), 0),
        ],
    };
    let p = ok(&input);
    let mut devices: Vec<&str> = p.instances.iter().map(|i| i.device.as_str()).collect();
    devices.dedup();
    assert_eq!(devices, ["GPU-0", "GPU-3"]);
}

/// The selection shortcuts (capacity bounds for "no", candidate selections for "yes") agree
/// with the layered program alone, and their witnesses are valid.
#[test]
fn selection_shortcuts_agree_with_the_layered_program() {
    let models: [&'static GpuModel; 4] = [&A100_80GB, &A30_24GB, &A100_40GB, &H100_80GB];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n.max(1)
    };
    let mut checks = 0;
    for _ in 0..300 {
        let n = 2 + rnd(4) as usize;
        let devices: Vec<PlanDevice> = (0..n)
            .map(|i| {
                let m = models[rnd(4) as usize];
                let names: Vec<&str> = m
                    .profiles
                    .iter()
                    .filter(|p| !p.media_extensions && rnd(2) == 0)
                    .map(|p| p.name)
                    .collect();
                let allowed = if names.is_empty() { None } else { Some(names) };
                mig(&format!("GPU-{i}"), m, allowed.as_deref())
            })
            .collect();
        let pool: Vec<&str> = devices
            .iter()
            .flat_map(|d| {
                d.model
                    .into_iter()
                    .flat_map(|m| m.profiles.iter().map(|p| p.name))
            })
            .filter(|_| rnd(3) == 0)
            .collect();
        let hpc: Option<Vec<&str>> = if pool.is_empty() { None } else { Some(pool) };
        let input = PlanInput {
            devices,
            clusters: vec![
                cluster("hpc", rnd(9) as u32, hpc.as_deref(), 0),
                cluster("cloud", 1 + rnd(8) as u32, None, 0),
            ],
        };
        let Ok(problem) = build_problem(&input) else {
            continue;
        };
        let floors = Floors {
            compute: vec![0; 2],
            memory: vec![0; 2],
        };
        let prepared = Prepared::new(&problem, &floors);
        let Ok(Some(space)) = prepared.space() else {
            continue;
        };
        let sel = Selection {
            prepared: &prepared,
            space,
            classes: problem.devices.iter().map(|d| d.class).collect(),
            weights: prepared.weights(),
        };
        let all: Vec<usize> = (0..problem.devices.len()).collect();
        for t in 0..=all.len() as u32 {
            for first_forced in [None, Some(0usize), Some(1)] {
                let forced: Vec<usize> = first_forced.into_iter().collect();
                let free: Vec<usize> = all
                    .iter()
                    .copied()
                    .filter(|p| !forced.contains(p))
                    .collect();
                let fast = match sel.exists(&forced, &free, t) {
                    Ok(w) => w,
                    Err(e) => panic!("{e}"),
                };
                let devs: Vec<dp::Dev<'_>> = all
                    .iter()
                    .map(|&p| dp::Dev {
                        options: sel.options(p),
                        forced: forced.contains(&p),
                    })
                    .collect();
                let exact = match dp::layered(space, &devs, dp::Mode::Used, t, false) {
                    Ok(r) => r.answer.is_some_and(|a| a <= t),
                    Err(e) => panic!("{}", e.detail),
                };
                assert_eq!(fast.is_some(), exact, "t {t} forced {forced:?}\n{input:#?}");
                if let Some(w) = fast {
                    assert!(forced.iter().all(|p| w.contains(p)));
                    assert!(w.len() <= t as usize);
                    let classes: Vec<usize> = w.iter().map(|&p| sel.class(p)).collect();
                    assert_eq!(prepared.feasible(&classes), Ok(true));
                }
                checks += 1;
            }
        }
    }
    assert!(checks > 1000, "{checks}");
}

#[test]
fn huge_demands_get_capacity_errors_not_size_errors() {
    let input = PlanInput {
        devices: vec![mig("GPU-0", &A100_80GB, None)],
        clusters: vec![
            cluster("a", u32::MAX, Some(&["1g.10gb"]), 0),
            cluster("b", 5000, Some(&["2g.20gb"]), 0),
            cluster("c", 5000, Some(&["3g.40gb"]), 0),
        ],
    };
    assert!(matches!(
        err(&input),
        PlanError::ClusterCapacity { max: 7, .. }
    ));
    let input = PlanInput {
        devices: vec![mig("GPU-0", &A100_80GB, None)],
        clusters: vec![
            cluster("a", 3000, Some(&["1g.10gb"]), 0),
            cluster("b", 3000, Some(&["2g.20gb"]), 0),
            cluster("c", 3000, Some(&["3g.40gb"]), 0),
        ],
    };
    assert!(matches!(err(&input), PlanError::ClusterCapacity { .. }));
}
