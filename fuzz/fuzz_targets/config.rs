//! The config loader: arbitrary text as `oncehook.toml`, through `${VAR}` substitution,
//! deserialization and validation, then compiled into the runtime pieces as `serve` does.
//!
//! Checks that no config, however wrong, panics: it loads, or it fails with a message.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use oncehook::app::Runtime;
use oncehook::config::Config;

fn env(name: &str) -> Option<String> {
    match name {
        "SECRET" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()),
        "TOKEN" => Some("admin-token".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `schema` names a file to read: keep the fuzzer away from devices and the process table,
    // where a read never ends.
    if ["/dev", "/proc", "/sys", "\\u", "\\U"]
        .iter()
        .any(|word| text.contains(word))
    {
        return;
    }
    let file = Path::new("/nonexistent/oncehook.toml");
    let Ok(config) = Config::from_toml(text, file, Path::new("/nonexistent"), &env) else {
        return;
    };
    let _ = config.store_location();
    let _ = format!("{config:?}");
    let _ = Runtime::build(&config);
});
