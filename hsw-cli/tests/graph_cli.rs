//! `hsw-cli graph`: golden SVG and DOT of the embedded default (its SVG is the picture the README shows,
//! `docs/graph-default.svg`) and of `examples/h100-all-mig.yaml` (`tests/fixtures/graph/`); every SVG is
//! well-formed XML made only of plain shapes and text (nothing fetched, nothing run), names every VM and draws
//! every planned MIG instance and whole GPU. Goldens are rewritten with `UPDATE_EXPECT=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use hsw_core::layout::Layout;
use testkit::{golden, repo};

fn graph(config: Option<&str>, format: &str) -> String {
    let mut args = vec!["graph", "--format", format];
    if let Some(c) = config {
        args.extend(["--config", c]);
    }
    support::hsw().ok(&args)
}

/// The config's text: the embedded default or a file of the repository.
fn source(config: Option<&str>) -> String {
    config.map_or_else(
        || hsw_core::config::DEFAULT_CONFIG.to_owned(),
        |c| std::fs::read_to_string(repo().join(c)).unwrap(),
    )
}

/// The SVG is plain, well-formed, and shows every VM and every planned unit.
fn check_svg(svg: &str, config: Option<&str>) {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML: {e}\n{svg}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    for n in doc.descendants().filter(roxmltree::Node::is_element) {
        assert!(
            ["svg", "title", "rect", "line", "text"].contains(&n.tag_name().name()),
            "unexpected element <{}>",
            n.tag_name().name()
        );
        for a in n.attributes() {
            assert!(
                !a.name().contains("href")
                    && !a.value().contains("url(")
                    && !a.name().starts_with("on"),
                "an external reference or script: {}={}",
                a.name(),
                a.value()
            );
        }
    }
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect();
    let validated = hsw_core::config::validate_str(&source(config));
    let cfg = validated.valid_config().unwrap();
    let plan = hsw_core::config::gpu::plan(cfg).unwrap();
    let layout = Layout::checked(cfg, &plan).unwrap();
    assert!(!layout.vms.is_empty());
    for vm in &layout.vms {
        assert!(
            texts.contains(&vm.name.as_str()),
            "{} is not drawn",
            vm.name
        );
    }
    // Each instance is a block of its profile, labelled with its VM (or the VM's name without the
    // deployment's prefix, where the block is narrow).
    let count = |s: &str| texts.iter().filter(|t| **t == s).count();
    let mut blocks = std::collections::BTreeMap::<String, usize>::new();
    for i in &plan.instances {
        *blocks.entry(i.profile.clone()).or_default() += 1;
    }
    if !plan.whole_gpus.is_empty() {
        blocks.insert("whole GPU".into(), plan.whole_gpus.len());
    }
    for (profile, n) in &blocks {
        assert_eq!(count(profile), *n, "blocks of {profile}");
    }
    let prefix = format!("{}-", cfg.metadata.name);
    for t in &layout.targets {
        let vm = t.vm.as_deref().unwrap();
        let short = vm.strip_prefix(&prefix).unwrap();
        assert!(
            count(vm) + count(short) >= 2,
            "{}'s VM {vm} is not named on its slice block",
            t.unit_id
        );
    }
}

#[test]
fn the_default_picture_is_the_one_in_docs() {
    let svg = graph(None, "svg");
    check_svg(&svg, None);
    golden::check(repo().join("docs/graph-default.svg"), &svg);
    golden::check(
        repo().join("tests/fixtures/graph/default.dot"),
        &graph(None, "dot"),
    );
}

#[test]
fn an_all_mig_example_draws_both_gpus() {
    let config = "examples/h100-all-mig.yaml";
    let svg = graph(Some(config), "svg");
    check_svg(&svg, Some(config));
    let dir = repo().join("tests/fixtures/graph");
    golden::check(dir.join("h100-all-mig.svg"), &svg);
    let dot = graph(Some(config), "dot");
    assert!(
        dot.starts_with("digraph hsw {") && dot.ends_with("}\n"),
        "{dot}"
    );
    golden::check(dir.join("h100-all-mig.dot"), &dot);
}

#[test]
fn every_example_draws() {
    let examples = support::examples();
    assert!(examples.len() >= 4);
    for ex in examples {
        let rel = ex.strip_prefix(repo()).unwrap().display().to_string();
        check_svg(&graph(Some(&rel), "svg"), Some(&rel));
    }
}

#[test]
fn an_invalid_config_draws_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "version: \"1.0\"\n").unwrap();
    let o = support::hsw().run(&["graph", "--config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", testkit::describe(&o));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&bad.display().to_string()), "{err}");
}
