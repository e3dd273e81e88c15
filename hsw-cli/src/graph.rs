//! `hsw-cli graph`: one picture of the deployment from cluster.yaml, its layout
//! ([`hsw_core::layout::Layout`]: every VM, and each GPU unit's VM and attachment) and the GPU plan: the host,
//! each cluster's network (subnet, bridge, mode), every VM by name in its cluster, and every GPU drawn as its
//! memory slices (as many as the catalog gives its model) with each MIG instance (or the whole GPU) coloured by
//! cluster and labelled with its profile and VM.
//!
//! [`Picture`] gathers what is drawn (pure); [`svg`] draws it as a self-contained SVG written here (only
//! `rect`, `line` and `text` in a plain `<svg>`: no fonts to fetch, no scripts, no external references) and
//! [`dot`] as Graphviz DOT.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use hsw_core::config::rules::cluster_network;
use hsw_core::config::ClusterConfig;
use hsw_core::gpu::catalog;
use hsw_core::gpu::plan::GpuPlan;
use hsw_core::layout::{unit_id, Layout, UnitKind};

use crate::error::Error;
use crate::exit;
use crate::session::Session;

/// The picture's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// A self-contained SVG image.
    Svg,
    /// Graphviz DOT (`dot -Tpng`).
    Dot,
}

/// `hsw-cli graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The cluster definition (the embedded default when absent).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Svg)]
    pub format: GraphFormat,
}

/// Runs `hsw-cli graph`: the picture on `out`.
pub fn run(args: &GraphArgs, out: &mut dyn Write) -> u8 {
    let result = Session::load(args.config.as_deref()).and_then(|s| {
        s.print_warnings();
        let plan = s.plan()?;
        let layout = Layout::checked(&s.config, plan)
            .map_err(|e| Error::invalid(format!("{} has no complete layout: {e}", s.name)))?;
        let p = Picture::new(&s.config, plan, &layout);
        Ok(match args.format {
            GraphFormat::Svg => svg(&p),
            GraphFormat::Dot => dot(&p),
        })
    });
    match result {
        Ok(text) => {
            let _ = out.write_all(text.as_bytes());
            exit::OK
        }
        Err(e) => e.report(),
    }
}

/// The colour of a cluster's instances and boxes, and a light tint of it.
fn colours(cluster: &str) -> (&'static str, &'static str) {
    match cluster {
        "hpc" => ("#2b6cb0", "#ebf4ff"),
        _ => ("#2f855a", "#e6fffa"),
    }
}

const FREE: &str = "#e2e8f0";

/// Everything the picture shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// `metadata.name`.
    pub name: String,
    /// The host line: libvirt URI, GPU backend, pool.
    pub host: String,
    /// Each present cluster, HPC first.
    pub clusters: Vec<ClusterBox>,
    /// Every GPU of `gpu_allocation.devices`, in order.
    pub gpus: Vec<GpuBar>,
}

/// One cluster: its network and VMs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterBox {
    /// `hpc` or `cloud`.
    pub key: &'static str,
    /// `<network name>  <subnet>`.
    pub network: String,
    /// `bridge <name> · <mode>`.
    pub bridge: String,
    /// Its VMs in layout order.
    pub vms: Vec<VmBox>,
}

/// One VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmBox {
    /// Its name.
    pub name: String,
    /// `role · address · size`.
    pub detail: String,
    /// One line per GPU unit.
    pub gpus: Vec<String>,
}

/// One GPU and what is carved out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuBar {
    /// The device id.
    pub id: String,
    /// `<model> · <pci address> · N memory slices`.
    pub label: String,
    /// Memory slices.
    pub slices: u32,
    /// The instances (or the whole GPU), by start.
    pub spans: Vec<Span>,
}

/// A run of memory slices given to one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// First slice.
    pub start: u32,
    /// Slices covered.
    pub size: u32,
    /// `hpc` or `cloud`.
    pub cluster: &'static str,
    /// The MIG profile, or `whole GPU`.
    pub profile: String,
    /// The VM that gets it (`no VM` when none).
    pub vm: String,
    /// How it reaches the VM.
    pub attach: String,
}

fn cluster_key(name: &str) -> &'static str {
    if name == "hpc" {
        "hpc"
    } else {
        "cloud"
    }
}

impl Picture {
    /// What the picture shows of `config` with its plan and layout.
    pub fn new(config: &ClusterConfig, plan: &GpuPlan, layout: &Layout) -> Picture {
        let clusters = config
            .present_clusters()
            .into_iter()
            .map(|key| {
                let net_name = cluster_network(config, key).unwrap_or("");
                let net = config.global.networks.get(net_name);
                let mode = net
                    .and_then(|n| n.mode)
                    .and_then(|m| serde_json::to_value(m).ok())
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "isolated".into());
                ClusterBox {
                    key,
                    network: format!("{net_name}  {}", net.map_or("", |n| n.subnet.as_str())),
                    bridge: format!("bridge {} · {mode}", net.map_or("", |n| n.bridge.as_str())),
                    vms: layout
                        .vms
                        .iter()
                        .filter(|v| v.cluster == key)
                        .map(|v| VmBox {
                            name: v.name.clone(),
                            detail: format!(
                                "{} · {} · {} vCPU, {} GiB, {} GiB disk",
                                v.role.as_str(),
                                v.ip,
                                v.vcpu,
                                v.memory_gb,
                                v.disk_gb
                            ),
                            gpus: v
                                .gpu_units
                                .iter()
                                .map(|u| match (u.kind, &u.profile, u.placement_start) {
                                    (UnitKind::Mig, Some(p), Some(s)) => {
                                        let size = plan
                                            .instances
                                            .iter()
                                            .find(|i| {
                                                i.device == u.device && i.placement_start == s
                                            })
                                            .map_or(1, |i| i.placement_size);
                                        format!(
                                            "GPU {} · MIG {p} · {}",
                                            u.device,
                                            slice_range(s, size)
                                        )
                                    }
                                    (UnitKind::Mig, p, _) => format!(
                                        "GPU {} · MIG {}",
                                        u.device,
                                        p.as_deref().unwrap_or("?")
                                    ),
                                    (UnitKind::Whole, _, _) => format!("GPU {} · whole", u.device),
                                    (UnitKind::Mdev, p, _) => format!(
                                        "GPU {} · vGPU {}",
                                        u.device,
                                        p.as_deref().unwrap_or("?")
                                    ),
                                })
                                .collect(),
                        })
                        .collect(),
                }
            })
            .collect();
        let target = |id: String| {
            layout.target(&id).map_or_else(
                || ("no VM".to_owned(), String::new()),
                |t| {
                    (
                        t.vm.clone().unwrap_or_else(|| "no VM".into()),
                        t.attach.as_str().to_owned(),
                    )
                },
            )
        };
        let gpus = config
            .gpu_devices()
            .iter()
            .map(|d| {
                let model = catalog::lookup_model(&d.model);
                let mut spans: Vec<Span> = plan
                    .instances
                    .iter()
                    .filter(|i| i.device == d.id)
                    .map(|i| {
                        let (vm, attach) =
                            target(unit_id(UnitKind::Mig, &i.device, Some(i.placement_start)));
                        Span {
                            start: i.placement_start,
                            size: i.placement_size,
                            cluster: cluster_key(&i.cluster),
                            profile: i.profile.clone(),
                            vm,
                            attach,
                        }
                    })
                    .collect();
                let used = spans.iter().map(|s| s.start + s.size).max().unwrap_or(0);
                // A GPU the catalog does not know is drawn as one block unless it was sliced.
                let slices = model.map_or(used.max(1), |m| m.memory_slices.max(used));
                for w in plan.whole_gpus.iter().filter(|w| w.device == d.id) {
                    let (vm, attach) = target(unit_id(UnitKind::Whole, &w.device, None));
                    spans.push(Span {
                        start: 0,
                        size: slices,
                        cluster: cluster_key(&w.cluster),
                        profile: "whole GPU".into(),
                        vm,
                        attach,
                    });
                }
                spans.sort_by_key(|s| s.start);
                GpuBar {
                    id: d.id.clone(),
                    label: format!(
                        "{} · {} · {}",
                        model.map_or(d.model.as_str(), |m| m.display_name),
                        d.pci_address,
                        if model.is_some() {
                            format!("{slices} memory slices")
                        } else {
                            "no MIG profile table".into()
                        }
                    ),
                    slices,
                    spans,
                }
            })
            .collect();
        Picture {
            name: config.metadata.name.clone(),
            host: format!(
                "host · libvirt {} · GPU backend {} · pool {}",
                config.libvirt_uri(),
                config.gpu_backend().as_str(),
                config.pool_dir()
            ),
            clusters,
            gpus,
        }
    }
}

/// `memory slice 3` or `memory slices 0-1`.
fn slice_range(start: u32, size: u32) -> String {
    if size <= 1 {
        format!("memory slice {start}")
    } else {
        format!("memory slices {start}-{}", start + size - 1)
    }
}

/// `s` with XML's special characters escaped.
fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// `label`, shortened to fit `width` pixels at about `px` pixels a character: first without the deployment's
/// name prefix, then cut with an ellipsis.
fn fit(label: &str, prefix: &str, width: u32, px: f32) -> String {
    let fits = |s: &str| (s.chars().count() as f32) * px <= width as f32;
    if fits(label) {
        return label.to_owned();
    }
    let short = label
        .strip_prefix(prefix)
        .and_then(|s| s.strip_prefix('-'))
        .unwrap_or(label);
    if fits(short) {
        return short.to_owned();
    }
    let keep = ((width as f32 / px) as usize).saturating_sub(1);
    let mut s: String = short.chars().take(keep).collect();
    s.push('…');
    s
}

const W: u32 = 1000;
const M: u32 = 20;
const LINE: u32 = 16;

struct Svg(String);

impl Svg {
    fn rect(&mut self, x: u32, y: u32, w: u32, h: u32, fill: &str, stroke: &str) {
        let _ = writeln!(
            self.0,
            r##"<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="4" fill="{fill}" stroke="{stroke}"/>"##
        );
    }

    fn line(&mut self, (x1, y1): (u32, u32), (x2, y2): (u32, u32), stroke: &str) {
        let _ = writeln!(
            self.0,
            r##"<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{stroke}"/>"##
        );
    }

    fn text(&mut self, x: u32, y: u32, size: u32, attrs: &str, s: &str) {
        let _ = writeln!(
            self.0,
            r##"<text x="{x}" y="{y}" font-size="{size}"{attrs}>{}</text>"##,
            xml(s)
        );
    }
}

/// The picture as a self-contained SVG.
pub fn svg(p: &Picture) -> String {
    let mut b = Svg(String::new());
    b.text(
        M,
        32,
        20,
        r##" font-weight="bold""##,
        &format!("hsw · {}", p.name),
    );
    // The host, with one column per cluster: its network, then its VMs.
    let host_top = 48;
    let col_w = (W - 4 * M) / 2;
    let mut col_bottom = host_top + 40;
    let mut cols = Svg(String::new());
    for (i, c) in p.clusters.iter().enumerate() {
        let (strong, tint) = colours(c.key);
        let x = 2 * M + (col_w + M) * u32::try_from(i).unwrap_or(0);
        let mut y = host_top + 40;
        let title = if c.key == "hpc" {
            "HPC cluster (Slurm)"
        } else {
            "cloud cluster (Kubernetes)"
        };
        cols.text(
            x,
            y,
            14,
            &format!(r##" font-weight="bold" fill="{strong}""##),
            title,
        );
        y += 8;
        cols.rect(x, y, col_w, 2 * LINE + 12, tint, strong);
        cols.text(
            x + 10,
            y + LINE + 2,
            13,
            r##" font-weight="bold""##,
            &c.network,
        );
        cols.text(x + 10, y + 2 * LINE + 4, 12, "", &c.bridge);
        let net_bottom = y + 2 * LINE + 12;
        y = net_bottom + 12;
        for vm in &c.vms {
            let lines = 2 + u32::try_from(vm.gpus.len()).unwrap_or(0);
            let h = lines * LINE + 12;
            // The VM hangs off its network.
            let mid = y + h / 2;
            cols.line((x + 16, net_bottom), (x + 16, mid), strong);
            cols.line((x + 16, mid), (x + 24, mid), strong);
            cols.rect(x + 24, y, col_w - 24, h, "#ffffff", strong);
            cols.text(
                x + 34,
                y + LINE + 2,
                13,
                r##" font-weight="bold""##,
                &vm.name,
            );
            cols.text(x + 34, y + 2 * LINE + 2, 12, "", &vm.detail);
            for (k, g) in vm.gpus.iter().enumerate() {
                let ky = y + (3 + u32::try_from(k).unwrap_or(0)) * LINE + 2;
                cols.text(x + 34, ky, 12, &format!(r##" fill="{strong}""##), g);
            }
            y += h + 8;
        }
        col_bottom = col_bottom.max(y);
    }
    let host_h = col_bottom - host_top + 4;
    b.rect(M, host_top, W - 2 * M, host_h, "#f7fafc", "#4a5568");
    b.text(M + 12, host_top + 20, 13, r##" fill="#4a5568""##, &p.host);
    b.0.push_str(&cols.0);
    // The GPUs: one bar of memory slices each.
    let mut y = host_top + host_h + 36;
    if !p.gpus.is_empty() {
        b.text(
            M,
            y,
            16,
            r##" font-weight="bold""##,
            "GPUs: memory slices, each MIG instance coloured by cluster",
        );
        y += 16;
    }
    let bar_w = W - 2 * M;
    for g in &p.gpus {
        b.text(
            M,
            y + LINE,
            13,
            r##" font-weight="bold""##,
            &format!("{} · {}", g.id, g.label),
        );
        y += LINE + 8;
        let cell = bar_w / g.slices.max(1);
        let bar_h = 3 * LINE + 8;
        for s in 0..g.slices {
            b.rect(M + s * cell, y, cell, bar_h, FREE, "#a0aec0");
            if g.slices == 1 {
                continue;
            }
            b.text(
                M + s * cell + cell / 2,
                y + bar_h + 14,
                11,
                r##" text-anchor="middle" fill="#718096""##,
                &s.to_string(),
            );
        }
        for sp in &g.spans {
            let (strong, _) = colours(sp.cluster);
            let (x, w) = (M + sp.start * cell, sp.size * cell);
            b.rect(
                x + 2,
                y + 2,
                w.saturating_sub(4),
                bar_h - 4,
                strong,
                "#1a202c",
            );
            let cx = x + w / 2;
            let white = r##" text-anchor="middle" fill="#ffffff""##;
            let bold = r##" text-anchor="middle" fill="#ffffff" font-weight="bold""##;
            b.text(
                cx,
                y + LINE + 2,
                12,
                bold,
                &fit(&sp.profile, "", w - 8, 7.4),
            );
            b.text(
                cx,
                y + 2 * LINE + 2,
                11,
                white,
                &fit(&sp.vm, &p.name, w - 8, 6.8),
            );
            b.text(
                cx,
                y + 3 * LINE + 2,
                10,
                white,
                &fit(&format!("{} · {}", sp.cluster, sp.attach), "", w - 8, 6.2),
            );
        }
        y += bar_h + 28;
    }
    // The legend.
    let mut x = M;
    for (label, fill) in [
        ("HPC instance", colours("hpc").0),
        ("cloud instance", colours("cloud").0),
        ("free slice", FREE),
    ] {
        b.rect(x, y, 14, 14, fill, "#4a5568");
        b.text(x + 20, y + 12, 12, "", label);
        x += 150;
    }
    let h = y + 30;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" viewBox=\"0 0 {W} {h}\" \
         font-family=\"sans-serif\">\n<title>{}</title>\n<rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{h}\" \
         fill=\"#ffffff\"/>\n{}</svg>\n",
        xml(&format!("hsw deployment {}", p.name)),
        b.0
    )
}

/// `s` as a DOT string (quoted, with quotes and backslashes escaped, lines as `\n`).
fn q(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The picture as Graphviz DOT.
pub fn dot(p: &Picture) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph hsw {{");
    let _ = writeln!(
        s,
        "  graph [rankdir=LR, fontname=\"sans-serif\", label={}, labelloc=t];",
        q(&format!("hsw · {}\n{}", p.name, p.host))
    );
    let _ = writeln!(
        s,
        "  node [shape=box, style=rounded, fontname=\"sans-serif\"];"
    );
    let _ = writeln!(s, "  host [label={}];", q(&format!("host\n{}", p.name)));
    for c in &p.clusters {
        let (strong, tint) = colours(c.key);
        let _ = writeln!(s, "  subgraph {} {{", q(&format!("cluster_{}", c.key)));
        let _ = writeln!(
            s,
            "    label={}; color={}; style=filled; fillcolor={};",
            q(&format!("{} cluster", c.key)),
            q(strong),
            q(tint)
        );
        let net = format!("net:{}", c.key);
        let _ = writeln!(
            s,
            "    {} [label={}, shape=ellipse];",
            q(&net),
            q(&format!("{}\n{}", c.network, c.bridge))
        );
        for vm in &c.vms {
            let mut label = format!("{}\n{}", vm.name, vm.detail);
            for g in &vm.gpus {
                label.push('\n');
                label.push_str(g);
            }
            let _ = writeln!(
                s,
                "    {} [label={}, color={}];",
                q(&format!("vm:{}", vm.name)),
                q(&label),
                q(strong)
            );
            let _ = writeln!(s, "    {} -> {};", q(&net), q(&format!("vm:{}", vm.name)));
        }
        let _ = writeln!(s, "  }}");
        let _ = writeln!(s, "  host -> {};", q(&net));
    }
    for g in &p.gpus {
        let _ = writeln!(s, "  subgraph {} {{", q(&format!("cluster_gpu_{}", g.id)));
        let _ = writeln!(s, "    label={};", q(&format!("{}\n{}", g.id, g.label)));
        let mut at = 0;
        let mut cells = Vec::new();
        for sp in &g.spans {
            if sp.start > at {
                cells.push(format!("free\\n{}", slice_range(at, sp.start - at)));
            }
            cells.push(format!(
                "<s{}> {}\\n{}\\n{}",
                sp.start,
                sp.profile,
                sp.vm,
                slice_range(sp.start, sp.size)
            ));
            at = at.max(sp.start + sp.size);
        }
        if at < g.slices {
            cells.push(format!("free\\n{}", slice_range(at, g.slices - at)));
        }
        let record: Vec<String> = cells
            .iter()
            .map(|c| c.replace('"', "'").replace(['{', '}', '|'], " "))
            .collect();
        let _ = writeln!(
            s,
            "    {} [shape=record, style=\"\", label=\"{}\"];",
            q(&format!("gpu:{}", g.id)),
            record.join(" | ")
        );
        let _ = writeln!(s, "  }}");
        let _ = writeln!(s, "  host -> {};", q(&format!("gpu:{}", g.id)));
        for sp in &g.spans {
            if sp.vm != "no VM" {
                let _ = writeln!(
                    s,
                    "  {}:s{} -> {} [color={}, label={}];",
                    q(&format!("gpu:{}", g.id)),
                    sp.start,
                    q(&format!("vm:{}", sp.vm)),
                    q(colours(sp.cluster).0),
                    q(&format!("{} {}", sp.profile, sp.attach))
                );
            }
        }
    }
    let _ = writeln!(s, "}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_xml_and_dot() {
        assert_eq!(xml("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(q("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }

    #[test]
    fn labels_are_fitted_to_their_span() {
        assert_eq!(
            fit("hsw-dev-compute-1", "hsw-dev", 200, 6.0),
            "hsw-dev-compute-1"
        );
        assert_eq!(fit("hsw-dev-compute-1", "hsw-dev", 60, 6.0), "compute-1");
        assert_eq!(fit("hsw-dev-compute-1", "hsw-dev", 30, 6.0), "comp…");
    }

    #[test]
    fn the_default_has_every_vm_and_instance() {
        let s = crate::session::testing::default_session();
        let plan = s.plan().unwrap();
        let layout = Layout::checked(&s.config, plan).unwrap();
        let p = Picture::new(&s.config, plan, &layout);
        let vms: Vec<&str> = p
            .clusters
            .iter()
            .flat_map(|c| c.vms.iter().map(|v| v.name.as_str()))
            .collect();
        assert_eq!(vms.len(), layout.vms.len());
        assert_eq!(p.gpus.len(), 1);
        assert_eq!(p.gpus[0].slices, 8);
        assert_eq!(p.gpus[0].spans.len(), plan.instances.len());
        for sp in &p.gpus[0].spans {
            assert!(vms.contains(&sp.vm.as_str()), "{sp:?}");
        }
    }
}
