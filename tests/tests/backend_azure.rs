//! The `azure:` backend against Azurite, Microsoft's Blob Storage emulator
//! (tests/src/azurite.rs), with its development account.
//!
//! 1. The backend conformance suite (`restix_backend::testing`) with Shared
//!    Key signatures, block uploads (Put Block + Put Block List) for large
//!    files and Azurite stopped and started again (outage), and with a SAS
//!    token.
//! 2. restix writes through `azure:`; the real restic 0.14 checks
//!    (`--read-data`) and restores it through its `rclone:` backend with an
//!    rclone `azureblob` remote; and restix reads what restic wrote there.
//! 3. Azurite stopped in the middle of a backup and started again: the
//!    backup retries and completes (or fails naming the file).
//! 4. Missing credentials are a clear error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use restix_azure::{AzureLocation, AzureOptions, TlsOptions};
use restix_backend::testing::conformance::{Outage, Suite};
use restix_engine::backend::{Backend, FileType};
use restix_tests::azurite::Azurite;
use restix_tests::harness::{is_restix, Sandbox, Tool};
use restix_tests::rclone::{rclone_env, require_rclone};
use restix_tests::remote_repo::{self, Access, ServerFault};
use restix_tests::require_restic;

fn open(
    azurite: &Azurite,
    location: &str,
    env: Vec<(String, String)>,
    options: AzureOptions,
) -> restix_azure::AzureBackend {
    let options = AzureOptions {
        endpoint: Some(azurite.endpoint()),
        ..options
    };
    restix_azure::open_with_env(
        &AzureLocation::parse(location).unwrap(),
        &options,
        &TlsOptions::default(),
        &|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
    )
    .unwrap()
}

/// restix's access to `location` on Azurite with the account key.
fn restix_access(azurite: &Azurite, location: &str) -> Access {
    Access::url(location)
        .with_env(azurite.key_env())
        .with_args(["-o".to_string(), azurite.endpoint_option()])
}

/// Azurite stopped and started again on the same ports and storage.
struct StopAzurite<'a>(&'a Mutex<Azurite>);

impl Outage for StopAzurite<'_> {
    fn begin(&self) {
        self.0.lock().unwrap().stop();
    }
    fn end(&self) {
        self.0.lock().unwrap().start_again();
    }
}

#[test]
fn azure_conformance_with_shared_key_blocks_and_outage() {
    let Some(azurite) = Azurite::start_if_available() else {
        return;
    };
    let azurite = Mutex::new(azurite);
    let next = AtomicUsize::new(0);
    // Small blocks so that the large files go up as 5 blocks.
    let options = AzureOptions {
        block_threshold: 1 << 20,
        block_size: 1 << 20,
        ..AzureOptions::default()
    };
    let outage = StopAzurite(&azurite);
    Suite::new(|| {
        let azurite = azurite.lock().unwrap();
        let location = format!(
            "azure:conformance:/repo/{}",
            next.fetch_add(1, Ordering::SeqCst)
        );
        open(&azurite, &location, azurite.key_env(), options.clone())
    })
    .large_file_size((4 << 20) + 12345)
    .outage(&outage)
    .run();
    // A repository at the root of the same container stays apart.
    let azurite = azurite.lock().unwrap();
    let root = open(
        &azurite,
        "azure:conformance:/",
        azurite.key_env(),
        AzureOptions::default(),
    );
    assert_eq!(root.location(), "azure:conformance:/");
    root.create().unwrap();
    assert!(root.list(FileType::Pack).unwrap().is_empty());
}

#[test]
fn azure_conformance_with_a_sas_token() {
    let Some(azurite) = Azurite::start_if_available() else {
        return;
    };
    let env = vec![
        (
            "AZURE_ACCOUNT_NAME".to_string(),
            "devstoreaccount1".to_string(),
        ),
        (
            "AZURE_ACCOUNT_SAS".to_string(),
            format!("?{}", azurite.account_sas()),
        ),
    ];
    let next = AtomicUsize::new(0);
    Suite::new(|| {
        let location = format!("azure:sas:/repo{}", next.fetch_add(1, Ordering::SeqCst));
        open(&azurite, &location, env.clone(), AzureOptions::default())
    })
    .large_file_size(3 << 20)
    .run();

    // A wrong key is refused with a permanent error, not "not found".
    let wrong = vec![
        (
            "AZURE_ACCOUNT_NAME".to_string(),
            "devstoreaccount1".to_string(),
        ),
        ("AZURE_ACCOUNT_KEY".to_string(), "d3Jvbmcga2V5".to_string()),
    ];
    let err = open(&azurite, "azure:sas:/repo", wrong, AzureOptions::default())
        .stat(FileType::Config, "config")
        .unwrap_err();
    assert!(!err.is_not_found(), "{err}");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("403"), "{err}");
}

#[test]
fn restic_reads_what_restix_wrote_to_azure_through_rclone() {
    require_restic!();
    if !is_restix() {
        return; // `-o azure.endpoint` is restix's own option
    }
    if require_rclone().is_none() {
        return;
    }
    let Some(azurite) = Azurite::start_if_available() else {
        return;
    };
    let sb = Sandbox::new();
    let mut rclone = rclone_env(sb.path());
    rclone.extend(azurite.rclone_remote_env("az", "shared"));

    let restix = restix_access(&azurite, "azure:shared:/by-restix");
    let restic = Access::url("rclone:az:shared/by-restix").with_env(rclone.clone());
    remote_repo::restix_writes_restic_reads(&sb, &restix, &restic, 21);

    // restic writes through rclone's azureblob remote, restix reads it
    // (with the SAS token this time).
    let restix_sas = Access::url("azure:shared:/by-restic")
        .with_env([
            (
                "AZURE_ACCOUNT_NAME".to_string(),
                "devstoreaccount1".to_string(),
            ),
            ("AZURE_ACCOUNT_SAS".to_string(), azurite.account_sas()),
        ])
        .with_args(["-o".to_string(), azurite.endpoint_option()]);
    let restic = Access::url("rclone:az:shared/by-restic").with_env(rclone);
    remote_repo::restic_writes_restix_reads(&sb, &restix_sas, &restic, 22);
}

#[test]
fn azurite_stopped_mid_backup() {
    require_restic!();
    if !is_restix() {
        return; // `-o azure.endpoint` is restix's own option
    }
    if require_rclone().is_none() {
        return;
    }
    let Some(mut azurite) = Azurite::start_if_available() else {
        return;
    };
    let sb = Sandbox::new();
    let mut rclone = rclone_env(sb.path());
    rclone.extend(azurite.rclone_remote_env("az", "faults"));
    let restix = restix_access(&azurite, "azure:faults:/repo");
    let restic = Access::url("rclone:az:faults/repo").with_env(rclone);
    let src = sb.join("src");
    remote_repo::make_large_tree(&src, 3);
    restix.run(&sb, Tool::Restix, &["init"]).ok();
    // Azurite saves its metadata every few seconds and on a clean stop:
    // stop it cleanly once so the repository itself survives the SIGKILL.
    azurite.stop();
    azurite.start_again();
    let watcher = open(
        &azurite,
        "azure:faults:/repo",
        azurite.key_env(),
        AzureOptions::default(),
    );
    let azurite_cell = std::cell::RefCell::new(&mut azurite);
    let outcome = remote_repo::backup_with_server_killed(
        &sb,
        &restix,
        &src,
        4096,
        ServerFault {
            uploading: &|| watcher.list(FileType::Pack).is_ok_and(|p| !p.is_empty()),
            // SIGTERM, not SIGKILL: Azurite answers 201 for blobs whose
            // metadata it keeps in memory for up to 5 s (LokiJS autosave),
            // so a SIGKILL loses packs it acknowledged, which no client can
            // notice (seen: the backup retried and completed, restic check
            // then missed a pack written before the kill). SIGTERM still
            // takes the server away under the running backup.
            kill: &mut || azurite_cell.borrow_mut().stop(),
            down: Duration::from_secs(1),
            revive: &mut || azurite_cell.borrow_mut().start_again(),
        },
    );
    if !outcome.status.success() {
        assert!(
            outcome.output.contains("azure:faults:/repo/"),
            "{}",
            outcome.output
        );
    }
    remote_repo::repository_still_sound(&sb, &restix, &restic, &src);
}

#[test]
fn missing_azure_credentials_are_a_clear_error() {
    if !is_restix() {
        return; // restic falls back to Azure AD credentials
    }
    let sb = Sandbox::new();
    sb.cmd(Tool::Restix)
        .env_remove("AZURE_ACCOUNT_NAME")
        .args(["-r", "azure:c:/r", "snapshots"])
        .run()
        .code_is(1)
        .stderr_has("Account name ($AZURE_ACCOUNT_NAME) is empty");
    sb.cmd(Tool::Restix)
        .env("AZURE_ACCOUNT_NAME", "acct")
        .env_remove("AZURE_ACCOUNT_KEY")
        .env_remove("AZURE_ACCOUNT_SAS")
        .args(["-r", "azure:c:/r", "snapshots"])
        .run()
        .code_is(1)
        .stderr_has("AZURE_ACCOUNT_KEY");
    sb.cmd(Tool::Restix)
        .args(["-r", "azure:nocolon", "snapshots"])
        .run()
        .code_is(1)
        .stderr_has("bucket name or path not found");
}
