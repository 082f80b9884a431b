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

/// The `TRAMLINE_…` variables docker-compose.yml gives its tramline containers, with the
/// `${VAR:-default}` substitutions compose would make when nothing is set.
fn compose_environment(compose: &str) -> Vec<(String, String)> {
    compose
        .lines()
        .filter_map(|line| line.trim().split_once(": "))
        .filter(|(key, _)| key.starts_with("TRAMLINE_") && key.contains("__"))
        .map(|(key, value)| {
            let mut value = value.trim().to_owned();
            while let Some(start) = value.find("${") {
                let end = value[start..]
                    .find('}')
                    .map(|e| start + e)
                    .expect("a closed ${…}");
                let default = value[start + 2..end]
                    .split_once(":-")
                    .map(|(_, d)| d.to_owned())
                    .unwrap_or_default();
                value.replace_range(start..=end, &default);
            }
            (key.to_owned(), value)
        })
        .collect()
}

#[test]
fn the_container_configuration_is_valid_with_the_compose_environment() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let compose =
        std::fs::read_to_string(root.join("docker-compose.yml")).expect("the compose file");
    let env = compose_environment(&compose);
    assert!(
        env.iter().any(|(k, _)| k == "TRAMLINE_VIEW__DATABASE_URL"),
        "no TRAMLINE_ variables found in docker-compose.yml: {env:?}"
    );
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (ok, stdout, stderr) = check(&root.join("deploy/tramline.toml"), &["--print"], &env);
    assert!(ok, "{stdout}{stderr}");
    // The passwords compose passes in are hidden when the configuration is printed.
    assert!(!stdout.contains("change-me"), "{stdout}");
    assert!(stdout.contains("mariadb:3306/order_status"), "{stdout}");
    // Every role the compose file runs is one `tramline serve` knows, with the mounted file.
    for role in ["order", "payment", "delivery", "relay", "view"] {
        let command = format!(
            "command: [\"serve\", \"{role}\", \"--config\", \"/etc/tramline/tramline.toml\"]"
        );
        assert!(
            compose.contains(&command),
            "{role} missing from docker-compose.yml"
        );
    }
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("the Dockerfile");
    assert!(dockerfile.contains("COPY deploy/tramline.toml /etc/tramline/tramline.toml"));
}
