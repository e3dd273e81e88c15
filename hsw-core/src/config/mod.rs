//! `cluster.yaml`: its model, how it is read, and how it is validated.
//!
//! Reading goes YAML text → JSON value with positions ([`yaml`]) → JSON Schema check
//! ([`schema`]) → typed model ([`model`]) → semantic rules ([`rules`], including GPU placement
//! through [`gpu`] and how the units reach the VMs in [`attach_rules`]). Every stage adds to one [`Report`]; none stops at its first finding.

pub mod attach_rules;
pub mod gpu;
pub mod hosts_rules;
pub mod hpc;
pub mod hpc_rules;
pub mod model;
pub mod rules;
pub mod schema;
pub mod uri;
pub mod yaml;

pub use model::ClusterConfig;

use crate::diag::{Diagnostic, Report};
use yaml::Positions;

/// The embedded default configuration (`examples/minimal-dev.yaml`): what `hsw-cli` uses
/// when no file is given.
pub const DEFAULT_CONFIG: &str = include_str!("../../../examples/minimal-dev.yaml");
/// The name the default configuration is shown under.
pub const DEFAULT_CONFIG_NAME: &str = "<embedded default: examples/minimal-dev.yaml>";
/// The largest cluster definition hsw reads, in bytes (a 1,000-node config is a few KiB; the loader's own
/// budgets are in [`yaml`]).
pub const MAX_SOURCE_BYTES: u64 = 4 * 1024 * 1024;

/// The outcome of reading and validating one file.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The model, when the file could be deserialized (it may still have semantic errors).
    pub config: Option<ClusterConfig>,
    /// Every finding, in file order.
    pub report: Report,
    /// Positions of the file's nodes.
    pub positions: Positions,
}

impl Validated {
    /// The model when the file is valid (warnings allowed).
    pub fn valid_config(&self) -> Option<&ClusterConfig> {
        if self.report.has_errors() {
            None
        } else {
            self.config.as_ref()
        }
    }
}

/// Reads and validates `cluster.yaml` text: YAML, schema, then the semantic rules.
pub fn validate_str(source: &str) -> Validated {
    let mut report = Report::default();
    let (value, positions) = match yaml::parse(source) {
        Ok(pair) => pair,
        Err(e) => {
            let mut d = Diagnostic::error(e.rule, e.path, e.message);
            if let Some(p) = e.pos {
                d = d.at(p.line, p.column);
            }
            report.diagnostics.push(d);
            return Validated {
                config: None,
                report,
                positions: Positions::default(),
            };
        }
    };
    let (schema_findings, repairs) = schema::check(&value, &positions);
    let schema_failed = !schema_findings.is_empty();
    report.diagnostics.extend(schema_findings);
    let config = match serde_path_to_error::deserialize::<_, ClusterConfig>(&value) {
        Ok(c) => Some(c),
        Err(e) => {
            if !schema_failed {
                // The schema is generated from the model, so this should not happen; say so plainly.
                let pointer = path_to_pointer(&e.path().to_string());
                let d = Diagnostic::error("schema.type", pointer.clone(), e.inner().to_string());
                report
                    .diagnostics
                    .push(schema::place(d, &positions, &pointer, false));
            }
            None
        }
    };
    // All errors at once: when the schema found mistakes with an obvious repair (a typo'd key,
    // a value out of range, an unknown enum value), run the semantic rules on the repaired
    // document too, keeping only their findings outside the repaired nodes.
    let repaired_config = if config.is_none() && !repairs.is_empty() {
        let mut doc = value.clone();
        repairs.iter().for_each(|r| r.apply(&mut doc));
        serde_json::from_value::<ClusterConfig>(doc).ok()
    } else {
        None
    };
    let masked: Vec<String> = repairs.iter().map(schema::Repair::pointer).collect();
    let under_repair = |p: &str| {
        masked
            .iter()
            .any(|m| p == m || p.starts_with(&format!("{m}/")))
    };
    if let Some(c) = config.as_ref().or(repaired_config.as_ref()) {
        for d in rules::check(c) {
            if config.is_none() && under_repair(&d.path) {
                continue;
            }
            let pointer = d.path.clone();
            report
                .diagnostics
                .push(schema::place(d, &positions, &pointer, false));
        }
    }
    report.sort();
    Validated {
        config,
        report,
        positions,
    }
}

/// `a.b[0].c` (serde_path_to_error's form) → `/a/b/0/c`.
fn path_to_pointer(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    let mut out = String::new();
    for seg in path.split('.') {
        let mut rest = seg;
        while let Some(i) = rest.find('[') {
            let (name, tail) = rest.split_at(i);
            if !name.is_empty() {
                out.push('/');
                out.push_str(&yaml::escape_token(name));
            }
            let close = tail.find(']').unwrap_or(tail.len());
            out.push('/');
            out.push_str(tail.get(1..close).unwrap_or_default());
            rest = tail.get(close + 1..).unwrap_or_default();
        }
        if !rest.is_empty() {
            out.push('/');
            out.push_str(&yaml::escape_token(rest));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_paths_become_pointers() {
        assert_eq!(path_to_pointer("."), "");
        assert_eq!(
            path_to_pointer("global.gpu_allocation.devices[1].id"),
            "/global/gpu_allocation/devices/1/id"
        );
    }

    #[test]
    fn the_embedded_default_is_valid() {
        let v = validate_str(DEFAULT_CONFIG);
        assert!(!v.report.has_errors(), "{:#?}", v.report);
    }
}
