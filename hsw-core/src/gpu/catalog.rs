//! The MIG catalog: per GPU model, its slice geometry, PCI device ids and MIG profiles.
//!
//! Sources (see `/work/shared/reference/gpu-facts.md`, which collects them):
//! - NVIDIA's *MIG User Guide* (profile tables, placements, "supported profiles" per GPU);
//! - `nvml.h` (the `NVML_GPU_INSTANCE_PROFILE_*` index constants; the IDs below are the
//!   `nvidia-smi mig -lgip` IDs that NVML returns in `nvmlGpuInstanceProfileInfo_t.id`, not
//!   those index constants);
//! - NVIDIA mig-parted, `deployments/systemd/config-default.yaml` (profile names per SKU and
//!   the `device-filter` PCI ids that group SKUs with identical MIG tables);
//! - public `lspci -nn` output and pci.ids lines for the PCI device ids.
//!
//! Rows whose placements were not seen on hardware carry [`GpuModel::placements_verified`]
//! `= false` (the facts file's UNVERIFIED marks: H200, GH200 and B200 placements are assumed
//! equal to H100's).
//!
//! The catalog is keyed on geometry (compute slices, memory slices, attributes) and PCI
//! device id; profile *names* drift with memory size between SKUs, so [`suggest_profile`]
//! maps a name from another SKU to the same geometry here.

use std::fmt;

/// One MIG GPU-instance profile of one GPU model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Profile {
    /// The name `nvidia-smi` prints, e.g. `1g.10gb`, `1g.10gb+me`.
    pub name: &'static str,
    /// The `nvidia-smi mig -lgip` profile ID (what NVML's create calls want), e.g. 19.
    pub id: u32,
    /// Compute slices (the `Ng` in the name).
    pub compute_slices: u32,
    /// Memory slices the instance occupies (equals [`Profile::placement_size`]).
    pub memory_slices: u32,
    /// At most this many instances of this profile on one GPU.
    pub max_count: u32,
    /// Memory-slice indices where an instance of this profile may start.
    pub placement_starts: &'static [u32],
    /// Memory slices covered from the start: the instance occupies `[start, start + size)`.
    pub placement_size: u32,
    /// `+me`: the instance owns the GPU's media engines (at most one such instance per GPU).
    pub media_extensions: bool,
}

impl Profile {
    /// The memory size in GB that the profile name states (`1g.10gb` → 10), if it parses.
    pub fn memory_gb(&self) -> Option<u32> {
        parse_profile_name(self.name).map(|p| p.memory_gb)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// A GPU model that supports MIG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GpuModel {
    /// Canonical key, e.g. `a100-80gb`.
    pub key: &'static str,
    /// Display name, e.g. `NVIDIA A100 80GB`.
    pub display_name: &'static str,
    /// Compute slices of the whole GPU (7; A30: 4).
    pub compute_slices: u32,
    /// Memory slices of the whole GPU (8; A30: 4).
    pub memory_slices: u32,
    /// Memory size in GB as marketed.
    pub memory_gb: u32,
    /// PCI device ids (vendor 0x10de) that identify this model.
    pub pci_device_ids: &'static [u16],
    /// The MIG GPU-instance profiles, in the order of the MIG User Guide's tables
    /// (small to large, `+me` variant after its plain profile).
    pub profiles: &'static [Profile],
    /// `false` where the placements were not seen on hardware (UNVERIFIED in the facts file).
    pub placements_verified: bool,
}

impl GpuModel {
    /// The profile with this name (case-insensitive; a leading `MIG ` / `mig-` is ignored).
    pub fn profile(&self, name: &str) -> Option<&'static Profile> {
        let wanted = normalise_profile_name(name);
        self.profiles.iter().find(|p| p.name == wanted)
    }

    /// The profile with this `nvidia-smi mig -lgip` ID.
    pub fn profile_by_id(&self, id: u32) -> Option<&'static Profile> {
        self.profiles.iter().find(|p| p.id == id)
    }

    /// The index of `profile` in [`GpuModel::profiles`], if it belongs to this model.
    pub fn profile_index(&self, profile: &Profile) -> Option<usize> {
        self.profiles.iter().position(|p| p == profile)
    }
}

impl fmt::Display for GpuModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name)
    }
}

// ---------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------

const STARTS_1: &[u32] = &[0, 1, 2, 3, 4, 5, 6];
const STARTS_1_REV2: &[u32] = &[0, 2, 4, 6];
const STARTS_2: &[u32] = &[0, 2, 4];
const STARTS_3: &[u32] = &[0, 4];
const STARTS_0: &[u32] = &[0];

/// The seven profiles of a 7-compute/8-memory-slice GPU, named per SKU.
///
/// Source: MIG User Guide, "Supported MIG Profiles" (A100, H100, H200, B200 tables) and the
/// facts file's geometry table: IDs 19 (`1_SLICE`), 20 (`1_SLICE_REV1`, `+me`),
/// 15 (`1_SLICE_REV2`, twice the memory), 14 (`2_SLICE`), 9 (`3_SLICE`), 5 (`4_SLICE`),
/// 0 (`7_SLICE`); placements in memory slices `start:size`.
const fn seven_slice(names: [&'static str; 7]) -> [Profile; 7] {
    [
        Profile {
            name: names[0],
            id: 19,
            compute_slices: 1,
            memory_slices: 1,
            max_count: 7,
            placement_starts: STARTS_1,
            placement_size: 1,
            media_extensions: false,
        },
        Profile {
            name: names[1],
            id: 20,
            compute_slices: 1,
            memory_slices: 1,
            max_count: 1,
            placement_starts: STARTS_1,
            placement_size: 1,
            media_extensions: true,
        },
        Profile {
            name: names[2],
            id: 15,
            compute_slices: 1,
            memory_slices: 2,
            max_count: 4,
            placement_starts: STARTS_1_REV2,
            placement_size: 2,
            media_extensions: false,
        },
        Profile {
            name: names[3],
            id: 14,
            compute_slices: 2,
            memory_slices: 2,
            max_count: 3,
            placement_starts: STARTS_2,
            placement_size: 2,
            media_extensions: false,
        },
        Profile {
            name: names[4],
            id: 9,
            compute_slices: 3,
            memory_slices: 4,
            max_count: 2,
            placement_starts: STARTS_3,
            placement_size: 4,
            media_extensions: false,
        },
        Profile {
            name: names[5],
            id: 5,
            compute_slices: 4,
            memory_slices: 4,
            max_count: 1,
            placement_starts: STARTS_0,
            placement_size: 4,
            media_extensions: false,
        },
        Profile {
            name: names[6],
            id: 0,
            compute_slices: 7,
            memory_slices: 8,
            max_count: 1,
            placement_starts: STARTS_0,
            placement_size: 8,
            media_extensions: false,
        },
    ]
}

// Verified on hardware output (facts file). `1g.10gb` (ID 15) exists from driver R525 on.
const A100_40GB_PROFILES: [Profile; 7] = seven_slice([
    "1g.5gb",
    "1g.5gb+me",
    "1g.10gb",
    "2g.10gb",
    "3g.20gb",
    "4g.20gb",
    "7g.40gb",
]);
// Verified on hardware output (facts file); A100-80GB and H100-80GB share names.
const A100_80GB_PROFILES: [Profile; 7] = seven_slice([
    "1g.10gb",
    "1g.10gb+me",
    "1g.20gb",
    "2g.20gb",
    "3g.40gb",
    "4g.40gb",
    "7g.80gb",
]);
// H100 NVL: verified on hardware output (facts file); names also in mig-parted.
const H100_94GB_PROFILES: [Profile; 7] = seven_slice([
    "1g.12gb",
    "1g.12gb+me",
    "1g.24gb",
    "2g.24gb",
    "3g.47gb",
    "4g.47gb",
    "7g.94gb",
]);
// H100 96GB (GH200 480GB): names from mig-parted; placements UNVERIFIED (assumed = H100).
const H100_96GB_PROFILES: [Profile; 7] = seven_slice([
    "1g.12gb",
    "1g.12gb+me",
    "1g.24gb",
    "2g.24gb",
    "3g.48gb",
    "4g.48gb",
    "7g.96gb",
]);
// H200 141GB: names and IDs verified; placements UNVERIFIED (assumed = H100).
const H200_141GB_PROFILES: [Profile; 7] = seven_slice([
    "1g.18gb",
    "1g.18gb+me",
    "1g.35gb",
    "2g.35gb",
    "3g.71gb",
    "4g.71gb",
    "7g.141gb",
]);
// GH200 144GB HBM3e: names from mig-parted's default config; placements UNVERIFIED.
const GH200_144GB_PROFILES: [Profile; 7] = seven_slice([
    "1g.18gb",
    "1g.18gb+me",
    "1g.36gb",
    "2g.36gb",
    "3g.72gb",
    "4g.72gb",
    "7g.144gb",
]);
// B200 180GB: names and IDs verified; placements UNVERIFIED (assumed = H100).
const B200_180GB_PROFILES: [Profile; 7] = seven_slice([
    "1g.23gb",
    "1g.23gb+me",
    "1g.45gb",
    "2g.45gb",
    "3g.90gb",
    "4g.90gb",
    "7g.180gb",
]);

/// A30 24GB: 4 compute and 4 memory slices.
///
/// Source: MIG User Guide, "A30 MIG Profiles"; facts file's A30 table. `2g.12gb+me`
/// (ID 6) needs driver R525 or later.
const A30_PROFILES: [Profile; 5] = [
    Profile {
        name: "1g.6gb",
        id: 14,
        compute_slices: 1,
        memory_slices: 1,
        max_count: 4,
        placement_starts: &[0, 1, 2, 3],
        placement_size: 1,
        media_extensions: false,
    },
    Profile {
        name: "1g.6gb+me",
        id: 21,
        compute_slices: 1,
        memory_slices: 1,
        max_count: 1,
        placement_starts: &[0, 1, 2, 3],
        placement_size: 1,
        media_extensions: true,
    },
    Profile {
        name: "2g.12gb",
        id: 5,
        compute_slices: 2,
        memory_slices: 2,
        max_count: 2,
        placement_starts: &[0, 2],
        placement_size: 2,
        media_extensions: false,
    },
    Profile {
        name: "2g.12gb+me",
        id: 6,
        compute_slices: 2,
        memory_slices: 2,
        max_count: 1,
        placement_starts: &[0, 2],
        placement_size: 2,
        media_extensions: true,
    },
    Profile {
        name: "4g.24gb",
        id: 0,
        compute_slices: 4,
        memory_slices: 4,
        max_count: 1,
        placement_starts: &[0],
        placement_size: 4,
        media_extensions: false,
    },
];

/// A100 40GB (SXM4 and PCIe).
pub const A100_40GB: GpuModel = GpuModel {
    key: "a100-40gb",
    display_name: "NVIDIA A100 40GB",
    compute_slices: 7,
    memory_slices: 8,
    memory_gb: 40,
    // mig-parted groups 0x20B0, 0x20B1, 0x20F1 as A100-40GB (0x20F6 is A800-40GB, left out).
    // 0x20B0 "GA100 [A100 SXM4 40GB]" and 0x20F1 "GA100 [A100 PCIe 40GB]" seen in public
    // lspci/pci.ids text; 0x20B1's pci.ids name (A100 PCIe 40GB) not seen: UNVERIFIED name.
    pci_device_ids: &[0x20B0, 0x20B1, 0x20F1],
    profiles: &A100_40GB_PROFILES,
    placements_verified: true,
};

/// A100 80GB (SXM4 and PCIe).
pub const A100_80GB: GpuModel = GpuModel {
    key: "a100-80gb",
    display_name: "NVIDIA A100 80GB",
    compute_slices: 7,
    memory_slices: 8,
    memory_gb: 80,
    // 0x20B2 "GA100 [A100 SXM4 80GB]", 0x20B5 "GA100 [A100 PCIe 80GB]" (pci.ids, lspci
    // output, mig-parted filter). A800-80GB (0x20F3, 0x20F5) left out.
    pci_device_ids: &[0x20B2, 0x20B5],
    profiles: &A100_80GB_PROFILES,
    placements_verified: true,
};

/// A30 24GB.
pub const A30_24GB: GpuModel = GpuModel {
    key: "a30-24gb",
    display_name: "NVIDIA A30",
    compute_slices: 4,
    memory_slices: 4,
    memory_gb: 24,
    // 0x20B7 "GA100GL [A30 PCIe]" (pci.ids; mig-parted's A30-24GB filter).
    pci_device_ids: &[0x20B7],
    profiles: &A30_PROFILES,
    placements_verified: true,
};

/// H100 80GB (SXM5 and PCIe).
pub const H100_80GB: GpuModel = GpuModel {
    key: "h100-80gb",
    display_name: "NVIDIA H100 80GB",
    compute_slices: 7,
    memory_slices: 8,
    memory_gb: 80,
    // 0x2330 "GH100 [H100 SXM5 80GB]", 0x2331 "GH100 [H100 PCIe]" (pci.ids; mig-parted
    // filter). H800 (0x2322, 0x2324) left out.
    pci_device_ids: &[0x2330, 0x2331],
    profiles: &A100_80GB_PROFILES,
    placements_verified: true,
};

/// H100 NVL 94GB.
pub const H100_94GB: GpuModel = GpuModel {
    key: "h100-94gb",
    display_name: "NVIDIA H100 NVL 94GB",
    compute_slices: 7,
    memory_slices: 8,
    memory_gb: 94,
    // 0x2321: mig-parted's "H100 NVL 94GB" filter. H800 NVL (0x233A) left out.
    pci_device_ids: &[0x2321],
    profiles: &H100_94GB_PROFILES,
    placements_verified: true,
};

/// H100 96GB, as in the GH200 480GB superchip.
pub const H100_96GB: GpuModel = GpuModel {
    key: "h100-96gb",
    display_name: "NVIDIA H100 96GB",
    compute_slices: 7,
    memory_slices: 8,
    memory_gb: 96,
    // 0x2342 "GH100 [GH200 480GB]" (lspci output). 0x233D: in mig-parted's
    // "H100-96GB, PG506-96GB, GH200, H20" group; that it is the H100 96GB is UNVERIFIED.
    pci_device_ids: &[0x2342, 0x233D],
    profiles: &H100_96GB_PROFILES,
    placements_verified: false,
};

/// H200 141GB (SXM and NVL).
pub const H200_141GB: GpuModel = GpuModel {
    key: "h200-141gb",
    display_name: "NVIDIA H200 141GB",
    compute_slices: 7,
    memory_slices: 8,
    memory_gb: 141,
    // 0x2335 "GH100 [H200 SXM 141GB]", 0x233B "GH100 [H200 NVL]" (pci.ids; mig-parted's
    // "H200 141GB, H200 NVL" filter).
    pci_device_ids: &[0x2335, 0x233B],
    profiles: &H200_141GB_PROFILES,
    // Seen on an H200 SXM (PCI id 0x2335, driver's `nvidia-smi mig -lgip`/`-lgipp`, 2026-11-28):
    // names, IDs, max counts and placements all as in this table. The output is kept in
    // tests/fixtures/gpu/h200-discover.txt and checked by hsw-core/tests/gpu_catalog_hw.rs.
    placements_verified: true,
};

/// GH200 144GB HBM3e.
pub const GH200_144GB: GpuModel = GpuModel {
    key: "gh200-144gb",
    display_name: "NVIDIA GH200 144GB",
    compute_slices: 7,
    memory_slices: 8,
    memory_gb: 144,
    // 0x2348: mig-parted's "GH200 144G HBM3e" filter (pci.ids line not seen: UNVERIFIED).
    pci_device_ids: &[0x2348],
    profiles: &GH200_144GB_PROFILES,
    placements_verified: false,
};

/// B200 180GB.
pub const B200_180GB: GpuModel = GpuModel {
    key: "b200-180gb",
    display_name: "NVIDIA B200",
    compute_slices: 7,
    memory_slices: 8,
    memory_gb: 180,
    // 0x2901 "GB100 [B200]" (pci.ids; mig-parted's B200 filter).
    pci_device_ids: &[0x2901],
    profiles: &B200_180GB_PROFILES,
    placements_verified: false,
};

/// Every catalogued model, in a fixed order.
pub const MODELS: &[GpuModel] = &[
    A100_40GB,
    A100_80GB,
    A30_24GB,
    H100_80GB,
    H100_94GB,
    H100_96GB,
    H200_141GB,
    GH200_144GB,
    B200_180GB,
];

// ---------------------------------------------------------------------------------------
// Lookups
// ---------------------------------------------------------------------------------------

/// Every catalogued model.
pub fn models() -> &'static [GpuModel] {
    MODELS
}

/// The model with this canonical key (exact, e.g. `h100-80gb`).
pub fn model_by_key(key: &str) -> Option<&'static GpuModel> {
    MODELS.iter().find(|m| m.key == key)
}

/// The model a PCI device id (vendor 0x10de) identifies.
pub fn model_by_pci_device_id(device_id: u16) -> Option<&'static GpuModel> {
    MODELS
        .iter()
        .find(|m| m.pci_device_ids.contains(&device_id))
}

/// Forgiving model lookup.
///
/// Accepts the names NVML / `nvidia-smi` report (`NVIDIA A100-SXM4-80GB`,
/// `NVIDIA A100 80GB PCIe`, `NVIDIA H100 80GB HBM3`, `NVIDIA H100 NVL`, `NVIDIA GH200 480GB`,
/// ...), looser spellings (`NVIDIA A100 80GB`, `A100-80GB`, `a100 80gb`), canonical keys, and
/// PCI ids written `0x20b2`, `10de:20b2` or mig-parted's `0x20B210DE`.
///
/// Case, separators, an `NVIDIA`/`Tesla` prefix and form-factor words (SXM4, SXM5, PCIe,
/// HBM2e, HBM3, HBM3e) are ignored. Choices for names without a memory size: `A30`,
/// `H100` (80GB; the 94GB and 96GB parts report `NVL` / `96GB`), `H200` and `B200` are
/// unique; `A100` and `GH200` alone are ambiguous and give `None`. `GH200 480GB` (the
/// superchip's LPDDR size) is the 96GB H100. Unknown names give `None`.
pub fn lookup_model(name: &str) -> Option<&'static GpuModel> {
    if let Some(id) = parse_pci_id(name) {
        return model_by_pci_device_id(id);
    }
    let tokens = model_tokens(name);
    let mut family: Option<&str> = None;
    let mut memory: Option<u32> = None;
    let mut nvl = false;
    for t in &tokens {
        match t.as_str() {
            "nvidia" | "tesla" | "sxm" | "sxm4" | "sxm5" | "pcie" | "hbm2e" | "hbm3" | "hbm3e"
            | "gpu" => {}
            "nvl" => nvl = true,
            "a100" | "a30" | "h100" | "h200" | "gh200" | "b200" => {
                if family.is_some() {
                    return None;
                }
                family = Some(t.as_str());
            }
            other => {
                let gb = other.strip_suffix("gb")?.parse::<u32>().ok()?;
                if memory.is_some() {
                    return None;
                }
                memory = Some(gb);
            }
        }
    }
    let key = match (family?, memory, nvl) {
        ("a100", Some(40), false) => "a100-40gb",
        ("a100", Some(80), false) => "a100-80gb",
        ("a30", None | Some(24), false) => "a30-24gb",
        ("h100", None | Some(94), true) | ("h100", Some(94), false) => "h100-94gb",
        ("h100", None | Some(80), false) => "h100-80gb",
        ("h100", Some(96), false) => "h100-96gb",
        ("h200", None | Some(141), _) => "h200-141gb",
        ("gh200", Some(96 | 480), false) => "h100-96gb",
        ("gh200", Some(144), false) => "gh200-144gb",
        ("b200", None | Some(180 | 192), false) => "b200-180gb",
        _ => return None,
    };
    model_by_key(key)
}

/// `0x20b2`, `10de:20b2`, `0x20B210DE` → `0x20b2`.
fn parse_pci_id(s: &str) -> Option<u16> {
    let s = s.trim().to_ascii_lowercase();
    if let Some(dev) = s.strip_prefix("10de:") {
        return u16::from_str_radix(dev, 16).ok();
    }
    let hex = s.strip_prefix("0x")?;
    match hex.len() {
        1..=4 => u16::from_str_radix(hex, 16).ok(),
        8 => {
            let (dev, vendor) = hex.split_at(4);
            if vendor == "10de" {
                u16::from_str_radix(dev, 16).ok()
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Lower-case alphanumeric tokens; a bare number followed by `gb`/`g` becomes `<n>gb`, and
/// `<n>g` becomes `<n>gb`.
fn model_tokens(name: &str) -> Vec<String> {
    let raw: Vec<String> = name
        .to_ascii_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(t) = raw.get(i) {
        let is_num = t.bytes().all(|b| b.is_ascii_digit());
        let next_is_gb = matches!(raw.get(i + 1).map(String::as_str), Some("gb" | "g"));
        if is_num && next_is_gb {
            out.push(format!("{t}gb"));
            i += 2;
            continue;
        }
        match t.strip_suffix('g') {
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                out.push(format!("{n}gb"));
            }
            _ => out.push(t.clone()),
        }
        i += 1;
    }
    out
}

/// Lower case, trimmed, without a leading `mig ` / `mig-` / `nvidia.com/mig-`.
fn normalise_profile_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let stripped = lower
        .strip_prefix("nvidia.com/mig-")
        .or_else(|| lower.strip_prefix("mig-"))
        .or_else(|| lower.strip_prefix("mig "))
        .unwrap_or(&lower);
    stripped.trim().to_owned()
}

/// A parsed profile name `<c>g.<m>gb[+me]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ParsedName {
    compute: u32,
    memory_gb: u32,
    media: bool,
}

fn parse_profile_name(name: &str) -> Option<ParsedName> {
    let n = normalise_profile_name(name);
    let (body, media) = match n.strip_suffix("+me") {
        Some(b) => (b, true),
        None => (n.as_str(), false),
    };
    let (c, m) = body.split_once('.')?;
    let compute = c.strip_suffix('g')?.parse().ok()?;
    let memory_gb = m.strip_suffix("gb")?.parse().ok()?;
    Some(ParsedName {
        compute,
        memory_gb,
        media,
    })
}

/// The closest existing profile of `model` to a name that may not exist on it, for "did you
/// mean" hints.
///
/// A name that exists is returned as is. Otherwise, for a name of the form
/// `<c>g.<m>gb[+me]`: candidates are the model's profiles with the same compute slices and
/// the same `+me` attribute (then: same compute slices; then: the nearest compute slices).
/// Among them, a profile holding the same share of the GPU's memory slices as a catalogued
/// profile with exactly that name (on another model) wins, since names drift with memory size
/// between SKUs (`1g.20gb` of an A100 80GB is the 2-of-8-slice `1g.35gb` of an H200); then
/// the same `+me` attribute, then the nearest memory size (ratio), then the smaller. A name that does not parse gets the profile with the smallest
/// edit distance, if that distance is at most 3.
pub fn suggest_profile(model: &GpuModel, wrong_name: &str) -> Option<&'static Profile> {
    if let Some(p) = model.profile(wrong_name) {
        return Some(p);
    }
    let Some(parsed) = parse_profile_name(wrong_name) else {
        let wanted = normalise_profile_name(wrong_name);
        return model
            .profiles
            .iter()
            .map(|p| (strsim::levenshtein(&wanted, p.name), p))
            .filter(|(d, _)| *d <= 3)
            .min_by_key(|(d, _)| *d)
            .map(|(_, p)| p);
    };
    // (memory slices, slices of the whole GPU) of catalogued profiles with exactly this name.
    let wanted_name = normalise_profile_name(wrong_name);
    let known_fractions: Vec<(u32, u32)> = MODELS
        .iter()
        .flat_map(|m| m.profiles.iter().map(move |p| (m, p)))
        .filter(|(_, p)| p.name == wanted_name)
        .map(|(m, p)| (p.memory_slices, m.memory_slices))
        .collect();
    let same_compute_and_media: Vec<&'static Profile> = model
        .profiles
        .iter()
        .filter(|p| p.compute_slices == parsed.compute && p.media_extensions == parsed.media)
        .collect();
    let same_compute: Vec<&'static Profile> = model
        .profiles
        .iter()
        .filter(|p| p.compute_slices == parsed.compute)
        .collect();
    let candidates: Vec<&'static Profile> = if !same_compute_and_media.is_empty() {
        same_compute_and_media
    } else if !same_compute.is_empty() {
        same_compute
    } else {
        // Nearest compute size, preferring the same +me attribute.
        let best = model
            .profiles
            .iter()
            .map(|p| p.compute_slices.abs_diff(parsed.compute))
            .min()?;
        model
            .profiles
            .iter()
            .filter(|p| p.compute_slices.abs_diff(parsed.compute) == best)
            .collect()
    };
    candidates.into_iter().min_by(|a, b| {
        let key = |p: &Profile| {
            let geometry_miss = !known_fractions
                .iter()
                .any(|&(num, den)| p.memory_slices * den == num * model.memory_slices);
            let media_miss = p.media_extensions != parsed.media;
            // |ln(gb / wanted)| compared through integer cross products: use a scaled ratio.
            let gb = p.memory_gb().unwrap_or(0).max(1);
            let want = parsed.memory_gb.max(1);
            let ratio_milli = if gb >= want {
                u64::from(gb) * 1000 / u64::from(want)
            } else {
                u64::from(want) * 1000 / u64::from(gb)
            };
            (geometry_miss, media_miss, ratio_milli, gb)
        };
        key(a).cmp(&key(b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Option<&'static str> {
        lookup_model(name).map(|m| m.key)
    }

    #[test]
    fn nvml_names_resolve() {
        let cases = [
            ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
            ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
            ("NVIDIA A100-PCIE-40GB", "a100-40gb"),
            ("NVIDIA A100 80GB PCIe", "a100-80gb"),
            ("NVIDIA H100 80GB HBM3", "h100-80gb"),
            ("NVIDIA H100 PCIe", "h100-80gb"),
            ("NVIDIA H100 NVL", "h100-94gb"),
            ("NVIDIA H200", "h200-141gb"),
            ("NVIDIA H200 NVL", "h200-141gb"),
            ("NVIDIA GH200 480GB", "h100-96gb"),
            ("NVIDIA GH200 144G HBM3e", "gh200-144gb"),
            ("NVIDIA A30", "a30-24gb"),
            ("NVIDIA B200", "b200-180gb"),
        ];
        for (name, want) in cases {
            assert_eq!(key(name), Some(want), "{name}");
        }
    }

    #[test]
    fn seed_style_names_and_keys_resolve() {
        let cases = [
            ("NVIDIA A100 80GB", "a100-80gb"),
            ("A100-80GB", "a100-80gb"),
            ("a100 80gb", "a100-80gb"),
            ("a100_80 GB", "a100-80gb"),
            ("A100 40G", "a100-40gb"),
            ("H100 94GB", "h100-94gb"),
            ("H100 96GB", "h100-96gb"),
            ("GH200 96GB", "h100-96gb"),
            ("Tesla A30 24GB", "a30-24gb"),
            ("h200 141gb", "h200-141gb"),
        ];
        for (name, want) in cases {
            assert_eq!(key(name), Some(want), "{name}");
        }
        for m in MODELS {
            assert_eq!(key(m.key), Some(m.key), "key {}", m.key);
            assert_eq!(
                key(m.display_name),
                Some(m.key),
                "display {}",
                m.display_name
            );
        }
    }

    #[test]
    fn unknown_and_ambiguous_names_give_none() {
        for name in [
            "NVIDIA A100",
            "GH200",
            "NVIDIA RTX 6000",
            "NVIDIA A100X",
            "",
            "A100 80GB 40GB",
            "A100 H100",
            "NVIDIA L40S",
            "A30 NVL",
        ] {
            assert_eq!(key(name), None, "{name}");
        }
    }

    #[test]
    fn pci_ids_resolve() {
        let cases = [
            (0x20b0, "a100-40gb"),
            (0x20f1, "a100-40gb"),
            (0x20b2, "a100-80gb"),
            (0x20b5, "a100-80gb"),
            (0x20b7, "a30-24gb"),
            (0x2330, "h100-80gb"),
            (0x2331, "h100-80gb"),
            (0x2321, "h100-94gb"),
            (0x2342, "h100-96gb"),
            (0x2335, "h200-141gb"),
            (0x2348, "gh200-144gb"),
            (0x2901, "b200-180gb"),
        ];
        for (id, want) in cases {
            assert_eq!(model_by_pci_device_id(id).map(|m| m.key), Some(want));
        }
        assert_eq!(model_by_pci_device_id(0x1eb8), None);
        assert_eq!(key("0x20b2"), Some("a100-80gb"));
        assert_eq!(key("10de:2330"), Some("h100-80gb"));
        assert_eq!(key("0x233510DE"), Some("h200-141gb"));
        assert_eq!(key("0x233510DF"), None);
        // Every id belongs to one model only.
        let mut all: Vec<u16> = MODELS
            .iter()
            .flat_map(|m| m.pci_device_ids.iter().copied())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn tables_are_consistent() {
        for m in MODELS {
            let mut names: Vec<&str> = m.profiles.iter().map(|p| p.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), m.profiles.len(), "{}", m.key);
            for p in m.profiles {
                assert_eq!(p.placement_size, p.memory_slices, "{} {}", m.key, p.name);
                assert!(p.compute_slices <= m.compute_slices);
                assert!(p.max_count >= 1);
                for s in p.placement_starts {
                    assert!(
                        s + p.placement_size <= m.memory_slices,
                        "{} {}",
                        m.key,
                        p.name
                    );
                }
                let parsed = parse_profile_name(p.name);
                assert_eq!(parsed.map(|x| x.compute), Some(p.compute_slices));
                assert_eq!(parsed.map(|x| x.media), Some(p.media_extensions));
                assert_eq!(m.profile(p.name), Some(p));
                assert_eq!(m.profile_by_id(p.id), Some(p));
            }
        }
    }

    #[test]
    fn profile_lookup_is_forgiving_about_case_and_prefix() {
        let p = A100_80GB.profile("1G.10GB");
        assert_eq!(p.map(|p| p.id), Some(19));
        assert_eq!(A100_80GB.profile("MIG 1g.20gb").map(|p| p.id), Some(15));
        assert_eq!(
            A100_80GB.profile("nvidia.com/mig-3g.40gb").map(|p| p.id),
            Some(9)
        );
        assert_eq!(A100_80GB.profile(" 7g.80gb ").map(|p| p.id), Some(0));
        assert_eq!(A100_80GB.profile("1g.5gb"), None);
    }

    #[test]
    fn suggestions() {
        let s = |m: &GpuModel, n: &str| suggest_profile(m, n).map(|p| p.name);
        assert_eq!(s(&A100_80GB, "1g.5gb"), Some("1g.10gb"));
        assert_eq!(s(&A100_80GB, "2g.10gb"), Some("2g.20gb"));
        assert_eq!(s(&A100_80GB, "3g.20gb"), Some("3g.40gb"));
        assert_eq!(s(&A100_80GB, "7g.40gb"), Some("7g.80gb"));
        assert_eq!(s(&A100_80GB, "1g.5gb+me"), Some("1g.10gb+me"));
        assert_eq!(s(&A100_80GB, "1g.10gb"), Some("1g.10gb"));
        assert_eq!(s(&A100_40GB, "7g.80gb"), Some("7g.40gb"));
        // Same geometry across SKUs: the 2-memory-slice 1g.
        assert_eq!(s(&H200_141GB, "1g.20gb"), Some("1g.35gb"));
        assert_eq!(s(&H200_141GB, "1g.10gb"), Some("1g.18gb"));
        assert_eq!(s(&A30_24GB, "3g.20gb"), Some("2g.12gb"));
        assert_eq!(s(&A30_24GB, "1g.10gb"), Some("1g.6gb"));
        assert_eq!(s(&A100_80GB, "1g10gb"), Some("1g.10gb"));
        assert_eq!(s(&A100_80GB, "banana"), None);
    }
}
