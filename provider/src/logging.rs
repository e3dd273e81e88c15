//! Logs in the form Terraform reads from a provider's stderr: one hclog JSON object per line,
//! `{"@level":"debug","@message":"...","@module":"provider.hsw","@timestamp":"2026-01-02T03:04:05.000000Z",...}`.
//!
//! Terraform shows them with `TF_LOG=debug` (or `TF_LOG_PROVIDER=debug`). The level comes from
//! `TF_LOG_PROVIDER_HSW`, else `TF_LOG_PROVIDER`, else `TF_LOG`; unset means quiet (nothing), except in `--debug`
//! mode where it defaults to `info`. Events from libraries (h2, hyper, tonic, rustls) are kept to `warn` and above.
//!
//! Never log attribute values: they may be secrets. Log type names, paths and summaries.

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// The `@module` of every line.
pub const MODULE: &str = "provider.hsw";

/// Crates whose events are shown only from `warn` up, whatever the level.
const NOISY: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "rustls",
    "tokio_rustls",
    "aws_lc_rs",
];

/// Reads the log level from the environment (see the module documentation). `None` means off.
pub fn level_from_env(default: Option<Level>) -> Option<Level> {
    ["TF_LOG_PROVIDER_HSW", "TF_LOG_PROVIDER", "TF_LOG"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .map_or(default, |v| parse_level(&v))
}

/// Parses a Terraform log level name (`TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `OFF`; `JSON` means trace).
/// Unknown names mean trace, as in Terraform.
pub fn parse_level(v: &str) -> Option<Level> {
    match v.trim().to_ascii_lowercase().as_str() {
        "off" => None,
        "error" => Some(Level::ERROR),
        "warn" => Some(Level::WARN),
        "info" => Some(Level::INFO),
        "debug" => Some(Level::DEBUG),
        _ => Some(Level::TRACE),
    }
}

/// Installs the hclog JSON subscriber writing to stderr at `level` (nothing if `None`). Does nothing if a
/// subscriber is already installed.
pub fn init(level: Option<Level>) {
    let Some(level) = level else { return };
    let _ = tracing_subscriber::registry()
        .with(HclogLayer { level })
        .try_init();
}

/// A layer that writes hclog JSON lines to stderr.
#[derive(Debug)]
pub struct HclogLayer {
    level: Level,
}

impl HclogLayer {
    fn enabled_for(&self, meta: &tracing::Metadata<'_>) -> bool {
        let root = meta.target().split("::").next().unwrap_or_default();
        let max = if NOISY.contains(&root) {
            Level::WARN.min(self.level)
        } else {
            self.level
        };
        // tracing orders levels by verbosity: TRACE > DEBUG > ... > ERROR.
        *meta.level() <= max
    }
}

impl<S: Subscriber> Layer<S> for HclogLayer {
    fn enabled(&self, meta: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        self.enabled_for(meta)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if !self.enabled_for(event.metadata()) {
            return;
        }
        let line = format_line(event, std::time::SystemTime::now());
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        let _ = err.flush();
    }
}

fn format_line(event: &Event<'_>, now: std::time::SystemTime) -> String {
    let mut fields = JsonFields::default();
    event.record(&mut fields);
    let level = match *event.metadata().level() {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    };
    let mut obj = serde_json::Map::new();
    obj.insert("@level".into(), level.into());
    obj.insert("@message".into(), fields.message.unwrap_or_default().into());
    obj.insert("@module".into(), MODULE.into());
    obj.insert("@timestamp".into(), hclog_timestamp(now).into());
    for (k, v) in fields.fields {
        if !k.starts_with('@') {
            obj.insert(k, v);
        }
    }
    let mut line = serde_json::Value::Object(obj).to_string();
    line.push('\n');
    line
}

#[derive(Default)]
struct JsonFields {
    message: Option<String>,
    fields: Vec<(String, serde_json::Value)>,
}

impl JsonFields {
    fn put(&mut self, field: &Field, v: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.push((field.name().to_owned(), v));
        }
    }
}

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.put(field, s.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
}

/// hclog's timestamp format, `2006-01-02T15:04:05.000000Z07:00`, in UTC (exactly six fraction digits: go-plugin
/// parses the field with that layout and drops lines that do not match).
pub fn hclog_timestamp(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (y, m, day, hh, mm, ss) = hsw_core::host::prepare::utc_fields(d.as_secs());
    format!(
        "{y:04}-{m:02}-{day:02}T{hh:02}:{mm:02}:{ss:02}.{:06}Z",
        d.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps() {
        assert_eq!(hclog_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        // 2024-02-29T12:34:56.789012Z
        let t = UNIX_EPOCH + Duration::from_micros(1_709_210_096_789_012);
        assert_eq!(hclog_timestamp(t), "2024-02-29T12:34:56.789012Z");
    }

    #[test]
    fn levels() {
        assert_eq!(parse_level("DEBUG"), Some(Level::DEBUG));
        assert_eq!(parse_level("json"), Some(Level::TRACE));
        assert_eq!(parse_level("off"), None);
    }

    #[test]
    fn lines_are_hclog_json() {
        use std::sync::{Arc, Mutex};
        struct Capture(Arc<Mutex<Vec<String>>>);
        impl<S: Subscriber> Layer<S> for Capture {
            fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
                self.0.lock().unwrap().push(format_line(event, UNIX_EPOCH));
            }
        }
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sub = tracing_subscriber::registry().with(Capture(lines.clone()));
        tracing::subscriber::with_default(sub, || {
            tracing::info!(type_name = "hsw_vm", n = 3, "creating")
        });
        let got = lines.lock().unwrap().join("");
        let v: serde_json::Value = serde_json::from_str(got.trim()).unwrap();
        assert_eq!(v["@level"], "info");
        assert_eq!(v["@message"], "creating");
        assert_eq!(v["@module"], "provider.hsw");
        assert_eq!(v["@timestamp"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(v["type_name"], "hsw_vm");
        assert_eq!(v["n"], 3);
    }
}
