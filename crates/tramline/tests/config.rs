//! `tramline config check` on the sample configuration, on a broken one, and with secrets in
//! the environment.

use std::process::Command;

fn check(file: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tramline"))
        .args(["config", "check"])
        .arg(file)
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .expect("the tramline binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sample() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/tramline.toml")
}

#[test]
fn the_sample_configuration_is_valid() {
    let (ok, stdout, stderr) = check(&sample(), &[], &[]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("valid"), "{stdout}");
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let dir = tempfile::tempdir().expect("a directory");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[order]\nlisten = \"everywhere\"\nport = 1\n[view]\nconsumers = 0\n[transport]\nkind = \"pigeon\"\n",
    )
    .expect("written");
    let (ok, _, stderr) = check(
        &file,
        &[],
        &[("TRAMLINE_PAYMENT__DATABASE_URL", "oracle://x")],
    );
    assert!(!ok);
    for path in [
        "order.listen",
        "order.port",
        "view.consumers",
        "transport.kind",
        "payment.database_url",
    ] {
        assert!(
            stderr.contains(&format!("{path}: ")),
            "{path} not reported:\n{stderr}"
        );
    }
    assert!(stderr.contains("5 problems"), "{stderr}");
}

#[test]
fn secrets_never_appear_in_the_output() {
    let (ok, stdout, stderr) = check(
        &sample(),
        &["--print"],
        &[
            (
                "TRAMLINE_ORDER__DATABASE_URL",
                "mysql://app:hunter2@127.0.0.1:3306/orders",
            ),
            ("TRAMLINE_HTTP__BEARER_TOKEN", "t0ps3cret"),
        ],
    );
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("[order]"), "{stdout}");
    for secret in ["hunter2", "t0ps3cret"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} shown"
        );
    }
}

#[test]
fn a_missing_file_is_named() {
    let (ok, _, stderr) = check(std::path::Path::new("/no/such/tramline.toml"), &[], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("/no/such/tramline.toml") && stderr.contains("no such file"),
        "{stderr}"
    );
}
