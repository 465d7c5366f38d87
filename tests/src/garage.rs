//! A private 3-node Garage cluster on 127.0.0.1 for the S3 tests.
//!
//! [`GarageCluster::start`] runs three `garage server` processes, each with
//! its own config file, metadata and data folders inside one temporary
//! folder, distinct RPC/S3/admin ports and one shared `rpc_secret`, with
//! `replication_factor = 3`. Through the `garage` CLI against node 1 it then
//! connects the nodes, assigns a layout (one zone per node), applies it,
//! imports an access key, creates a bucket and allows the key on it (and to
//! create buckets). Every process is killed on drop.
//!
//! The binary is `$GARAGE_BIN`, else `/work/targets/garage-bin/bin/garage`,
//! `~/.cargo/bin/garage`, or `garage` on `PATH` ([`garage_bin`]); tests use
//! [`require_garage!`](crate::require_garage) to skip when none exists. CI
//! installs it with `cargo install garage --locked`.
//!
//! ```no_run
//! use restix_tests::garage::GarageCluster;
//! let Some(cluster) = GarageCluster::start_if_available() else { return };
//! let repo = cluster.repo_url("host1"); // s3:http://127.0.0.1:PORT/restix/host1
//! let mut cmd = std::process::Command::new("restic");
//! cluster.apply_env(&mut cmd); // AWS_ACCESS_KEY_ID, ..., AWS_DEFAULT_REGION=garage
//! cmd.args(["-r", &repo, "init"]);
//! ```

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Region the cluster's S3 API answers to (`s3_region`).
pub const REGION: &str = "garage";
/// The bucket created at start.
pub const BUCKET: &str = "restix";
/// The access key imported at start (Garage key IDs are `GK` + 24 hex digits).
pub const KEY_ID: &str = "GK0123456789abcdef01234567";
/// Its secret (64 hex digits).
pub const SECRET: &str = "5a1e6f0c2b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7";
/// Shared RPC secret of the nodes (32 bytes, hex).
const RPC_SECRET: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
/// How long cluster set-up steps may keep failing while nodes come up.
const SETUP_PATIENCE: Duration = Duration::from_secs(90);

/// The garage binary: `$GARAGE_BIN`, `/work/targets/garage-bin/bin/garage`,
/// `~/.cargo/bin/garage`, then `PATH`. `None` when there is none.
pub fn garage_bin() -> Option<&'static Path> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("GARAGE_BIN").filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(bin));
        }
        let mut candidates = vec![PathBuf::from("/work/targets/garage-bin/bin/garage")];
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(PathBuf::from(home).join(".cargo/bin/garage"));
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|d| d.join("garage")));
        }
        candidates.into_iter().find(|c| c.is_file())
    })
    .as_deref()
}

/// Starts a cluster, or prints `skipped: garage not found` and returns from
/// the calling test.
#[macro_export]
macro_rules! require_garage {
    () => {
        match $crate::garage::GarageCluster::start_if_available() {
            Some(cluster) => cluster,
            None => return,
        }
    };
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// One node: its config and ports, and its process while it runs.
struct GarageNode {
    config: PathBuf,
    log: PathBuf,
    rpc_port: u16,
    s3_port: u16,
    child: Option<Child>,
}

/// A running 3-node Garage cluster (killed on drop).
pub struct GarageCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    nodes: Vec<GarageNode>,
}

impl GarageCluster {
    /// Start the cluster if a garage binary exists; otherwise print why the
    /// test is skipped and return `None`.
    pub fn start_if_available() -> Option<GarageCluster> {
        match garage_bin() {
            Some(bin) => Some(GarageCluster::start_with(bin)),
            None => {
                restix_testkit::skip(
                    "garage",
                    "set GARAGE_BIN or run `cargo install garage --locked \
                     --no-default-features --features sqlite,bundled-libs`",
                );
                None
            }
        }
    }

    /// Start three nodes with `bin` and set up layout, key and bucket.
    pub fn start_with(bin: &Path) -> GarageCluster {
        let dir = tempfile::Builder::new()
            .prefix("restix-garage-")
            .tempdir()
            .expect("create temp dir");
        let mut nodes = Vec::new();
        for index in 1..=3 {
            let node_dir = dir.path().join(format!("node{index}"));
            fs::create_dir_all(node_dir.join("meta")).unwrap();
            fs::create_dir_all(node_dir.join("data")).unwrap();
            let (rpc_port, s3_port, admin_port) = (free_port(), free_port(), free_port());
            let config = node_dir.join("garage.toml");
            fs::write(
                &config,
                format!(
                    r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 3
metadata_fsync = false
data_fsync = false
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{RPC_SECRET}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
"#,
                    meta = node_dir.join("meta").display(),
                    data = node_dir.join("data").display(),
                ),
            )
            .unwrap();
            nodes.push(GarageNode {
                config,
                log: node_dir.join("server.log"),
                rpc_port,
                s3_port,
                child: None,
            });
        }
        let mut cluster = GarageCluster {
            dir,
            bin: bin.to_path_buf(),
            nodes,
        };
        for index in 0..3 {
            cluster.start_node(index);
        }
        cluster.set_up();
        cluster
    }

    /// Connect the nodes, apply a 3-zone layout, import the key, create the bucket.
    fn set_up(&self) {
        let mut ids = Vec::new();
        for index in 0..3 {
            let out = self.retry_cli(index, &["node", "id", "-q"]);
            // `<64 hex>@127.0.0.1:PORT`
            let line = out
                .lines()
                .find(|l| l.contains('@'))
                .unwrap_or_default()
                .trim();
            assert!(!line.is_empty(), "garage node id printed {out:?}");
            ids.push(line.to_string());
        }
        for id in ids.iter().skip(1) {
            self.retry_cli(0, &["node", "connect", id]);
        }
        for (index, id) in ids.iter().enumerate() {
            let short: String = id.chars().take(16).collect();
            let zone = format!("dc{}", index + 1);
            self.retry_cli(0, &["layout", "assign", "-z", &zone, "-c", "1G", &short]);
        }
        self.retry_cli(0, &["layout", "apply", "--version", "1"]);
        self.retry_cli(
            0,
            &["key", "import", "--yes", "-n", "restix-key", KEY_ID, SECRET],
        );
        self.retry_cli(0, &["key", "allow", "--create-bucket", "restix-key"]);
        self.retry_cli(0, &["bucket", "create", BUCKET]);
        self.retry_cli(
            0,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                BUCKET,
                "--key",
                "restix-key",
            ],
        );
        // The S3 API answers once the layout reached every node.
        for index in 0..3 {
            self.wait_for_port(self.nodes[index].s3_port);
        }
    }

    /// Run `garage -c <node config> args...` once; `Err(output)` on failure.
    pub fn cli(&self, node: usize, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.nodes[node].config)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(text)
        }
    }

    /// [`Self::cli`] until it succeeds (nodes still starting, layout still
    /// spreading); panics with the last output after [`SETUP_PATIENCE`].
    fn retry_cli(&self, node: usize, args: &[&str]) -> String {
        let start = Instant::now();
        loop {
            match self.cli(node, args) {
                Ok(out) => return out,
                Err(text) => {
                    if start.elapsed() > SETUP_PATIENCE {
                        panic!(
                            "garage {args:?} kept failing: {text}\n--- node logs ---\n{}",
                            self.logs()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }

    fn wait_for_port(&self, port: u16) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < SETUP_PATIENCE,
                "port {port} never opened\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for (index, node) in self.nodes.iter().enumerate() {
            let log = fs::read_to_string(&node.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            text.push_str(&format!("== node {} ==\n", index + 1));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// Start node `index` (0-based) with its existing config and data.
    pub fn start_node(&mut self, index: usize) {
        if self.nodes[index].child.is_some() {
            return;
        }
        let node = &self.nodes[index];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("open node log");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "garage=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let rpc_port = node.rpc_port;
        let s3_port = node.s3_port;
        self.nodes[index].child = Some(child);
        self.wait_for_port(rpc_port);
        self.wait_for_port(s3_port);
    }

    /// Kill node `index` (0-based); its data stays for [`Self::start_node`].
    pub fn stop_node(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Wait until node 1 sees all three nodes connected again (after a restart).
    pub fn wait_healthy(&self) {
        let start = Instant::now();
        loop {
            if let Ok(out) = self.cli(0, &["status"]) {
                let down = out.contains("FAILED NODES") || out.contains("Failed nodes");
                if !down {
                    return;
                }
            }
            assert!(
                start.elapsed() < SETUP_PATIENCE,
                "cluster never healthy again\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The S3 endpoint of node `index` (0-based): `http://127.0.0.1:PORT`.
    pub fn endpoint(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[index].s3_port)
    }

    /// `s3:http://127.0.0.1:PORT/restix/<prefix>` on node 1.
    pub fn repo_url(&self, prefix: &str) -> String {
        format!("s3:{}/{BUCKET}/{prefix}", self.endpoint(0))
    }

    /// The AWS variables restic and restix need for this cluster.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
            ("AWS_DEFAULT_REGION", REGION.to_string()),
        ]
    }

    /// Put [`Self::env`] on a command.
    pub fn apply_env(&self, cmd: &mut Command) {
        for (key, value) in self.env() {
            cmd.env(key, value);
        }
    }

    /// The cluster's temporary folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.stop_node(index);
        }
    }
}
