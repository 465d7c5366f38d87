//! Azurite, Microsoft's Azure Storage emulator, on 127.0.0.1 for the
//! `azure:` tests.
//!
//! [`Azurite::start`] runs `azurite-blob --blobHost 127.0.0.1 --blobPort P
//! --location DIR --skipApiVersionCheck --loose` on a free port with its
//! data in a temporary folder; it answers for the well-known development
//! account [`ACCOUNT`] / [`KEY`] at `http://127.0.0.1:P/devstoreaccount1`
//! ([`Azurite::endpoint`]). [`Azurite::stop`] ends it gracefully (its
//! metadata is saved), [`Azurite::kill`] with SIGKILL (metadata of the last
//! seconds may be lost, as in a crash); [`Azurite::start_again`] brings it
//! back on the same port and folder. It is killed on drop.
//!
//! [`Azurite::account_sas`] signs an account SAS token with the development
//! key, for restix's `AZURE_ACCOUNT_SAS` and for the `sas_url` of an rclone
//! `azureblob` remote (rclone 1.60's `use_emulator` only knows port 10000),
//! which is how the real restic reads what restix wrote.
//!
//! The binary is `$AZURITE_BLOB_BIN`, else `azurite-blob` on `PATH` (`npm
//! install -g azurite`); [`Azurite::start_if_available`] skips without it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::rclone::{free_port, wait_for_port};

/// Azurite's development account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Its well-known key (public, documented by Microsoft).
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The azurite-blob binary: `$AZURITE_BLOB_BIN`, else on `PATH`.
pub fn azurite_bin() -> Option<&'static Path> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("AZURITE_BLOB_BIN").filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(bin));
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("azurite-blob"))
            .find(|c| c.is_file())
    })
    .as_deref()
}

/// A running Azurite blob service (killed on drop).
pub struct Azurite {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Azurite {
    /// Start Azurite if `azurite-blob` exists; otherwise record a skip.
    pub fn start_if_available() -> Option<Azurite> {
        match azurite_bin() {
            Some(bin) => Some(Azurite::start_with(bin)),
            None => {
                restix_testkit::skip("azurite", "npm install -g azurite, or set AZURITE_BLOB_BIN");
                None
            }
        }
    }

    /// Start `bin` on a free port with a fresh data folder.
    pub fn start_with(bin: &Path) -> Azurite {
        let dir = tempfile::Builder::new()
            .prefix("restix-azurite-")
            .tempdir()
            .expect("create temp dir");
        fs::create_dir_all(dir.path().join("data")).unwrap();
        let mut azurite = Azurite {
            dir,
            bin: bin.to_path_buf(),
            port: free_port(),
            child: None,
        };
        azurite.start_again();
        azurite
    }

    /// The service URL, account in the path: `http://127.0.0.1:P/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// `-o azure.endpoint=<endpoint>` for restix.
    pub fn endpoint_option(&self) -> String {
        format!("azure.endpoint={}", self.endpoint())
    }

    /// `AZURE_ACCOUNT_NAME` and `AZURE_ACCOUNT_KEY` of the dev account.
    pub fn key_env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_ACCOUNT_NAME".to_string(), ACCOUNT.to_string()),
            ("AZURE_ACCOUNT_KEY".to_string(), KEY.to_string()),
        ]
    }

    /// The log of every start.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("azurite.log")
    }

    /// Start (again) on the same port and data folder.
    pub fn start_again(&mut self) {
        self.kill();
        let log = self.log();
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open azurite log");
        let stdout = log_file.try_clone().expect("clone log handle");
        let mut child = Command::new(&self.bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort"])
            .arg(self.port.to_string())
            .arg("--location")
            .arg(self.dir.path().join("data"))
            .args(["--skipApiVersionCheck", "--loose", "--disableTelemetry"])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        wait_for_port(self.port, &mut child, "azurite-blob", &log);
        self.child = Some(child);
    }

    /// Kill Azurite at once (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop Azurite gracefully (SIGTERM: it saves its metadata first).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child this struct started and
            // has not yet reaped; no memory is involved.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            for _ in 0..200 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// An account SAS token (no leading `?`) for the blob service, all
    /// resource types and permissions, valid until 2099, signed with the
    /// development key (service version 2019-12-12's string to sign:
    /// account, permissions, services, resource types, start, expiry, IP,
    /// protocol, version, each followed by a newline).
    pub fn account_sas(&self) -> String {
        let (permissions, services, types, expiry, version) =
            ("rwdlacup", "b", "sco", "2099-01-01T00:00:00Z", "2019-12-12");
        let protocol = "https,http";
        let to_sign = format!(
            "{ACCOUNT}\n{permissions}\n{services}\n{types}\n\n{expiry}\n\n{protocol}\n{version}\n"
        );
        let key = data_encoding::BASE64
            .decode(KEY.as_bytes())
            .expect("the dev key is base64");
        let signature = restix_azure::auth::signature(&key, &to_sign);
        let encode = |v: &str| {
            v.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    other => format!("%{other:02X}"),
                })
                .collect::<String>()
        };
        format!(
            "sv={version}&ss={services}&srt={types}&sp={permissions}&se={}&spr={}&sig={}",
            encode(expiry),
            encode(protocol),
            encode(&signature)
        )
    }

    /// Environment for an rclone `azureblob` remote named `remote` that
    /// reaches `container` through a SAS URL.
    pub fn rclone_remote_env(&self, remote: &str, container: &str) -> Vec<(String, String)> {
        let upper = remote.to_ascii_uppercase();
        vec![
            (
                format!("RCLONE_CONFIG_{upper}_TYPE"),
                "azureblob".to_string(),
            ),
            (
                format!("RCLONE_CONFIG_{upper}_SAS_URL"),
                format!("{}/{container}?{}", self.endpoint(), self.account_sas()),
            ),
        ]
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.kill();
    }
}
