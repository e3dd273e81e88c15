//! `hsw-cli gpu ...`: GPU planning from cluster.yaml.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use hsw_core::config;

use crate::{exit, validate::read_config, Format};

/// `hsw-cli gpu`.
#[derive(Debug, Subcommand)]
pub enum GpuCommand {
    /// Print which MIG instance (device, profile, placement) and which whole GPU each cluster gets.
    Plan(PlanArgs),
}

/// `hsw-cli gpu plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The cluster definition (the embedded default when absent).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Runs a `gpu` subcommand.
pub fn run(cmd: &GpuCommand, out: &mut dyn Write) -> u8 {
    match cmd {
        GpuCommand::Plan(args) => plan(args, out),
    }
}

fn plan(args: &PlanArgs, out: &mut dyn Write) -> u8 {
    let (name, source) = match read_config(args.config.as_deref()) {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CANNOT_RUN;
        }
    };
    let validated = config::validate_str(&source);
    let Some(cfg) = validated.config.as_ref() else {
        eprint!("{}", validated.report.render_text(&name, &source, false));
        return exit::INVALID;
    };
    let result = config::gpu::plan(cfg);
    let written = match (&result, args.format) {
        (Ok(plan), Format::Json) => {
            let v = serde_json::json!({
                "config": name,
                "instances": plan.instances.iter().map(|i| serde_json::json!({
                    "cluster": i.cluster,
                    "device": i.device,
                    "profile": i.profile,
                    "profile_id": i.profile_id,
                    "placement_start": i.placement_start,
                    "placement_size": i.placement_size,
                })).collect::<Vec<_>>(),
                "whole_gpus": plan.whole_gpus,
            });
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            )
        }
        (Ok(plan), Format::Text) => {
            let mut s = format!("GPU plan for {name}\n");
            if plan.instances.is_empty() && plan.whole_gpus.is_empty() {
                s.push_str("  no GPU units requested\n");
            }
            for i in &plan.instances {
                s.push_str(&format!(
                    "  {:<6} MIG  {:<10} {:<12} slices {}..{}\n",
                    i.cluster,
                    i.device,
                    i.profile,
                    i.placement_start,
                    i.placement_start + i.placement_size
                ));
            }
            for w in &plan.whole_gpus {
                s.push_str(&format!(
                    "  {:<6} GPU  {:<10} (whole, passthrough)\n",
                    w.cluster, w.device
                ));
            }
            out.write_all(s.as_bytes())
        }
        (Err(e), Format::Json) => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"config": name, "error": e.to_string()})
            )
            .unwrap_or_default()
        ),
        (Err(e), Format::Text) => writeln!(out, "no GPU plan exists for {name}: {e}"),
    };
    if written.is_err() {
        return exit::CANNOT_RUN;
    }
    if result.is_ok() {
        exit::OK
    } else {
        exit::INVALID
    }
}
