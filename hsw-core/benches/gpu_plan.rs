//! MIG planning: a 1,000-GPU fleet of four models with two clusters whose allowed profiles
//! differ, asking for 96% of the fleet's instance capacity (goal: well under 100 ms median),
//! and the small seed-like case (one A100 80GB, one whole GPU).
//! Run: `cargo bench -p hsw-core --bench gpu_plan`

use criterion::{criterion_group, criterion_main, Criterion};
use hsw_core::gpu::catalog::{lookup_model, GpuModel};
use hsw_core::gpu::plan::{plan, ClusterDemand, DeviceUse, PlanDevice, PlanInput};

fn model(name: &str) -> Option<&'static GpuModel> {
    lookup_model(name)
}

fn names(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| (*s).to_owned()).collect())
}

/// 250 each of A100 80GB, H100 80GB, H200 and A30, interleaved. Capacity: 750 × 7 + 250 × 4
/// = 6,250 instances. `hpc` takes 1g profiles only (3,600), `cloud` any profile (2,400).
fn fleet() -> PlanInput {
    let models = [
        "NVIDIA A100-SXM4-80GB",
        "NVIDIA H100 80GB HBM3",
        "NVIDIA H200",
        "NVIDIA A30",
    ];
    let devices = (0..1000)
        .map(|i| PlanDevice {
            id: format!("GPU-{i}"),
            model: model(models[i % models.len()]),
            use_: DeviceUse::Mig,
            allowed_profiles: None,
        })
        .collect();
    PlanInput {
        devices,
        clusters: vec![
            ClusterDemand {
                name: "hpc".into(),
                mig_instances: 3600,
                allowed_profiles: names(&["1g.10gb", "1g.20gb", "1g.18gb", "1g.35gb", "1g.6gb"]),
                whole_gpus: 0,
            },
            ClusterDemand {
                name: "cloud".into(),
                mig_instances: 2400,
                allowed_profiles: None,
                whole_gpus: 0,
            },
        ],
    }
}

fn seed() -> PlanInput {
    PlanInput {
        devices: vec![
            PlanDevice {
                id: "GPU-0".into(),
                model: model("NVIDIA A100 80GB"),
                use_: DeviceUse::Mig,
                allowed_profiles: names(&["1g.10gb", "2g.20gb", "3g.40gb", "7g.80gb"]),
            },
            PlanDevice {
                id: "GPU-1".into(),
                model: None,
                use_: DeviceUse::Whole,
                allowed_profiles: None,
            },
        ],
        clusters: vec![
            ClusterDemand {
                name: "hpc".into(),
                mig_instances: 4,
                allowed_profiles: None,
                whole_gpus: 0,
            },
            ClusterDemand {
                name: "cloud".into(),
                mig_instances: 3,
                allowed_profiles: None,
                whole_gpus: 1,
            },
        ],
    }
}

fn bench(c: &mut Criterion) {
    let big = fleet();
    let small = seed();
    // Fail loudly (not panic) if either case stops planning: criterion would time the error.
    for (name, input) in [("fleet", &big), ("seed", &small)] {
        if let Err(e) = plan(input) {
            eprintln!("{name}: {e}");
            std::process::exit(1);
        }
    }
    c.bench_function("plan_1000_gpus_two_clusters", |b| b.iter(|| plan(&big)));
    c.bench_function("plan_seed", |b| b.iter(|| plan(&small)));
}

criterion_group!(benches, bench);
criterion_main!(benches);
