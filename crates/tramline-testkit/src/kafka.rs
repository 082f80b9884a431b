//! The Kafka side of the tests: the shared broker's address, unique names per test, and a
//! private broker process a test may stop and restart.
//!
//! Tests normally use the broker `scripts/test` starts (`TRAMLINE_TEST_KAFKA_BROKERS`,
//! default `127.0.0.1:9092`), each with its own topic and group prefix. A test that must stop
//! the broker under load gets a [`BrokerProcess`] of its own, on a free port and a temporary
//! data directory, so the other tests never notice. [`read_plain`] reads topics with a plain
//! Kafka client, as another system would.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared test broker's bootstrap address.
pub fn brokers() -> String {
    std::env::var("TRAMLINE_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A prefix unique to this test run, for its topics and groups: `t-<test>-<random>.`.
pub fn unique_prefix(test: &str) -> String {
    let tail: u64 = rand::random();
    format!("t-{test}-{tail:016x}.")
}

/// A topic name unique to this test run, shaped as an Eventuate aggregate type:
/// `com.example.t<random>.<entity lower-cased>.<entity>`.
pub fn unique_aggregate_type(entity: &str) -> String {
    let tail: u64 = rand::random();
    format!(
        "com.example.t{tail:016x}.{}.{entity}",
        entity.to_lowercase()
    )
}

/// The nisshi broker binary: `TRAMLINE_NISSHI`, else `nisshi` on the PATH, else cargo's bin.
fn nisshi() -> PathBuf {
    if let Ok(path) = std::env::var("TRAMLINE_NISSHI") {
        return path.into();
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nisshi"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        let home = std::env::var("CARGO_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
            });
        home.join("bin").join("nisshi")
    })
}

/// A broker process of one test, on its own port and data directory.
#[derive(Debug)]
pub struct BrokerProcess {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl BrokerProcess {
    /// Starts a broker on a free loopback port and waits until it accepts connections.
    pub fn start() -> BrokerProcess {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let dir = tempfile::tempdir().expect("a temporary broker directory");
        let mut broker = BrokerProcess {
            child: None,
            port,
            dir,
        };
        broker.resume();
        broker
    }

    /// The bootstrap address.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (as a crash would); its data stays for [`BrokerProcess::resume`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and data, and waits until it answers.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the broker is running");
        let log =
            std::fs::File::create(self.dir.path().join("broker.log")).expect("a broker log file");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let binary = nisshi();
        // nisshi joins a sqlite:// path onto its working directory: start it inside its dir.
        let child = Command::new(&binary)
            .current_dir(self.dir.path())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://broker.db"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a second log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the broker {} ({e}); run scripts/broker install, or set TRAMLINE_NISSHI",
                    binary.display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the broker on port {} did not answer within 60 s; log in {}",
                self.port,
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A record as a plain Kafka client (rdkafka, none of tramline's code) reads it.
#[derive(Debug)]
pub struct PlainRecord {
    /// The topic it is on.
    pub topic: String,
    /// The record key.
    pub key: String,
    /// The value, parsed as JSON.
    pub value: serde_json::Value,
    /// The record's create time (ms).
    pub create_time: i64,
}

impl PlainRecord {
    /// A header of the Eventuate envelope in the value.
    pub fn header(&self, name: &str) -> &str {
        self.value["headers"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} header in {}", self.value))
    }
}

/// Reads `n` records of `topics` (cluster names) from the beginning with a plain consumer of
/// a group of its own; fails after 60 s.
pub async fn read_plain(brokers: &str, topics: &[String], n: usize) -> Vec<PlainRecord> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Message, Timestamp};
    let plain: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{}.plain", topics.join("+")))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("a plain consumer");
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    plain.subscribe(&names).expect("subscribed");
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while seen.len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "a plain consumer read only {} of {n} records",
                seen.len()
            );
            let Some(m) = plain.poll(Duration::from_millis(200)) else {
                continue;
            };
            let m = m.expect("a record");
            let create_time = match m.timestamp() {
                Timestamp::CreateTime(ms) => ms,
                other => panic!("expected a create time, got {other:?}"),
            };
            seen.push(PlainRecord {
                topic: m.topic().to_owned(),
                key: String::from_utf8(m.key().expect("a key").to_vec()).expect("utf-8 key"),
                value: serde_json::from_slice(m.payload().expect("a value"))
                    .expect("the value is JSON"),
                create_time,
            });
        }
        seen
    })
    .await
    .expect("no panic")
}
