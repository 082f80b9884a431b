//! The `tramline` command's library part: its configuration (`tramline serve`'s TOML file and
//! environment overrides), parsed and checked here so that it can be tested and fuzzed on its own.

pub mod config;
