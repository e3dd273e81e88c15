//! NVIDIA's MIG-backed vGPU types (vGPU for Compute, the `C` series) per catalogued GPU model: how a MIG slice
//! reaches a VM.
//!
//! A MIG-backed type is named `<board>-<g>-<FB>C`: the board's prefix, the GPU instance's compute slices and its
//! frame buffer in GB, `ME` appended for the `+me` profile (`A100-2-10C` is a `2g.10gb` slice of an A100 PCIe
//! 40GB; `H200X-1-18C` a `1g.18gb` slice of an H200 SXM). The driver lists it with a `GRID ` (mdev, vGPU up to
//! 16) or `NVIDIA ` (vendor VFIO, vGPU 17+) prefix; hsw keeps the bare name and [`find_type`] accepts both.
//! The per-profile names are derived from the MIG profile tables in [`crate::gpu::catalog`] (one fact, one
//! place); only the board prefixes are listed here.
//!
//! Sources: NVIDIA *Virtual GPU Software User Guide* / *NVIDIA AI Enterprise: vGPU for Compute*, "Virtual GPU
//! Types for Supported GPUs" (MIG-backed C-series tables, per board) and "Multi-vGPU" (several vGPUs in one VM
//! only when the board type and series are the same); `/work/shared/reference/gpu-facts.md` (the naming, `GRID
//! A100-2-10C` in an mdev type's `name`, `NVIDIA H200X-1-18C` in a VF's `creatable_vgpu_types`).
//!
//! **UNVERIFIED**: no table below was seen on hardware (no host with the vGPU manager was at hand). Board prefixes
//! marked [`VgpuBoard::verified`] `= false` were not even seen in a driver's type list; the frame-buffer numbers
//! are taken from the MIG profile names and may differ where NVIDIA rounds differently. A config names the
//! driver's type explicitly with `global.gpu_allocation.attach.<cluster>.vgpu_types`; `hsw-cli check` (later)
//! compares the plan's types with what the host offers.

use crate::gpu::catalog::{GpuModel, Profile};

/// At most this many MIG-backed vGPUs in one VM. NVIDIA's older releases allow one; the newer "Multi-vGPU"
/// page lists MIG-backed vGPUs of one board on KVM for some boards, which hsw has not seen work (UNVERIFIED), so
/// hsw keeps one until `check` can read `nvmlVgpuTypeGetMaxInstancesPerVm` from the host.
pub const MAX_MIG_VGPUS_PER_VM: u32 = 1;

/// One board (SKU) of a catalogued model, as NVIDIA's vGPU type tables name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VgpuBoard {
    /// The board as the vGPU documentation names it (`NVIDIA A100 PCIe 80GB`).
    pub board: &'static str,
    /// The type-name prefix (`A100D`).
    pub prefix: &'static str,
    /// A word of the NVML / nvidia-smi name that picks this board among the model's (`pcie`, `sxm`, `nvl`);
    /// empty for a model with one board.
    pub name_hint: &'static str,
    /// Whether the prefix was seen in a driver's type list (facts file); the tables are UNVERIFIED either way.
    pub verified: bool,
}

const fn board(
    board: &'static str,
    prefix: &'static str,
    name_hint: &'static str,
    verified: bool,
) -> VgpuBoard {
    VgpuBoard {
        board,
        prefix,
        name_hint,
        verified,
    }
}

/// The boards per catalog model key; the first is the default when the device's name names none.
const BOARDS: &[(&str, &[VgpuBoard])] = &[
    (
        "a100-40gb",
        &[
            // `GRID A100-2-10C` is the facts file's mdev example.
            board("NVIDIA A100 PCIe 40GB", "A100", "pcie", true),
            board("NVIDIA A100 HGX 40GB", "A100X", "sxm", false),
        ],
    ),
    (
        "a100-80gb",
        &[
            board("NVIDIA A100 HGX 80GB", "A100DX", "sxm", false),
            board("NVIDIA A100 PCIe 80GB", "A100D", "pcie", false),
        ],
    ),
    ("a30-24gb", &[board("NVIDIA A30", "A30", "", false)]),
    (
        "h100-80gb",
        &[
            board("NVIDIA H100 SXM5 80GB", "H100XM", "sxm", false),
            // `H100-1-10C` is the facts file's example of the naming.
            board("NVIDIA H100 PCIe 80GB", "H100", "pcie", true),
        ],
    ),
    ("h100-94gb", &[board("NVIDIA H100 NVL", "H100L", "", false)]),
    (
        "h100-96gb",
        &[board("NVIDIA GH200 96GB", "GH200", "", false)],
    ),
    (
        "h200-141gb",
        &[
            // `NVIDIA H200X-1-18C` is the facts file's `creatable_vgpu_types` line.
            board("NVIDIA H200 SXM5 141GB", "H200X", "sxm", true),
            board("NVIDIA H200 NVL", "H200NVL", "nvl", false),
        ],
    ),
    (
        "gh200-144gb",
        &[board("NVIDIA GH200 144GB", "GH200", "", false)],
    ),
    (
        "b200-180gb",
        &[board("NVIDIA HGX B200 180GB", "B200X", "", false)],
    ),
];

/// The boards of a model (empty for a model without a vGPU table).
pub fn boards(model: &GpuModel) -> &'static [VgpuBoard] {
    BOARDS
        .iter()
        .find(|(k, _)| *k == model.key)
        .map_or(&[], |(_, b)| *b)
}

/// The board a device's model name (`NVIDIA A100-SXM4-80GB`, `NVIDIA A100 80GB PCIe`) picks: the one whose
/// [`VgpuBoard::name_hint`] is a word of it, else the model's first.
pub fn board_for(model: &GpuModel, device_model: &str) -> Option<&'static VgpuBoard> {
    let all = boards(model);
    let lower = device_model.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    all.iter()
        .find(|b| !b.name_hint.is_empty() && words.iter().any(|w| w.starts_with(b.name_hint)))
        .or_else(|| all.first())
}

/// The type name of a profile on a board: `<prefix>-<g>-<FB>C`, `ME` appended for `+me` (`None` when the
/// profile's name states no memory size).
pub fn type_name(board: &VgpuBoard, profile: &Profile) -> Option<String> {
    let gb = profile.memory_gb()?;
    let me = if profile.media_extensions { "ME" } else { "" };
    Some(format!(
        "{}-{}-{gb}C{me}",
        board.prefix, profile.compute_slices
    ))
}

/// The default vGPU type of a profile on a device of this model and name.
pub fn default_type(model: &GpuModel, device_model: &str, profile: &Profile) -> Option<String> {
    type_name(board_for(model, device_model)?, profile)
}

/// Every type of a model: each board's, in profile order.
pub fn types(model: &GpuModel) -> Vec<String> {
    boards(model)
        .iter()
        .flat_map(|b| model.profiles.iter().filter_map(|p| type_name(b, p)))
        .collect()
}

/// `GRID A100-2-10C`, `nvidia a100-2-10c` → `A100-2-10C`.
pub fn normalise_type_name(name: &str) -> String {
    let t = name.trim();
    let upper = t.to_ascii_uppercase();
    let bare = upper
        .strip_prefix("GRID ")
        .or_else(|| upper.strip_prefix("NVIDIA "))
        .unwrap_or(&upper);
    bare.trim().to_owned()
}

/// The board and profile of a type name on a model (any board of it), `None` when the model has no such type.
pub fn find_type(model: &GpuModel, name: &str) -> Option<(&'static VgpuBoard, &'static Profile)> {
    let wanted = normalise_type_name(name);
    boards(model).iter().find_map(|b| {
        model
            .profiles
            .iter()
            .find(|p| type_name(b, p).is_some_and(|t| t.to_ascii_uppercase() == wanted))
            .map(|p| (b, p))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::gpu::catalog::{self, MODELS};

    #[test]
    fn every_model_has_a_table_whose_names_follow_nvidias_pattern() {
        for m in MODELS {
            assert!(!boards(m).is_empty(), "{} has no vGPU boards", m.key);
            for t in types(m) {
                let parts: Vec<&str> = t.split('-').collect();
                assert_eq!(parts.len(), 3, "{t}");
                assert!(parts[2].ends_with('C') || parts[2].ends_with("CME"), "{t}");
                assert_eq!(
                    find_type(m, &t).and_then(|(b, p)| type_name(b, p)),
                    Some(t.clone())
                );
            }
        }
    }

    #[test]
    fn the_names_seen_in_the_facts_resolve() {
        let a100_40 = catalog::lookup_model("NVIDIA A100-PCIE-40GB").unwrap();
        let (_, p) = find_type(a100_40, "GRID A100-2-10C").unwrap();
        assert_eq!(p.name, "2g.10gb");
        let h200 = catalog::lookup_model("NVIDIA H200").unwrap();
        let (b, p) = find_type(h200, "NVIDIA H200X-1-18C").unwrap();
        assert_eq!((b.prefix, p.name), ("H200X", "1g.18gb"));
        assert!(find_type(h200, "A100-2-10C").is_none());
    }

    #[test]
    fn the_board_follows_the_device_name() {
        let m = catalog::lookup_model("NVIDIA A100-SXM4-80GB").unwrap();
        let p = m.profile("1g.10gb").unwrap();
        assert_eq!(
            default_type(m, "NVIDIA A100-SXM4-80GB", p).as_deref(),
            Some("A100DX-1-10C")
        );
        assert_eq!(
            default_type(m, "NVIDIA A100 80GB PCIe", p).as_deref(),
            Some("A100D-1-10C")
        );
        let me = m.profile("1g.10gb+me").unwrap();
        assert_eq!(
            default_type(m, "NVIDIA A100 80GB PCIe", me).as_deref(),
            Some("A100D-1-10CME")
        );
        let h100 = catalog::lookup_model("NVIDIA H100 PCIe").unwrap();
        let p = h100.profile("1g.10gb").unwrap();
        assert_eq!(
            default_type(h100, "NVIDIA H100 PCIe", p).as_deref(),
            Some("H100-1-10C")
        );
    }
}
