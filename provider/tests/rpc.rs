//! The tfplugin6 service driven in-process (no socket, no Terraform): every RPC Terraform 1.0–1.11 calls, with
//! the test provider of `support/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use terraform_provider_hsw::framework::{Type, Value};
use terraform_provider_hsw::protocol::msgpack;
use terraform_provider_hsw::protocol::server::ProviderService;
use terraform_provider_hsw::protocol::tfplugin6 as pb;
use terraform_provider_hsw::protocol::tfplugin6::provider_server::Provider as _;
use tonic::Request;

fn service() -> ProviderService {
    ProviderService::new(Arc::new(support::TestProvider::default()))
}

fn ty() -> Type {
    support::file_schema().ty()
}

fn dv(ty: &Type, v: &Value) -> Option<pb::DynamicValue> {
    Some(pb::DynamicValue {
        msgpack: msgpack::encode(ty, v).unwrap(),
        json: Vec::new(),
    })
}

fn value(ty: &Type, dv: Option<&pb::DynamicValue>) -> Value {
    msgpack::decode(ty, &dv.expect("a value").msgpack).unwrap()
}

fn errors(diags: &[pb::Diagnostic]) -> Vec<String> {
    diags
        .iter()
        .filter(|d| d.severity == pb::diagnostic::Severity::Error as i32)
        .map(|d| d.summary.clone())
        .collect()
}

async fn configure(svc: &ProviderService, dir: &std::path::Path) {
    let pty = Type::object([("state_dir", Type::String)]);
    let cfg = Value::object([("state_dir", Value::from(dir.to_str().unwrap()))]);
    let resp = svc
        .configure_provider(Request::new(pb::configure_provider::Request {
            terraform_version: "1.11.4".into(),
            config: dv(&pty, &cfg),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(
        errors(&resp.diagnostics).is_empty(),
        "{:?}",
        resp.diagnostics
    );
}

/// Applies the create of [`config`].
async fn apply_create(svc: &ProviderService) -> pb::apply_resource_change::Response {
    let ty = ty();
    let cfg = config();
    svc.apply_resource_change(Request::new(pb::apply_resource_change::Request {
        type_name: "hsw_test_file".into(),
        prior_state: dv(&ty, &Value::Null),
        planned_state: dv(&ty, &cfg),
        config: dv(&ty, &cfg),
        planned_private: Vec::new(),
        provider_meta: None,
    }))
    .await
    .unwrap()
    .into_inner()
}

fn config() -> Value {
    support::file_schema()
        .block
        .null_object()
        .with("name", "alpha")
        .with("content", "hello")
        .with("tags", Value::map([("env", Value::from("dev"))]))
}

#[tokio::test]
async fn schema_carries_json_types_and_flags() {
    let resp = service()
        .get_provider_schema(Request::new(pb::get_provider_schema::Request {}))
        .await
        .unwrap()
        .into_inner();
    assert!(resp.diagnostics.is_empty(), "{:?}", resp.diagnostics);
    let s = &resp.resource_schemas["hsw_test_file"];
    assert_eq!(s.version, 1);
    let block = s.block.as_ref().unwrap();
    let tags = block.attributes.iter().find(|a| a.name == "tags").unwrap();
    assert_eq!(tags.r#type, br#"["map","string"]"#);
    let secret = block
        .attributes
        .iter()
        .find(|a| a.name == "secret")
        .unwrap();
    assert!(secret.sensitive && secret.optional);
    assert_eq!(block.block_types[0].type_name, "rule");
    assert!(resp.data_source_schemas.contains_key("hsw_test_file"));
    let meta = service()
        .get_metadata(Request::new(pb::get_metadata::Request {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.resources[0].type_name, "hsw_test_file");
}

#[tokio::test]
async fn lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service();
    configure(&svc, dir.path()).await;
    let ty = ty();

    // Validate: a bad port is reported at its path.
    let bad = config().with(
        "rule",
        Value::List(vec![Value::object([
            ("port", Value::from(70000i64)),
            ("note", Value::Null),
        ])]),
    );
    let resp = svc
        .validate_resource_config(Request::new(pb::validate_resource_config::Request {
            type_name: "hsw_test_file".into(),
            config: dv(&ty, &bad),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(errors(&resp.diagnostics), ["Invalid port"]);
    assert_eq!(
        resp.diagnostics[0].attribute.as_ref().unwrap().steps.len(),
        3
    );

    // Plan a create: computed attributes unknown, configured map kept exactly.
    let cfg = config();
    let plan = svc
        .plan_resource_change(Request::new(pb::plan_resource_change::Request {
            type_name: "hsw_test_file".into(),
            prior_state: dv(&ty, &Value::Null),
            proposed_new_state: dv(&ty, &cfg),
            config: dv(&ty, &cfg),
            prior_private: b"opaque".to_vec(),
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(
        errors(&plan.diagnostics).is_empty(),
        "{:?}",
        plan.diagnostics
    );
    assert_eq!(plan.planned_private, b"opaque");
    let planned = value(&ty, plan.planned_state.as_ref());
    assert!(
        planned.get("id").is_unknown()
            && planned.get("size").is_unknown()
            && planned.get("mode").is_unknown()
    );
    assert_eq!(planned.get("tags"), cfg.get("tags"));

    // Apply it.
    let applied = svc
        .apply_resource_change(Request::new(pb::apply_resource_change::Request {
            type_name: "hsw_test_file".into(),
            prior_state: dv(&ty, &Value::Null),
            planned_state: plan.planned_state.clone(),
            config: dv(&ty, &cfg),
            planned_private: plan.planned_private.clone(),
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(
        errors(&applied.diagnostics).is_empty(),
        "{:?}",
        applied.diagnostics
    );
    assert_eq!(applied.private, b"opaque");
    let state = value(&ty, applied.new_state.as_ref());
    assert_eq!(state.get("size").as_i64(), Some(5));
    let id = state.get("id").as_str().unwrap().to_owned();

    // Read it back; private passes through.
    let read = svc
        .read_resource(Request::new(pb::read_resource::Request {
            type_name: "hsw_test_file".into(),
            current_state: applied.new_state.clone(),
            private: b"p".to_vec(),
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value(&ty, read.new_state.as_ref()), state);
    assert_eq!(read.private, b"p");

    // Changing the name forces replacement.
    let cfg2 = cfg.clone().with("name", "beta");
    let proposed = state.clone().with("name", "beta");
    let plan = svc
        .plan_resource_change(Request::new(pb::plan_resource_change::Request {
            type_name: "hsw_test_file".into(),
            prior_state: dv(&ty, &state),
            proposed_new_state: dv(&ty, &proposed),
            config: dv(&ty, &cfg2),
            prior_private: Vec::new(),
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(plan.requires_replace.len(), 1);

    // Data source.
    let ds_ty = Type::object([
        ("id", Type::String),
        ("name", Type::String),
        ("size", Type::Number),
        ("tags", Type::map(Type::String)),
    ]);
    let ds = svc
        .read_data_source(Request::new(pb::read_data_source::Request {
            type_name: "hsw_test_file".into(),
            config: dv(&ds_ty, &Value::object([("id", Value::from(id.as_str()))])),
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        value(&ds_ty, ds.state.as_ref()).get("name").as_str(),
        Some("alpha")
    );

    // Import by id returns the id; Terraform then reads.
    let imp = svc
        .import_resource_state(Request::new(pb::import_resource_state::Request {
            type_name: "hsw_test_file".into(),
            id: id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(imp.imported_resources.len(), 1);
    assert_eq!(
        value(&ty, imp.imported_resources[0].state.as_ref())
            .get("id")
            .as_str(),
        Some(id.as_str())
    );

    // Destroy: planned null.
    let destroyed = svc
        .apply_resource_change(Request::new(pb::apply_resource_change::Request {
            type_name: "hsw_test_file".into(),
            prior_state: dv(&ty, &state),
            planned_state: dv(&ty, &Value::Null),
            config: dv(&ty, &Value::Null),
            planned_private: Vec::new(),
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(errors(&destroyed.diagnostics).is_empty());
    assert!(value(&ty, destroyed.new_state.as_ref()).is_null());

    // Gone: read says null.
    let read = svc
        .read_resource(Request::new(pb::read_resource::Request {
            type_name: "hsw_test_file".into(),
            current_state: dv(&ty, &state),
            private: Vec::new(),
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(value(&ty, read.new_state.as_ref()).is_null());
}

#[tokio::test]
async fn upgrade_reads_json_state_by_version() {
    let svc = service();
    let upgrade = |version: i64, json: &str| {
        let req = pb::upgrade_resource_state::Request {
            type_name: "hsw_test_file".into(),
            version,
            raw_state: Some(pb::RawState {
                json: json.as_bytes().to_vec(),
                flatmap: Default::default(),
            }),
        };
        let svc = &svc;
        async move {
            svc.upgrade_resource_state(Request::new(req))
                .await
                .unwrap()
                .into_inner()
        }
    };
    // Current version, with an attribute the schema dropped.
    let resp = upgrade(
        1,
        r#"{"id":"a-1","name":"a","content":"x","size":1,"gone":true,"rule":[]}"#,
    )
    .await;
    assert!(
        errors(&resp.diagnostics).is_empty(),
        "{:?}",
        resp.diagnostics
    );
    let v = value(&ty(), resp.upgraded_state.as_ref());
    assert_eq!(v.get("content").as_str(), Some("x"));
    assert!(v.get("tags").is_null());
    // Version 0 called content "body".
    let resp = upgrade(0, r#"{"id":"a-1","name":"a","body":"old","rule":[]}"#).await;
    assert_eq!(
        value(&ty(), resp.upgraded_state.as_ref())
            .get("content")
            .as_str(),
        Some("old")
    );
    // Newer than we know, or garbage: diagnostics, no panic.
    assert_eq!(
        errors(&upgrade(7, "{}").await.diagnostics),
        ["Resource state is from a newer provider"]
    );
    assert_eq!(
        errors(&upgrade(1, "{nope").await.diagnostics),
        ["Invalid stored state"]
    );
}

#[tokio::test]
async fn bad_input_gives_diagnostics_not_panics() {
    let svc = service();
    let garbage = Some(pb::DynamicValue {
        msgpack: vec![0xc1, 0xff],
        json: Vec::new(),
    });
    let resp = svc
        .plan_resource_change(Request::new(pb::plan_resource_change::Request {
            type_name: "hsw_test_file".into(),
            prior_state: garbage.clone(),
            proposed_new_state: garbage.clone(),
            config: garbage.clone(),
            prior_private: Vec::new(),
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(errors(&resp.diagnostics), ["Invalid value from Terraform"]);
    let resp = svc
        .validate_resource_config(Request::new(pb::validate_resource_config::Request {
            type_name: "hsw_nope".into(),
            config: garbage,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(errors(&resp.diagnostics), ["Unknown resource type"]);
    // Apply of an unconfigured provider fails cleanly, keeping no state.
    let resp = apply_create(&svc).await;
    assert_eq!(errors(&resp.diagnostics), ["Provider not configured"]);
    assert!(resp.new_state.is_none());
}

/// `--debug` mode serves many Terraform runs with one service: a `StopProvider` from one run must not cancel the
/// calls of the next.
#[tokio::test]
async fn calls_after_stop_provider_are_not_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service();
    configure(&svc, dir.path()).await;
    svc.stop_provider(Request::new(pb::stop_provider::Request {}))
        .await
        .unwrap();
    let resp = apply_create(&svc).await;
    assert!(
        errors(&resp.diagnostics).is_empty(),
        "{:?}",
        resp.diagnostics
    );
    assert!(resp.new_state.is_some());
}

/// The high-water mark of this process's resident memory, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A hostile `DynamicValue`: 16 million msgpack nils (16 MB) in one list used to expand to over a gigabyte of
/// decoded values. It is refused before decoding, with a diagnostic naming the limit, in bounded memory.
#[tokio::test]
async fn a_huge_value_is_refused_in_bounded_memory() {
    let svc = service();
    let nils: u32 = 16_000_000;
    // {"rule": [nil × 16 000 000]}
    let mut hostile = vec![0x81, 0xa4];
    hostile.extend_from_slice(b"rule");
    hostile.push(0xdd);
    hostile.extend_from_slice(&nils.to_be_bytes());
    hostile.resize(hostile.len() + nils as usize, 0xc0);
    let json_nulls = format!("{{\"rule\":[{}null]}}", "null,".repeat(200_000));
    let before = peak_rss_kib();
    for dv in [
        pb::DynamicValue {
            msgpack: hostile,
            json: Vec::new(),
        },
        pb::DynamicValue {
            msgpack: Vec::new(),
            json: json_nulls.into_bytes(),
        },
        pb::DynamicValue {
            msgpack: vec![0xc4; (16 << 20) + 1],
            json: Vec::new(),
        },
    ] {
        let resp = svc
            .validate_resource_config(Request::new(pb::validate_resource_config::Request {
                type_name: "hsw_test_file".into(),
                config: Some(dv),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(errors(&resp.diagnostics), ["Value too large"]);
        let detail = &resp.diagnostics[0].detail;
        assert!(
            detail.contains("more than 100000 elements") || detail.contains("16 MiB"),
            "{detail}"
        );
    }
    // The inputs themselves are about 50 MB; decoding them used to take over a gigabyte.
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 256,
        "decoding grew the peak RSS by {grown_mib} MiB"
    );
}
