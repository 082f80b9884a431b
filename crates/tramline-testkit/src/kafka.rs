//! The Kafka side of the tests: the shared broker's address, unique names per test, and a
//! private broker process a test may stop and restart.
//!
//! Tests normally use the broker `scripts/test` starts (`TRAMLINE_TEST_KAFKA_BROKERS`,
//! default `127.0.0.1:9092`), each with its own topic and group prefix. A test that must stop
//! the broker under load gets a [`BrokerProcess`] of its own, on a free port and a temporary
//! data directory, so the other tests never notice.

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
