//! `rclone serve restic` on 127.0.0.1 for the `rest:` and `rclone:` tests.
//!
//! [`RcloneServe::start`] serves a folder inside its own temporary folder
//! over restic's REST protocol on a free port: plain HTTP, or with
//! [`ServeOptions`] basic authentication from an htpasswd file (an `apr1`
//! hash made by `openssl passwd`), HTTPS with a certificate from a private
//! CA ([`TestPki`], made with `openssl`), and client certificates checked
//! against that CA. Every repository is a folder below the served one:
//! [`RcloneServe::url`] gives `rest:http://127.0.0.1:PORT/<name>/`. The
//! server can be killed and started again on the same port and folder
//! ([`RcloneServe::kill`], [`RcloneServe::restart`]); it is killed on drop.
//!
//! The binary is `$RCLONE_BIN`, else `rclone` on `PATH` ([`rclone_bin`]);
//! [`RcloneServe::start_if_available`] skips the test (restix_testkit::skip)
//! without it. rclone runs with `RCLONE_CONFIG` pointing at an empty file,
//! so no user configuration leaks in; [`rclone_env`] gives the same for
//! restic's and restix's `rclone:` backends.
//!
//! ```no_run
//! use restix_tests::rclone::{RcloneServe, ServeOptions};
//! let Some(server) = RcloneServe::start_if_available(ServeOptions::default()) else { return };
//! let repo = server.url("repo1"); // rest:http://127.0.0.1:PORT/repo1/
//! # let _ = repo;
//! ```

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// User name of the htpasswd variant.
pub const USER: &str = "restix";
/// Its password.
pub const PASSWORD: &str = "s3cr3t-pw";

/// The rclone binary: `$RCLONE_BIN`, else `rclone` on `PATH`.
pub fn rclone_bin() -> Option<&'static Path> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("RCLONE_BIN").filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(bin));
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("rclone"))
            .find(|c| c.is_file())
    })
    .as_deref()
}

/// The rclone binary, or a recorded skip (`None`).
pub fn require_rclone() -> Option<&'static Path> {
    let bin = rclone_bin();
    if bin.is_none() {
        restix_testkit::skip("rclone", "apt-get install rclone, or set RCLONE_BIN");
    }
    bin
}

/// Whether `openssl` runs (for the TLS and htpasswd variants), else a
/// recorded skip.
pub fn require_openssl() -> bool {
    let ok = restix_testkit::have_program("openssl", &["version"]);
    if !ok {
        restix_testkit::skip("openssl", "apt-get install openssl");
    }
    ok
}

/// Environment for any program that runs rclone (restix and restic with
/// `rclone:`, the server): `RCLONE_CONFIG` naming an empty file in `dir`.
pub fn rclone_env(dir: &Path) -> Vec<(String, String)> {
    let config = dir.join("rclone-empty.conf");
    if !config.exists() {
        let _ = fs::write(&config, b"");
    }
    vec![(
        "RCLONE_CONFIG".to_string(),
        config.to_string_lossy().into_owned(),
    )]
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// Wait until something accepts connections on `port`, or panic with `log`.
pub fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    let start = Instant::now();
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before listening on {port}:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {port} within 60 s:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A private CA with a server certificate for 127.0.0.1 and a client
/// certificate, all made with `openssl` (rustls refuses a self-signed CA
/// certificate used as the server's own, so the server gets a leaf).
pub struct TestPki {
    /// The CA certificate (PEM): `--cacert` for restix, `--client-ca` for rclone.
    pub ca_cert: PathBuf,
    /// Server certificate (PEM) for `IP:127.0.0.1`.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// Client certificate and key in one PEM file (`--tls-client-cert`).
    pub client_pem: PathBuf,
}

impl TestPki {
    /// Make the CA and both certificates in `dir`.
    pub fn create(dir: &Path) -> TestPki {
        fs::create_dir_all(dir).unwrap();
        let p = |name: &str| dir.join(name);
        let openssl = || {
            let mut cmd = Command::new("openssl");
            cmd.current_dir(dir).stdin(Stdio::null());
            cmd
        };
        run_ok(openssl().args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=restix test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]));
        fs::write(
            p("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        fs::write(
            p("client.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        for (name, subject) in [("server", "/CN=127.0.0.1"), ("client", "/CN=restix client")] {
            run_ok(openssl().args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                subject,
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]));
            run_ok(openssl().args([
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ]));
        }
        let mut client = fs::read(p("client.pem")).unwrap();
        client.extend(fs::read(p("client.key")).unwrap());
        fs::write(p("client-with-key.pem"), client).unwrap();
        TestPki {
            ca_cert: p("ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            client_pem: p("client-with-key.pem"),
        }
    }
}

/// How the server is set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeOptions {
    /// Require basic authentication ([`USER`] / [`PASSWORD`]) from an
    /// htpasswd file.
    pub htpasswd: bool,
    /// Serve HTTPS with a [`TestPki`] server certificate.
    pub tls: bool,
    /// With `tls`: require a client certificate signed by the test CA.
    pub client_certs: bool,
}

/// A running `rclone serve restic` (killed on drop).
pub struct RcloneServe {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    options: ServeOptions,
    pki: Option<TestPki>,
    child: Option<Child>,
}

impl RcloneServe {
    /// Start a server if rclone (and, for TLS or htpasswd, openssl) exists;
    /// otherwise record a skip and return `None`.
    pub fn start_if_available(options: ServeOptions) -> Option<RcloneServe> {
        let bin = require_rclone()?;
        if (options.tls || options.htpasswd) && !require_openssl() {
            return None;
        }
        Some(RcloneServe::start_with(bin, options))
    }

    /// Start `bin serve restic` on a free port.
    pub fn start_with(bin: &Path, options: ServeOptions) -> RcloneServe {
        let dir = tempfile::Builder::new()
            .prefix("restix-rclone-serve-")
            .tempdir()
            .expect("create temp dir");
        fs::create_dir_all(dir.path().join("root")).unwrap();
        let pki = options
            .tls
            .then(|| TestPki::create(&dir.path().join("pki")));
        if options.htpasswd {
            let hash = run_ok(Command::new("openssl").args(["passwd", "-apr1", PASSWORD]));
            fs::write(
                dir.path().join("htpasswd"),
                format!("{USER}:{}\n", hash.trim()),
            )
            .unwrap();
        }
        let mut server = RcloneServe {
            dir,
            bin: bin.to_path_buf(),
            port: free_port(),
            options,
            pki,
            child: None,
        };
        server.restart();
        server
    }

    /// The folder served: repository `name` is the folder `root()/name`.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The test PKI (TLS variant only).
    pub fn pki(&self) -> Option<&TestPki> {
        self.pki.as_ref()
    }

    /// `rest:http(s)://127.0.0.1:PORT/<name>/`, without credentials.
    pub fn url(&self, name: &str) -> String {
        let scheme = if self.options.tls { "https" } else { "http" };
        format!("rest:{scheme}://127.0.0.1:{}/{name}/", self.port)
    }

    /// [`RcloneServe::url`] with [`USER`] and [`PASSWORD`] in it.
    pub fn url_with_credentials(&self, name: &str) -> String {
        let scheme = if self.options.tls { "https" } else { "http" };
        format!(
            "rest:{scheme}://{USER}:{PASSWORD}@127.0.0.1:{}/{name}/",
            self.port
        )
    }

    /// The server's log (stderr of every start).
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("serve.log")
    }

    /// Kill the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the server (again) on the same port and folder.
    pub fn restart(&mut self) {
        self.kill();
        let log = self.log();
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open serve log");
        let mut cmd = Command::new(&self.bin);
        cmd.args(["serve", "restic", "--addr"])
            .arg(format!("127.0.0.1:{}", self.port))
            .arg(self.root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        for (key, value) in rclone_env(self.dir.path()) {
            cmd.env(key, value);
        }
        if self.options.htpasswd {
            cmd.arg("--htpasswd").arg(self.dir.path().join("htpasswd"));
        }
        if let Some(pki) = &self.pki {
            cmd.arg("--cert")
                .arg(&pki.server_cert)
                .arg("--key")
                .arg(&pki.server_key);
            if self.options.client_certs {
                cmd.arg("--client-ca").arg(&pki.ca_cert);
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        // The port may linger in TIME_WAIT after a kill; rclone retries
        // nothing, so a failed bind shows up as an early exit here.
        wait_for_port(self.port, &mut child, "rclone serve restic", &log);
        self.child = Some(child);
    }
}

impl Drop for RcloneServe {
    fn drop(&mut self) {
        self.kill();
    }
}
