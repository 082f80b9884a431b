//! The processes a chaos run owns: its own MariaDB server and its own Kafka-protocol broker
//! (never the machine's shared ones, which other work uses meanwhile), and the `tramline serve`
//! roles; each can be killed with SIGKILL and started again on the same data.

use anyhow::{bail, Context};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("while finding a port")?;
    Ok(listener.local_addr()?.port())
}

/// Whether something accepts connections on `port`.
pub fn answers(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Sends `signal` (`TERM`, `KILL`) to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// A program started again and again with the same arguments, its output appended to one
/// log file.
pub struct Restartable {
    /// Its name in reports.
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Times it exited without being killed.
    pub exited: u64,
}

impl Restartable {
    /// Describes the program; nothing starts yet.
    pub fn new(name: &str, program: &Path, args: &[String], dir: &Path, log_dir: &Path) -> Self {
        Restartable {
            name: name.to_owned(),
            program: program.to_owned(),
            args: args.to_vec(),
            env: Vec::new(),
            dir: dir.to_owned(),
            log: log_dir.join(format!("{name}.log")),
            child: None,
            exited: 0,
        }
    }

    /// An environment variable of every start.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts it (again).
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("while opening {}", self.log.display()))?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let child = command.spawn().with_context(|| {
            format!("while starting {} ({})", self.name, self.program.display())
        })?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and waits up to `grace` before SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM");
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether it runs; one that exited by itself is counted and forgotten.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                self.exited += 1;
                false
            }
            None => false,
        }
    }

    /// The last `lines` lines of its log.
    pub fn tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Restartable {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `port` accepts connections, at most `within`.
pub fn wait_for_port(port: u16, within: Duration, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !answers(port) {
        if Instant::now() > deadline {
            bail!("{what} did not listen on 127.0.0.1:{port} within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn program(candidates: &[&str]) -> anyhow::Result<PathBuf> {
    for c in candidates {
        let path = Path::new(c);
        if path.is_absolute() && path.exists() {
            return Ok(path.to_owned());
        }
        if let Ok(out) = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {c}"))
            .output()
        {
            let found = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() && !found.is_empty() {
                return Ok(PathBuf::from(found));
            }
        }
    }
    bail!("none of {candidates:?} is installed")
}

/// A MariaDB server of the run's own, on a free port, data in `dir`.
pub struct MariaDb {
    /// Its port.
    pub port: u16,
    /// The server process.
    pub server: Restartable,
}

impl MariaDb {
    /// Initialises a data directory in `dir` and starts the server.
    pub fn start(dir: &Path, log_dir: &Path) -> anyhow::Result<MariaDb> {
        let data = dir.join("mariadb");
        std::fs::create_dir_all(&data)?;
        let install = program(&["mariadb-install-db", "mysql_install_db"])?;
        let out = Command::new(&install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .arg("--user=root")
            .output()
            .context("while initialising the MariaDB data directory")?;
        if !out.status.success() {
            bail!(
                "mariadb-install-db failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let port = free_port()?;
        let server = program(&["/usr/sbin/mariadbd", "mariadbd", "/usr/sbin/mysqld"])?;
        let args = vec![
            "--no-defaults".to_owned(),
            format!("--datadir={}", data.display()),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--socket={}", data.join("mariadb.sock").display()),
            format!("--pid-file={}", data.join("mariadb.pid").display()),
            "--user=root".to_owned(),
            "--skip-grant-tables".to_owned(),
            "--innodb-buffer-pool-size=256M".to_owned(),
            "--max-connections=500".to_owned(),
        ];
        let mut server = Restartable::new("mariadb", &server, &args, dir, log_dir);
        server.start()?;
        wait_for_port(port, Duration::from_secs(60), "MariaDB")?;
        Ok(MariaDb { port, server })
    }

    /// The URL of database `name` on it.
    pub fn url(&self, name: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{name}", self.port)
    }

    /// SIGKILLs the server (a crash: InnoDB recovers at the next start) and starts it again.
    pub fn crash_and_restart(&mut self) -> anyhow::Result<()> {
        self.server.kill();
        self.server.start()?;
        wait_for_port(self.port, Duration::from_secs(120), "MariaDB")
    }
}

/// The run's own Kafka-protocol broker (nisshi, see scripts/broker), on a free port.
pub struct Broker {
    /// Its port.
    pub port: u16,
    /// The broker process.
    pub server: Restartable,
}

impl Broker {
    /// Starts nisshi with its data in `dir/broker`.
    pub fn start(dir: &Path, log_dir: &Path) -> anyhow::Result<Broker> {
        let data = dir.join("broker");
        std::fs::create_dir_all(&data)?;
        let home = std::env::var("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".cargo")))
            .unwrap_or_default();
        let cargo_bin = home.join("bin/nisshi");
        let nisshi = program(&[cargo_bin.to_string_lossy().as_ref(), "nisshi"])
            .context("the broker nisshi is needed: scripts/broker install")?;
        let port = free_port()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let args = vec![
            "broker".to_owned(),
            "--listener-url".to_owned(),
            url.clone(),
            "--advertised-listener-url".to_owned(),
            url,
            "--storage-engine".to_owned(),
            "sqlite://broker.db".to_owned(),
        ];
        let mut server = Restartable::new("broker", &nisshi, &args, &data, log_dir);
        server.start()?;
        wait_for_port(port, Duration::from_secs(60), "the broker")?;
        Ok(Broker { port, server })
    }

    /// Its bootstrap address.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGKILL) and starts it again on the same data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.server.kill();
        self.server.start()?;
        wait_for_port(self.port, Duration::from_secs(60), "the broker")
    }
}
