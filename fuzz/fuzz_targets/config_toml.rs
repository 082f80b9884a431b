//! A configuration file of `tramline serve` (TOML; a comment line `#env NAME=VALUE` adds an
//! environment variable, e.g. `#env TRAMLINE_ORDER__LISTEN=0.0.0.0:8081`) loaded by
//! `Config::from_toml`, the path of `Config::load` and `tramline config check`.
//!
//! Checks: nothing panics; an invalid configuration names at least one problem, each once; a
//! valid one has every declared view's table (the check promises what `ViewSpec::table` then
//! does), and its printed form (`config check --print`, secrets hidden) is a valid
//! configuration that prints the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tramline::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| line.strip_prefix("#env "))
        .filter_map(|var| var.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let config = match Config::from_toml(text, env) {
        Ok(config) => config,
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a problem");
            for (i, p) in problems.iter().enumerate() {
                assert!(
                    !problems[..i].contains(p),
                    "{p} reported twice: {problems:?}"
                );
            }
            return;
        }
    };
    for (name, spec) in &config.views {
        if let Err(problems) = spec.table(name) {
            panic!("views.{name} passed the check, but its table is refused: {problems:?}");
        }
    }
    let printed = config.to_redacted_toml();
    match Config::from_toml(&printed, Vec::new()) {
        Ok(again) => assert_eq!(again.to_redacted_toml(), printed, "printed again"),
        Err(problems) => panic!("the printed configuration is not valid: {problems:?}\n{printed}"),
    }
});
