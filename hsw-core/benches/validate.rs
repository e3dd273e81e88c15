//! Validation of a generated 1,000-node configuration (goal: ≤ 50 ms median), with the
//! embedded default as the baseline measured in the same run.
//! Run: `cargo bench -p hsw-core --bench validate`

use criterion::{criterion_group, criterion_main, Criterion};
use hsw_core::config::{validate_str, DEFAULT_CONFIG};

/// The default config with 999 Slurm compute nodes and 1 controller on a /16 (1,000 nodes in
/// the HPC cluster), using a full-form address range.
fn thousand_nodes() -> String {
    DEFAULT_CONFIG
        .replace("subnet: 192.168.100.0/24", "subnet: 172.20.0.0/16")
        .replace("ip_address: 192.168.100.10", "ip_address: 172.20.0.10")
        .replace(
            "      count: 2\n",
            "      count: 999\n      gpu_enabled: false\n",
        )
        .replace(
            "      gpu_enabled: true\n      ip_range: 192.168.100.11-12",
            "      ip_range: 172.20.1.1-172.20.4.250",
        )
        .replace("      hpc: 2\n      cloud: 1", "      cloud: 1")
}

fn bench(c: &mut Criterion) {
    let big = thousand_nodes();
    assert!(
        !validate_str(&big).report.has_errors(),
        "{:#?}",
        validate_str(&big).report
    );
    let mut g = c.benchmark_group("validate");
    g.bench_function("default (5 nodes)", |b| {
        b.iter(|| validate_str(DEFAULT_CONFIG))
    });
    g.bench_function("1000 nodes", |b| b.iter(|| validate_str(&big)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
