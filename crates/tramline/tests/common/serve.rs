//! Running `tramline serve` roles as real processes: free ports, a config file, readiness,
//! signals, and the HTTP calls of a client.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A free loopback address for a listener.
pub fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = listener.local_addr().expect("a bound address");
    address.to_string()
}

/// One `tramline serve <role>` process; killed if still running when dropped.
pub struct Served {
    pub role: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Served {
    /// Starts `tramline serve <role> --config <config>` with `env` on top, its stderr
    /// written to `<dir>/<name>.log`.
    pub fn start(
        role: &str,
        name: &str,
        config: &Path,
        env: &[(&str, String)],
        dir: &Path,
    ) -> Served {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("a log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_tramline"));
        command
            .args(["serve", role, "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("the tramline binary starts");
        Served {
            role: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM (or SIGINT, …) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Waits for the process to exit, at most `timeout`; panics with its log if it does not.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("the process was started");
        loop {
            if let Some(status) = child.try_wait().expect("the process can be waited for") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "{} did not exit within {timeout:?}; its log:\n{}",
                    self.role,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Fails with the process's log if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{} exited ({status}); its log:\n{}", self.role, self.log());
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP client with short timeouts.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// Waits until `GET <base>/ready` answers 200, checking that `process` keeps running.
pub async fn wait_ready(client: &reqwest::Client, base: &str, process: &mut Served) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        process.assert_running();
        if let Ok(r) = client.get(format!("{base}/ready")).send().await {
            if r.status() == reqwest::StatusCode::OK {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} not ready within 120 s; its log:\n{}",
            process.role,
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `POST <url>` with an optional JSON body: the status and the JSON answer.
pub async fn post(client: &reqwest::Client, url: &str, body: Option<&Value>) -> (u16, Value) {
    post_as(client, url, body, None).await
}

/// `POST <url>` with an optional JSON body and bearer token: the status and the JSON answer.
pub async fn post_as(
    client: &reqwest::Client,
    url: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = client.post(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `GET <url>`: the status and the JSON answer.
pub async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A new order's body, varied by `i`.
pub fn order_body(i: u64) -> Value {
    let quantity = i % 5 + 1;
    serde_json::json!({
        "customerId": format!("customer-{}", i % 17),
        "productId": format!("product-{}", i % 7),
        "quantity": quantity,
        "amountCents": quantity * 1999,
        "shippingAddress": format!("{} Tram Street", i + 1),
    })
}

/// A test's directory (config, process logs, SQLite files), kept and named when the test
/// fails so the processes' logs can be read.
pub struct TestDir(tempfile::TempDir);

impl TestDir {
    /// A new directory named after `test`.
    pub fn new(test: &str) -> TestDir {
        TestDir(
            tempfile::Builder::new()
                .prefix(&format!("tramline-{test}-"))
                .tempdir()
                .expect("a temporary directory"),
        )
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.disable_cleanup(true);
            eprintln!(
                "the processes' logs are kept in {}",
                self.0.path().display()
            );
        }
    }
}

/// The sum of every series of metric `name` in `GET <base>/metrics` (0 when absent).
pub async fn metric(client: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = match client.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => return 0.0,
    };
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A declared view's rows as text, by key: `column → value` (numbers as JSON writes them).
pub type ViewRows =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, Option<String>>>;

/// A served row with every value as text (numbers as JSON writes them, NULL as `None`).
pub fn row_as_text(row: &Value) -> std::collections::BTreeMap<String, Option<String>> {
    row.as_object()
        .expect("a row is an object")
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            (k.clone(), v)
        })
        .collect()
}

/// Every row `GET <base><path>` serves, page by page, keyed by `key`.
pub async fn view_rows(http: &reqwest::Client, base: &str, path: &str, key: &str) -> ViewRows {
    let mut rows = ViewRows::new();
    let mut after = String::new();
    loop {
        let (status, page) = get(http, &format!("{base}{path}?limit=500&after={after}")).await;
        assert_eq!(status, 200, "{page}");
        for row in page["items"].as_array().expect("items") {
            let row = row_as_text(row);
            let k = row[key].clone().expect("a key");
            rows.insert(k, row);
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => return rows,
        }
    }
}

/// Writes a `tramline serve` configuration: the `[transport]` section's lines; the order,
/// payment, delivery and view services' listeners (`listen[0..4]`) and databases; the relay's
/// listener (`listen[4]`) and its further lines; then `extra` sections.
pub fn write_config(
    dir: &Path,
    transport: &str,
    listen: &[String],
    databases: [String; 4],
    relay: &str,
    extra: &str,
) -> std::path::PathBuf {
    let mut text = format!("[transport]\n{transport}\n");
    let roles = ["order", "payment", "delivery", "view"];
    for ((role, url), address) in roles.iter().zip(databases).zip(listen) {
        text += &format!("[{role}]\nlisten = \"{address}\"\ndatabase_url = \"{url}\"\n");
    }
    text += &format!("[relay]\nlisten = \"{}\"\n{relay}\n{extra}", listen[4]);
    let path = dir.join("tramline.toml");
    std::fs::write(&path, text).expect("the config file is written");
    path
}
