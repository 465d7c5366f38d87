//! A replay of Velero's restic integration (spec: callers §2), with the exact
//! argv Velero builds (`command.go StringSlice`): the command first, then
//! `--repo=`, `--password-file=`, `--cacert=`, `--cache-dir=<scratch>/.cache/restic`,
//! the positional arguments, then the extra flags (`--insecure-tls=true`).
//! The program is found as plain `restic` through `PATH` (a symlink named
//! `restic`), the environment carries no `RESTIC_*` variable, and `backup`
//! and `restore` run with the pod volume / target folder as cwd.
//!
//! The lifecycle: `PrepareRepo` (`snapshots --latest=1` fails with the
//! missing-repository text, so `init`), an empty volume (`snapshot is
//! empty`), pod volume backups of two volumes (`. --tag=k=v… --host=velero
//! --json`), `GetSnapshotID` (`snapshots --json --latest=1 --tag=a=b,c=d`,
//! exactly one element, `short_id`), an incremental backup with
//! `--parent=<short id>`, `stats <id> --json` (`total_size`), `restore <id>
//! --target=.` from inside an empty folder (byte-identical trees),
//! `ConnectToRepo` refused by an exclusive lock (no `init`), `forget <id>`
//! then `prune` and `unlock`, and finally the real restic's
//! `check --read-data`.
//!
//! [`velero_replay`] runs once with restix and once with the real restic
//! 0.14 as `restic`, which proves the replay itself is honest; steps whose
//! flags 0.14 lacks (`restore --sparse`) are left out there with a note.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use restix_tests::harness::{
    assert_trees_equal, make_varied_tree, modify_tree, s, wait_for_files, walk, CompareOptions,
    ReplaySteps, Run, Sandbox, Tool, TreeSpec, PASSWORD,
};

/// The text Velero's `PrepareRepo` looks for before it runs `init`.
const NO_REPO_TEXT: &str = "Is there a repository at the following location?";

/// The Velero node agent: its `restic` on `PATH`, the repository identifier
/// (a `resticRepoPrefix` pointing at a local folder), the credentials file
/// and the scratch dir.
struct VeleroAgent<'a> {
    sb: &'a Sandbox,
    tool: Tool,
    /// `PATH` with the folder holding the `restic` symlink first.
    path_var: OsString,
    /// `<resticRepoPrefix>/<namespace>`.
    repo: String,
    password_file: PathBuf,
    cacert: Option<PathBuf>,
    /// `$VELERO_SCRATCH_DIR`.
    scratch: PathBuf,
    steps: ReplaySteps,
}

impl VeleroAgent<'_> {
    fn begin(&self, what: &str) {
        self.steps.begin(what);
    }

    fn context(&self) -> String {
        self.steps.context()
    }

    /// `command.go StringSlice`: command, repo, password file, cacert,
    /// cache dir, args, extra flags.
    fn argv(&self, command: &str, args: &[&str], extra: &[&str]) -> Vec<String> {
        let mut words = vec![command.to_string(), format!("--repo={}", self.repo)];
        words.push(format!("--password-file={}", s(&self.password_file)));
        if let Some(cacert) = &self.cacert {
            words.push(format!("--cacert={}", s(cacert)));
        }
        words.push(format!(
            "--cache-dir={}",
            s(&self.scratch.join(".cache").join("restic"))
        ));
        words.extend(args.iter().map(|a| a.to_string()));
        words.extend(extra.iter().map(|a| a.to_string()));
        words
    }

    /// `exec.Command("restic", argv...)` with `cmd.Dir` and `os.Environ()`
    /// of a pod that sets no restic variable.
    fn command(&self, argv: &[String], dir: Option<&Path>) -> Command {
        let mut command = Command::new("restic");
        command
            .args(argv)
            .env_clear()
            .env("PATH", &self.path_var)
            .env("HOME", self.sb.join("home"))
            .env("TZ", "UTC")
            .env("VELERO_SCRATCH_DIR", &self.scratch)
            .current_dir(dir.unwrap_or(self.sb.path()))
            .stdin(Stdio::null());
        command
    }

    fn run_in(&self, dir: Option<&Path>, command: &str, args: &[&str], extra: &[&str]) -> Run {
        let argv = self.argv(command, args, extra);
        run_to_end(self.tool, self.command(&argv, dir), &argv, dir)
    }

    fn run(&self, command: &str, args: &[&str], extra: &[&str]) -> Run {
        self.run_in(None, command, args, extra)
    }

    #[track_caller]
    fn ok_in(&self, dir: Option<&Path>, command: &str, args: &[&str], extra: &[&str]) -> Run {
        let run = self.run_in(dir, command, args, extra);
        assert!(
            run.success(),
            "{} failed:\n{}",
            self.context(),
            run.describe()
        );
        run
    }

    #[track_caller]
    fn ok(&self, command: &str, args: &[&str], extra: &[&str]) -> Run {
        self.ok_in(None, command, args, extra)
    }

    /// `PrepareRepo`: `ConnectToRepo` (a text `snapshots --latest=1`); on an
    /// error whose text holds [`NO_REPO_TEXT`], `init`. Returns whether it
    /// initialised, or the error text Velero would propagate.
    fn prepare_repo(&self) -> Result<bool, String> {
        let connect = self.run("snapshots", &["--latest=1"], &["--insecure-tls=true"]);
        if connect.success() {
            return Ok(false);
        }
        assert!(!connect.crashed(), "{}", connect.describe());
        let error = format!("{}: {}", connect.err(), connect.out());
        if !error.contains(NO_REPO_TEXT) {
            return Err(error);
        }
        let init = self.run("init", &[], &["--insecure-tls=true"]);
        if init.success() {
            Ok(true)
        } else {
            Err(init.describe())
        }
    }

    /// `RunBackup`: `backup . --tag=… --host=velero --json [--parent=ID]`
    /// from inside `volume`; returns the run (the caller parses it).
    fn backup(&self, volume: &Path, tags: &[(&str, &str)], parent: Option<&str>) -> Run {
        let mut args = vec![".".to_string()];
        args.extend(tags.iter().map(|(k, v)| format!("--tag={k}={v}")));
        args.push("--host=velero".into());
        args.push("--json".into());
        let mut extra = vec!["--insecure-tls=true".to_string()];
        if let Some(parent) = parent {
            extra.push(format!("--parent={parent}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        self.run_in(Some(volume), "backup", &args, &extra)
    }

    /// `GetSnapshotID`: one `--tag` with the comma list (all must match),
    /// `--latest=1`; the array must hold exactly one element.
    #[track_caller]
    fn snapshot_id(&self, tags: &[(&str, &str)]) -> String {
        let list: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let tag = format!("--tag={}", list.join(","));
        let run = self.ok(
            "snapshots",
            &["--json", "--latest=1", &tag],
            &["--insecure-tls=true"],
        );
        #[derive(Debug)]
        struct SnapshotIdOnly {
            short_id: String,
        }
        let value: serde_json::Value = serde_json::from_slice(&run.stdout)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}):\n{}", self.context(), run.describe()));
        let items: Vec<SnapshotIdOnly> = value
            .as_array()
            .unwrap_or_else(|| panic!("{}: not an array:\n{}", self.context(), run.describe()))
            .iter()
            .map(|v| SnapshotIdOnly {
                short_id: v["short_id"].as_str().unwrap_or_default().to_string(),
            })
            .collect();
        assert_eq!(
            items.len(),
            1,
            "{}: expected one snapshot with tags {list:?}:\n{}",
            self.context(),
            run.describe()
        );
        let id = items[0].short_id.clone();
        assert!(
            id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{}: short_id {id:?} ({items:?})",
            self.context()
        );
        id
    }

    /// Every snapshot (`snapshots --json`, no filter).
    fn all_snapshots(&self) -> Vec<serde_json::Value> {
        let run = self.ok("snapshots", &["--json"], &[]);
        run.json().as_array().cloned().unwrap_or_default()
    }
}

/// Runs `command` to the end (at most 15 minutes) and captures its outputs.
fn run_to_end(tool: Tool, mut command: Command, argv: &[String], dir: Option<&Path>) -> Run {
    let cmdline = format!(
        "{}restic {}",
        dir.map(|d| format!("(cd {}) ", d.display()))
            .unwrap_or_default(),
        argv.join(" ")
    );
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmdline}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(Duration::from_secs(900)) {
        Ok(out) => out.unwrap_or_else(|e| panic!("waiting for {cmdline}: {e}")),
        Err(_) => {
            // SAFETY: kill(2) on our own child's pid; harmless if it exited.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            panic!("hung: {cmdline}");
        }
    };
    use std::os::unix::process::ExitStatusExt;
    Run {
        cmdline,
        tool,
        code: output.status.code(),
        signal: output.status.signal(),
        stdout: output.stdout,
        stderr: output.stderr,
    }
}

/// Velero's reading of `backup --json` (exec_commands.go): the last line
/// decodes as a progress update; the summary is found with
/// `bytes.LastIndex(stdout, {"message_type":"summary")`, must end with a
/// newline, and yields `total_bytes_processed`.
fn parse_backup(context: &str, run: &Run) -> u64 {
    assert!(
        run.success(),
        "{context}: backup failed:\n{}",
        run.describe()
    );
    let out = run.out();
    assert!(out.ends_with('\n'), "{context}: {}", run.describe());
    // getLastLine + json.Unmarshal into {message_type,total_bytes,bytes_done}.
    let last = out.trim_end_matches('\n').rsplit('\n').next().unwrap_or("");
    let progress: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{context}: last line is not JSON ({e}): {last:?}"));
    assert!(progress["message_type"].is_string(), "{context}: {last}");
    for line in out.lines().filter(|l| !l.is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{context}: stdout line is not JSON ({e}): {line:?}"));
        if value["message_type"] == "status" {
            // The fields Velero reads for progress must be numbers when present.
            for field in ["total_bytes", "bytes_done"] {
                assert!(
                    value.get(field).is_none_or(|v| v.is_u64()),
                    "{context}: status {field}: {line}"
                );
            }
        }
    }
    let marker = r#"{"message_type":"summary""#;
    let start = out
        .rfind(marker)
        .unwrap_or_else(|| panic!("{context}: no summary line:\n{}", run.describe()));
    let summary_line = &out[start..];
    let end = summary_line
        .find('\n')
        .unwrap_or_else(|| panic!("{context}: summary without newline"));
    let summary: serde_json::Value = serde_json::from_str(&summary_line[..end])
        .unwrap_or_else(|e| panic!("{context}: summary is not JSON ({e})"));
    assert_eq!(summary["message_type"], "summary", "{context}");
    summary["total_bytes_processed"]
        .as_u64()
        .unwrap_or_else(|| panic!("{context}: total_bytes_processed: {summary}"))
}

/// Sum of file sizes, a hard-linked file once (stats restore-size mode).
fn restore_size(root: &Path) -> u64 {
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for rel in walk(root) {
        let meta = fs::symlink_metadata(root.join(&rel)).unwrap();
        if meta.is_file() && (meta.nlink() == 1 || seen.insert((meta.dev(), meta.ino()))) {
            total += meta.len();
        }
    }
    total
}

/// Sum of the sizes of every regular file name (what the archiver reads).
fn bytes_read(root: &Path) -> u64 {
    walk(root)
        .iter()
        .filter_map(|rel| fs::symlink_metadata(root.join(rel)).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// A self-signed CA certificate for `--cacert` (Velero writes the BSL's
/// `caCert` to a temp file); `None` without openssl.
fn make_cacert(dir: &Path) -> Option<PathBuf> {
    let cert = dir.join("cacert.pem");
    let key = dir.join("cakey.pem");
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=minio.velero.svc", "-keyout", s(&key), "-out"])
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    status.success().then_some(cert)
}

/// Holds an exclusive lock: the real restic's `key passwd` locks the
/// repository exclusively, then waits for the new password on stdin.
struct ExclusiveLockHolder {
    child: Child,
}

impl ExclusiveLockHolder {
    fn start(sb: &Sandbox, repo: &str) -> Self {
        let child = sb
            .cmd(Tool::Restic)
            .args(["-r", repo, "key", "passwd"])
            .spawn_with_stdin(&sb.join("lock-holder.log"));
        wait_for_files(
            &Path::new(repo).join("locks"),
            Duration::from_secs(30),
            "the exclusive lock of `restic key passwd`",
        );
        ExclusiveLockHolder { child }
    }
}

impl Drop for ExclusiveLockHolder {
    fn drop(&mut self) {
        // An empty new password: restic fails and removes its lock.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn velero_replay(tool: Tool) {
    if restix_tests::harness::restic_bin().is_none() {
        restix_tests::harness::skip_missing_restic();
        return;
    }
    let sb = Sandbox::new();
    // /usr/bin/restic of the Velero image: a link named `restic`.
    let bin = sb.join("velero-image/usr/bin");
    fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(tool.path(), bin.join("restic")).unwrap();
    let mut path_var = OsString::from(&bin);
    if let Some(old) = std::env::var_os("PATH") {
        path_var.push(":");
        path_var.push(old);
    }
    let tmp = sb.join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    // The `velero-repo-credentials` secret's `repository-password`, as written.
    let password_file = tmp.join("credentials-1234567");
    fs::write(&password_file, PASSWORD).unwrap();
    let cacert = make_cacert(&tmp);
    if cacert.is_none() {
        eprintln!("note: openssl missing, --cacert left out");
    }
    // resticRepoPrefix = <sb>/bsl/restic, repository per namespace.
    let repo_dir = sb.join("bsl/restic/default");
    let agent = VeleroAgent {
        sb: &sb,
        tool,
        path_var,
        repo: s(&repo_dir).to_string(),
        password_file,
        cacert,
        scratch: sb.join("scratch"),
        steps: ReplaySteps::new("Velero", tool),
    };

    // PrepareRepo on a missing repository: the text, then init.
    agent.begin("PrepareRepo: snapshots --latest=1 fails with the missing-repository text");
    let probe = agent.run("snapshots", &["--latest=1"], &["--insecure-tls=true"]);
    assert!(
        !probe.success() && !probe.crashed() && probe.err().contains(NO_REPO_TEXT),
        "{}: {}",
        agent.context(),
        probe.describe()
    );
    if tool == Tool::Restix {
        // restic >= 0.17: exit 10 for a missing repository.
        assert_eq!(probe.code, Some(10), "{}", probe.describe());
    }
    agent.begin("PrepareRepo: init");
    assert_eq!(agent.prepare_repo(), Ok(true), "{}", agent.context());
    assert!(repo_dir.join("config").is_file());
    agent.begin("PrepareRepo again: ConnectToRepo succeeds, no init");
    assert_eq!(agent.prepare_repo(), Ok(false), "{}", agent.context());
    agent.begin("init on an existing repository fails");
    let again = agent.run("init", &[], &[]);
    assert!(!again.success() && !again.crashed(), "{}", again.describe());

    // Pod volumes: /host_pods/<pod-uid>/volumes/<plugin>/<volume>.
    let pods = sb.join("host_pods");
    let vol_a = pods.join("pod-uid-a/volumes/kubernetes.io~csi/data");
    let vol_b = pods.join("pod-uid-b/volumes/kubernetes.io~empty-dir/cache");
    let vol_empty = pods.join("pod-uid-b/volumes/kubernetes.io~empty-dir/scratch");
    let original_a = sb.join("reference/original-a");
    let spec = TreeSpec {
        non_utf8_symlink_target: false,
        ..TreeSpec::default()
    };
    make_varied_tree(&vol_a, &spec);
    make_varied_tree(&original_a, &spec);
    fs::create_dir_all(vol_b.join("sub")).unwrap();
    fs::write(vol_b.join("sub/cache.db"), b"volume b\n").unwrap();
    fs::create_dir_all(&vol_empty).unwrap();

    let tags_a1 = [
        ("backup", "nightly-1"),
        ("backup-uid", "5d1c0a52-0001"),
        ("pod", "app-0"),
        ("pod-uid", "pod-uid-a"),
        ("ns", "default"),
        ("volume", "data"),
        ("pvc-uid", "pvc-0001"),
    ];
    let tags_b1 = [
        ("backup", "nightly-1"),
        ("backup-uid", "5d1c0a52-0001"),
        ("pod", "app-1"),
        ("pod-uid", "pod-uid-b"),
        ("ns", "default"),
        ("volume", "cache"),
    ];

    // An empty volume: restic fails with `snapshot is empty`, which Velero
    // treats as an empty volume rather than an error.
    agent.begin("backup of an empty volume: `snapshot is empty`");
    let tags_empty = [("backup", "nightly-1"), ("volume", "scratch")];
    let empty = agent.backup(&vol_empty, &tags_empty, None);
    assert!(
        !empty.success() && !empty.crashed() && empty.err().contains("snapshot is empty"),
        "{}: {}",
        agent.context(),
        empty.describe()
    );

    // Go map order: the tag flags come in any order.
    agent.begin("backup of volume data (cwd = the volume, target `.`)");
    let mut shuffled = tags_a1;
    shuffled.reverse();
    let run = agent.backup(&vol_a, &shuffled, None);
    let processed = parse_backup(&agent.context(), &run);
    assert_eq!(processed, bytes_read(&vol_a), "{}", agent.context());
    agent.begin("backup of volume cache");
    let run = agent.backup(&vol_b, &tags_b1, None);
    parse_backup(&agent.context(), &run);

    agent.begin("GetSnapshotID of volume data");
    let id_a1 = agent.snapshot_id(&tags_a1);
    agent.begin("GetSnapshotID of volume cache");
    let id_b1 = agent.snapshot_id(&tags_b1);
    assert_ne!(id_a1, id_b1);
    let snaps = agent.all_snapshots();
    let snap_a1 = snaps
        .iter()
        .find(|v| v["short_id"] == id_a1.as_str())
        .unwrap_or_else(|| panic!("{}: {snaps:?}", agent.context()));
    assert_eq!(snap_a1["hostname"], "velero");
    assert_eq!(snap_a1["paths"], serde_json::json!([s(&vol_a)]));
    let mut tags: Vec<String> = tags_a1.iter().map(|(k, v)| format!("{k}={v}")).collect();
    tags.sort();
    let mut got: Vec<String> = snap_a1["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, tags, "{}", agent.context());

    // The next nightly: an incremental backup with the previous short id.
    modify_tree(&vol_a);
    let tags_a2 = [
        ("backup", "nightly-2"),
        ("backup-uid", "5d1c0a52-0002"),
        ("pod", "app-0"),
        ("pod-uid", "pod-uid-a"),
        ("ns", "default"),
        ("volume", "data"),
        ("pvc-uid", "pvc-0001"),
    ];
    agent.begin("incremental backup with --parent=<short id>");
    let run = agent.backup(&vol_a, &tags_a2, Some(&id_a1));
    parse_backup(&agent.context(), &run);
    agent.begin("GetSnapshotID of the incremental");
    let id_a2 = agent.snapshot_id(&tags_a2);
    let snaps = agent.all_snapshots();
    let snap_a2 = snaps
        .iter()
        .find(|v| v["short_id"] == id_a2.as_str())
        .unwrap();
    assert_eq!(
        snap_a2["parent"],
        snap_a1["id"],
        "{}: --parent",
        agent.context()
    );
    // Oldest first.
    let times: Vec<&str> = snaps.iter().map(|v| v["time"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "{}", agent.context());

    // v1.18's micro-service passes an empty tag map: `--tag=` matches only
    // snapshots without tags (none here).
    agent.begin("snapshots --json --latest=1 --tag= (v1.18 empty tag map)");
    let run = agent.ok("snapshots", &["--json", "--latest=1", "--tag="], &[]);
    assert_eq!(run.json(), serde_json::json!([]), "{}", agent.context());

    // Restore: stats for the total, then restore into an empty folder.
    agent.begin("stats <id> --json: total_size");
    let run = agent.ok("stats", &[&id_a2, "--json"], &["--insecure-tls=true"]);
    let stats = run.json();
    assert_eq!(
        stats["total_size"].as_u64(),
        Some(restore_size(&vol_a)),
        "{}: {}",
        agent.context(),
        run.describe()
    );
    let compare = CompareOptions {
        root_metadata: false,
        ..CompareOptions::default()
    };
    let target = sb.join("host_pods/pod-uid-c/volumes/kubernetes.io~csi/data");
    fs::create_dir_all(&target).unwrap();
    let mut extra = vec!["--insecure-tls=true"];
    if tool == Tool::Restix {
        // WriteSparseFiles (Velero >= 1.13).
        extra.push("--sparse");
    } else {
        eprintln!("note: restic 0.14 has no `restore --sparse`; restoring without it");
    }
    agent.begin("restore <id> --target=. from inside the empty target folder");
    agent.ok_in(Some(&target), "restore", &[&id_a2, "--target=."], &extra);
    assert_trees_equal(&vol_a, &target, &compare);
    agent.begin("restore of the first backup into another empty folder");
    let target1 = sb.join("host_pods/pod-uid-d/volumes/kubernetes.io~csi/data");
    fs::create_dir_all(&target1).unwrap();
    agent.ok_in(
        Some(&target1),
        "restore",
        &[&id_a1, "--target=."],
        &["--insecure-tls=true"],
    );
    assert_trees_equal(&original_a, &target1, &compare);

    // ConnectToRepo while a prune elsewhere holds the exclusive lock: an
    // error without the missing-repository text, so Velero does not init.
    agent.begin("PrepareRepo while the repository is locked exclusively");
    let config_before = fs::read(repo_dir.join("config")).unwrap();
    {
        let _holder = ExclusiveLockHolder::start(&sb, &agent.repo);
        let error = agent
            .prepare_repo()
            .expect_err("snapshots must fail on an exclusively locked repository");
        assert!(error.contains("locked"), "{}: {error}", agent.context());
    }
    assert_eq!(fs::read(repo_dir.join("config")).unwrap(), config_before);

    // Maintenance: BatchForget (one forget per id), prune with defaults, unlock.
    agent.begin("forget <id> of the first backup");
    agent.ok("forget", &[&id_a1], &["--insecure-tls=true"]);
    agent.begin("forget <id> of volume cache");
    agent.ok("forget", &[&id_b1], &["--insecure-tls=true"]);
    agent.begin("prune (defaults)");
    agent.ok("prune", &[], &["--insecure-tls=true"]);
    agent.begin("unlock (EnsureUnlockRepo)");
    agent.ok("unlock", &[], &["--insecure-tls=true"]);
    let left: Vec<String> = agent
        .all_snapshots()
        .iter()
        .map(|v| v["short_id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(left, vec![id_a2.clone()], "{}", agent.context());

    agent.begin("restore after prune");
    let target2 = sb.join("host_pods/pod-uid-e/volumes/kubernetes.io~csi/data");
    fs::create_dir_all(&target2).unwrap();
    agent.ok_in(
        Some(&target2),
        "restore",
        &[&id_a2, "--target=."],
        &["--insecure-tls=true"],
    );
    assert_trees_equal(&vol_a, &target2, &compare);

    // The oracle reads every pack.
    agent.begin("restic check --read-data (oracle)");
    let oracle = sb.restic(["-r", &agent.repo, "check", "--read-data"]);
    assert!(
        oracle.success() && oracle.out().contains("no errors were found"),
        "{}:\n{}",
        agent.context(),
        oracle.describe()
    );
}

#[test]
fn velero_replay_with_restix() {
    velero_replay(Tool::Restix);
}

/// The same replay with the real restic 0.14 proves the replay itself.
#[test]
fn velero_replay_with_real_restic() {
    velero_replay(Tool::Restic);
}
