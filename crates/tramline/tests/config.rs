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

fn eventuate_example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/eventuate-view/tramline.toml")
}

#[test]
fn the_eventuate_example_is_valid_and_its_views_can_be_overridden() {
    let (ok, stdout, stderr) = check(
        &eventuate_example(),
        &["--print"],
        &[
            (
                "TRAMLINE_VIEWS__ORDER_STATUS__DATABASE_URL",
                "mysql://view:hunter2@db:3306/views",
            ),
            (
                "TRAMLINE_VIEWS__ORDER_STATUS__TOPICS__PAYMENT",
                "com.acme.payment.Payment",
            ),
        ],
    );
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("[views.order_status]"), "{stdout}");
    assert!(
        stdout.contains("payment = \"com.acme.payment.Payment\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("mysql://view:***@db:3306/views") && !stdout.contains("hunter2"),
        "the password is hidden: {stdout}"
    );
}

#[test]
fn every_bad_field_of_a_declaration_is_named_by_its_path() {
    let text = std::fs::read_to_string(eventuate_example()).expect("the example");
    let broken = text
        .replacen("{ name = \"quantity\", type = \"integer\" }", "{ name = \"quantity\", type = \"number\" }", 1)
        .replacen("group = \"delivery\"\nkey = { field = \"orderId\" }", "group = \"shipping\"\nkey = { field = \"orderId\" }", 1)
        .replacen("set.payment_status = { value = \"APPROVED\" }", "set.payment_state = { value = \"APPROVED\" }", 1)
        .replacen("key = { field = \"orderId\" }\nset.order_status = { value = \"REJECTED\" }", "key = { field = \"orderId\", header = \"x\" }\nset.order_status = { value = \"REJECTED\" }", 1);
    assert_ne!(broken, text);
    let dir = tempfile::tempdir().expect("a directory");
    let file = dir.path().join("broken.toml");
    std::fs::write(&file, broken).expect("written");
    let (ok, _, stderr) = check(
        &file,
        &[],
        &[("TRAMLINE_VIEWS__ORDER_STATUS__LISTEN", "nowhere")],
    );
    assert!(!ok, "{stderr}");
    for (path, says) in [
        ("views.order_status.listen", "not an address"),
        (
            "views.order_status.groups[0].columns[3].type",
            "\"number\" is not a column type",
        ),
        ("views.order_status.events[2].key", "give exactly one of"),
        (
            "views.order_status.events[6].set.payment_state",
            "not a column of group \"payment\"",
        ),
        (
            "views.order_status.events[8].group",
            "group \"shipping\", which is not declared",
        ),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("{path}: ")))
            .unwrap_or_else(|| panic!("{path} not reported:\n{stderr}"));
        assert!(line.contains(says), "{line}");
    }
    assert!(stderr.contains("5 problems"), "{stderr}");
}
