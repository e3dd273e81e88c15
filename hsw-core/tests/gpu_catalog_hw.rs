//! The catalog against what real hardware printed. Each fixture holds the output of
//! `scripts/gpu-discover-on-real-gpu.sh` run on a machine with that GPU (read only): the
//! `nvidia-smi mig -lgip` table (names, IDs, instance counts) and `nvidia-smi mig -lgipp`
//! (placements). Every profile the driver lists must be in the catalog with the same ID, max
//! count and placements, and the catalog must list nothing the driver does not.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use hsw_core::gpu::catalog;

/// (name, id, max count) from `-lgip` rows like `|   0  MIG 1g.18gb         19     7/7   ...`.
fn lgip(text: &str) -> Vec<(String, u32, u32)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| l.starts_with('|')) {
        let Some(rest) = line.split("MIG ").nth(1) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if let [name, id, counts, ..] = fields.as_slice() {
            let total = counts.split('/').nth(1).unwrap().parse().unwrap();
            out.push((name.to_string(), id.parse().unwrap(), total));
        }
    }
    out
}

/// id → (starts, size) from `-lgipp` rows like `GPU  0 Profile ID 15 Placements: {0,2,4,6}:2`.
fn lgipp(text: &str) -> BTreeMap<u32, (Vec<u32>, u32)> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("GPU ")) {
        let Some(rest) = line.split("Profile ID").nth(1) else {
            continue;
        };
        let id = rest.split_whitespace().next().unwrap();
        let placement = rest.split_once(": ").unwrap().1.trim();
        let (set, size) = placement.rsplit_once(':').unwrap();
        let starts = set
            .trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .map(|s| s.trim().parse().unwrap())
            .collect();
        out.insert(id.parse().unwrap(), (starts, size.parse().unwrap()));
    }
    out
}

fn check(fixture: &str, pci_id: u16) {
    let text = std::fs::read_to_string(format!(
        "{}/../tests/fixtures/gpu/{fixture}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let model = catalog::model_by_pci_device_id(pci_id).unwrap();
    let listed = lgip(&text);
    let placements = lgipp(&text);
    assert!(
        !listed.is_empty() && !placements.is_empty(),
        "{fixture} holds no MIG profile table"
    );
    for (name, id, max) in &listed {
        let p = model
            .profile(name)
            .unwrap_or_else(|| panic!("{}: driver lists {name}, catalog does not", model.key));
        assert_eq!(p.id, *id, "{name}: id");
        assert_eq!(p.max_count, *max, "{name}: max count");
        let (starts, size) = &placements[id];
        assert_eq!(
            p.placement_starts,
            starts.as_slice(),
            "{name}: placement starts"
        );
        assert_eq!(p.placement_size, *size, "{name}: placement size");
    }
    assert_eq!(
        model.profiles.len(),
        listed.len(),
        "the catalog lists profiles the driver does not"
    );
    assert!(model.placements_verified);
}

#[test]
fn h200_matches_the_driver() {
    check("h200-discover.txt", 0x2335);
}
