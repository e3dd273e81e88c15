//! Loader + validator: any bytes in, a report out, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let validated = hsw_core::config::validate_str(text);
        let _ = validated.report.render_text("fuzz.yaml", text, false);
        let _ = validated.report.to_json();
    }
});
