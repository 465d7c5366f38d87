//! The scenarios and the per-tool chains that run them.
//!
//! Scenarios that share a repository run as one chain per tool and repeat:
//! the image chain is `init` → first backup → changed backup → restore →
//! dump; the others have a fresh repository each. Every chain starts from an
//! empty repository and an empty cache folder of its own, so nothing leaks
//! between tools or repeats.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::datasets::{
    warm_page_cache, ChangedSet, ImageSet, IncrementSet, PruneSet, SmallSet, SparseSet,
};
use crate::error::{BenchError, IoContext};
use crate::measure::{last_line, run_measured, Measurement};
use crate::tools::{snapshot_id_for, Family, Tool};

/// One measured operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// First backup of the qcow2 image (as a plain file) into a fresh repo.
    Image,
    /// `restix backup --image image.qcow2` into a fresh repo (restix only;
    /// compared with restic's `Image` row).
    ImageMode,
    /// Backup of the changed image, a new path with no parent, same repo.
    Changed,
    /// `restix backup --image increment.qcow2 --parent <ImageMode snapshot>
    /// --changes layer`: a changed-block incremental from an OpenNebula-style
    /// overlay (restix only; compared with restic's `Changed` row).
    Incremental,
    /// The same incremental with the changes taken from the overlay's
    /// persistent dirty bitmap (`--changes bitmap`), in a repository of its
    /// own so that it stores the new chunks too.
    IncrementalBitmap,
    /// Restore of the first image snapshot into an empty folder.
    Restore,
    /// `dump` of the image file to /dev/null.
    Dump,
    /// Backup of the small-files tree into a fresh repo.
    Small,
    /// `prune --max-unused 0` of a repo with ~30 % unused data.
    Prune,
    /// The first image backup over SFTP to a loopback sshd.
    Sftp,
    /// The first image backup to S3: a private 3-node Garage cluster on
    /// 127.0.0.1 (replication factor 3).
    S3,
    /// First backup of the sparse image (6 GiB virtual, ~1.8 GB allocated
    /// at 2 GiB) into a fresh repo: restic backs up the qcow2 file, restix
    /// its guest view (`--image`), reading only allocated data.
    Sparse,
    /// The first image backup to `rest:`: `rclone serve restic` on
    /// 127.0.0.1 (both tools through their REST backends).
    Rest,
}

impl Scenario {
    /// Every scenario, in table order.
    pub const ALL: [Scenario; 13] = [
        Scenario::Image,
        Scenario::ImageMode,
        Scenario::Changed,
        Scenario::Incremental,
        Scenario::IncrementalBitmap,
        Scenario::Restore,
        Scenario::Dump,
        Scenario::Small,
        Scenario::Prune,
        Scenario::Sftp,
        Scenario::S3,
        Scenario::Sparse,
        Scenario::Rest,
    ];

    /// The `--only` name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Image => "image",
            Scenario::ImageMode => "imagemode",
            Scenario::Changed => "changed",
            Scenario::Incremental => "incremental",
            Scenario::IncrementalBitmap => "incremental-bitmap",
            Scenario::Restore => "restore",
            Scenario::Dump => "dump",
            Scenario::Small => "small",
            Scenario::Prune => "prune",
            Scenario::Sftp => "sftp",
            Scenario::S3 => "s3",
            Scenario::Sparse => "sparse",
            Scenario::Rest => "rest",
        }
    }

    /// What the table calls it.
    pub fn title(self) -> &'static str {
        match self {
            Scenario::Image => "backup qcow2 image (first, fresh repo)",
            Scenario::ImageMode => "image mode: backup --image qcow2 (first, fresh repo)",
            Scenario::Changed => "backup changed image (1% blocks, new path, no parent)",
            Scenario::Incremental => {
                "image mode: incremental, 1% blocks in a qcow2 overlay (--changes layer)"
            }
            Scenario::IncrementalBitmap => {
                "image mode: incremental, 1% blocks, dirty bitmap (--changes bitmap)"
            }
            Scenario::Restore => "restore image snapshot",
            Scenario::Dump => "dump image file to /dev/null",
            Scenario::Small => "backup small files (fresh repo)",
            Scenario::Prune => "prune --max-unused 0 (~30% unused)",
            Scenario::Sftp => "backup qcow2 image over SFTP (loopback sshd)",
            Scenario::S3 => "backup qcow2 image to S3 (3-node Garage, loopback)",
            Scenario::Sparse => "backup sparse qcow2 (3x virtual, first, fresh repo)",
            Scenario::Rest => "backup qcow2 image to rest: (rclone serve restic, loopback)",
        }
    }

    /// The scenario whose restic row the ratios compare with: restix-only
    /// image-mode rows compare with restic doing the same job its way.
    pub fn baseline(self) -> Scenario {
        match self {
            Scenario::ImageMode => Scenario::Image,
            Scenario::Incremental | Scenario::IncrementalBitmap => Scenario::Changed,
            other => other,
        }
    }

    /// Whether only restix runs it (restic has no image mode).
    pub fn restix_only(self) -> bool {
        self.baseline() != self
    }

    /// Parse an `--only` name.
    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The result of one tool in one scenario (one repeat).
#[derive(Debug, Clone)]
pub enum Outcome {
    /// It ran and exited 0.
    Ran {
        /// What it used.
        measurement: Measurement,
        /// `du` of the repository after the run, if it is local.
        repo_bytes: Option<u64>,
        /// Checks done on the result ("restored file identical", ...).
        note: String,
    },
    /// It (or a step it needs) failed.
    Failed(String),
}

/// The data sets a run needs (those not selected are `None`).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The image.
    pub image: Option<ImageSet>,
    /// The changed image.
    pub changed: Option<ChangedSet>,
    /// The increment overlay.
    pub increment: Option<IncrementSet>,
    /// The sparse image.
    pub sparse: Option<SparseSet>,
    /// The small-files tree.
    pub small: Option<SmallSet>,
    /// The prune folders.
    pub prune: Option<PruneSet>,
}

/// Where and how the chains run.
pub struct Runner {
    /// Scratch folder for repositories, caches, restore targets and logs.
    pub work: PathBuf,
    /// Kill a command after this long.
    pub timeout: Duration,
    /// Selected scenarios.
    pub selected: Vec<Scenario>,
    /// The real restic, run as `check` on every tool's local repository
    /// after its backups and prune (unmeasured), as the format oracle.
    pub oracle: Option<PathBuf>,
    #[cfg(feature = "sftp")]
    /// The loopback server of the SFTP scenario.
    pub sshd: Option<restix_tests::sshd::Sshd>,
    #[cfg(feature = "s3")]
    /// The Garage cluster of the S3 scenario.
    pub garage: Option<restix_tests::garage::GarageCluster>,
    #[cfg(feature = "rest")]
    /// The `rclone serve restic` of the REST scenario.
    pub rest_server: Option<restix_tests::rclone::RcloneServe>,
}

/// `du`-style size: allocated bytes of everything below `path`.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        total += meta.blocks() * 512;
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

/// Record the same failure for every scenario of a chain that cannot start.
fn fail_chain(chain: &[Scenario], record: &mut Record<'_>, why: &str) {
    for s in chain {
        record(*s, Outcome::Failed(why.to_string()));
    }
}

fn remove_all(path: &Path) {
    if path.is_dir() {
        let _ = fs::remove_dir_all(path);
    } else {
        let _ = fs::remove_file(path);
    }
}

/// The first regular file named `name` below `root`.
pub(crate) fn find_file(root: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = fs::symlink_metadata(&p).ok()?;
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() && p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

/// True when both files hold the same bytes (streamed, 1 MiB at a time).
pub(crate) fn same_content(a: &Path, b: &Path) -> Result<bool, BenchError> {
    let mut fa = File::open(a).ctx(|| format!("open {}", a.display()))?;
    let mut fb = File::open(b).ctx(|| format!("open {}", b.display()))?;
    let (ma, mb) = (
        fa.metadata().ctx(|| format!("stat {}", a.display()))?,
        fb.metadata().ctx(|| format!("stat {}", b.display()))?,
    );
    if ma.len() != mb.len() {
        return Ok(false);
    }
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    loop {
        let n = fa.read(&mut ba).ctx(|| format!("read {}", a.display()))?;
        if n == 0 {
            return Ok(true);
        }
        let (ca, cb) = (
            ba.get(..n).unwrap_or(&[]),
            bb.get_mut(..n).unwrap_or(&mut []),
        );
        fb.read_exact(cb).ctx(|| format!("read {}", b.display()))?;
        if ca != cb {
            return Ok(false);
        }
    }
}

/// Records one outcome per selected scenario.
pub type Record<'a> = dyn FnMut(Scenario, Outcome) + 'a;

/// A step of a chain that is not measured (init, forget, snapshots).
struct Setup<'a> {
    tool: &'a Tool,
    repo: String,
    cache: PathBuf,
    home: Option<HomeEnv>,
    /// Extra environment (the S3 scenario's credentials and region).
    env: Vec<(&'static str, String)>,
}

/// `HOME`/`PATH` of the SFTP scenario's ssh client set-up.
#[derive(Debug, Clone)]
struct HomeEnv {
    home: PathBuf,
    path: OsString,
}

impl Setup<'_> {
    fn command(&self, args: &[OsString]) -> std::process::Command {
        let mut cmd = self.tool.command(&self.repo, &self.cache, args);
        if let Some(h) = &self.home {
            cmd.env("HOME", &h.home)
                .env("PATH", &h.path)
                .env_remove("SSH_AUTH_SOCK");
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Run an unmeasured step; its stdout, or a description of the failure.
    fn run(&self, what: &str, args: &[OsString]) -> Result<String, String> {
        match self.command(args).stdin(Stdio::null()).output() {
            Ok(out) if out.status.success() => {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            Ok(out) => {
                let err = String::from_utf8_lossy(&out.stderr);
                let last = err
                    .lines()
                    .map(str::trim)
                    .rfind(|l| !l.is_empty())
                    .unwrap_or("");
                Err(format!("{what} failed ({}): {last}", out.status))
            }
            Err(e) => Err(format!(
                "{what}: cannot run {}: {e}",
                self.tool.bin.display()
            )),
        }
    }

    /// The id of the snapshot of `path`.
    fn snapshot_id(&self, path: &Path) -> Result<String, String> {
        let json = self.run("snapshots --json", &self.tool.snapshots_args())?;
        snapshot_id_for(&json, path)
            .ok_or_else(|| format!("no snapshot of {} in `snapshots --json`", path.display()))
    }
}

impl Runner {
    fn wants(&self, s: Scenario) -> bool {
        self.selected.contains(&s)
    }

    /// `restic check` of `repo`: a note for the table ("" without oracle).
    fn oracle_check(&self, repo: &Path) -> String {
        self.oracle_check_url(&repo.to_string_lossy())
    }

    /// `restic check` of the repository at `location` (a path or a URL).
    fn oracle_check_url(&self, location: &str) -> String {
        let Some(restic) = &self.oracle else {
            return String::new();
        };
        let out = std::process::Command::new(restic)
            .env("RESTIC_PASSWORD", crate::tools::PASSWORD)
            .env_remove("RESTIC_PASSWORD_FILE")
            .env_remove("RESTIC_PASSWORD_COMMAND")
            .arg("-r")
            .arg(location)
            .args(["--no-cache", "check"])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => "restic check ok".into(),
            Ok(o) => {
                let text = String::from_utf8_lossy(&o.stderr);
                let last = text
                    .lines()
                    .map(str::trim)
                    .rfind(|l| !l.is_empty())
                    .unwrap_or("");
                format!("restic check FAILED: {last}")
            }
            Err(e) => format!("restic check not run: {e}"),
        }
    }

    fn join_notes(a: String, b: String) -> String {
        match (a.is_empty(), b.is_empty()) {
            (true, _) => b,
            (_, true) => a,
            _ => format!("{a}; {b}"),
        }
    }

    /// Run one measured command; stdout goes to a log unless `discard`.
    fn measure(
        &self,
        setup: &Setup<'_>,
        tag: &str,
        args: &[OsString],
        discard_stdout: bool,
    ) -> Result<Measurement, String> {
        let logs = self.work.join("logs");
        let _ = fs::create_dir_all(&logs);
        let base = format!("{tag}-{}", setup.tool.slug());
        let stdout = if discard_stdout {
            Stdio::null()
        } else {
            match File::create(logs.join(format!("{base}.stdout"))) {
                Ok(f) => Stdio::from(f),
                Err(_) => Stdio::null(),
            }
        };
        let err_log = logs.join(format!("{base}.stderr"));
        let mut cmd = setup.command(args);
        match run_measured(&mut cmd, stdout, &err_log, self.timeout) {
            Ok(m) if m.exit.success() => Ok(m),
            Ok(m) => Err(format!("FAILED ({}): {}", m.exit, m.stderr_tail)),
            Err(e) => Err(format!(
                "FAILED (cannot run {}: {e}) {}",
                setup.tool.bin.display(),
                last_line(&err_log)
            )),
        }
    }

    /// Run every chain the selection needs for `tool`, reporting through
    /// `record`.
    pub fn run_chains(&self, tool: &Tool, inputs: &Inputs, record: &mut Record<'_>) {
        let dir = self.work.join(tool.slug());
        remove_all(&dir);
        if fs::create_dir_all(&dir).is_err() {
            for s in &self.selected {
                record(
                    *s,
                    Outcome::Failed(format!("cannot create {}", dir.display())),
                );
            }
            return;
        }
        let image_chain = [
            Scenario::Image,
            Scenario::Changed,
            Scenario::Restore,
            Scenario::Dump,
        ];
        if image_chain.iter().any(|s| self.wants(*s)) {
            self.image_chain(tool, &dir, inputs, record);
        }
        if tool.family == Family::Restix {
            if self.wants(Scenario::ImageMode) || self.wants(Scenario::Incremental) {
                self.image_mode_chain(tool, &dir, inputs, record);
            }
            if self.wants(Scenario::IncrementalBitmap) {
                self.bitmap_chain(tool, &dir, inputs, record);
            }
        }
        if self.wants(Scenario::Sparse) {
            self.sparse_chain(tool, &dir, inputs, record);
        }
        if self.wants(Scenario::Small) {
            self.small_chain(tool, &dir, inputs, record);
        }
        if self.wants(Scenario::Prune) {
            self.prune_chain(tool, &dir, inputs, record);
        }
        if self.wants(Scenario::Sftp) {
            self.sftp_chain(tool, &dir, inputs, record);
        }
        if self.wants(Scenario::S3) {
            self.s3_chain(tool, inputs, record);
        }
        if self.wants(Scenario::Rest) {
            self.rest_chain(tool, inputs, record);
        }
        remove_all(&dir);
    }

    fn fresh_repo<'a>(
        &self,
        tool: &'a Tool,
        dir: &Path,
        name: &str,
    ) -> Result<(Setup<'a>, PathBuf), String> {
        let repo = dir.join(name);
        let cache = dir.join(format!("{name}-cache"));
        remove_all(&repo);
        remove_all(&cache);
        let setup = Setup {
            tool,
            repo: repo.to_string_lossy().into_owned(),
            cache,
            home: None,
            env: Vec::new(),
        };
        setup.run("init", &tool.init_args())?;
        Ok((setup, repo))
    }

    fn image_chain(&self, tool: &Tool, dir: &Path, inputs: &Inputs, record: &mut Record<'_>) {
        let chain: Vec<Scenario> = [
            Scenario::Image,
            Scenario::Changed,
            Scenario::Restore,
            Scenario::Dump,
        ]
        .into_iter()
        .filter(|s| self.wants(*s))
        .collect();
        let fail_all = |record: &mut Record<'_>, why: &str| fail_chain(&chain, record, why);
        let Some(image) = &inputs.image else {
            return fail_all(record, "image data set missing");
        };
        let (setup, repo) = match self.fresh_repo(tool, dir, "image-repo") {
            Ok(v) => v,
            Err(e) => return fail_all(record, &e),
        };
        warm_page_cache(&image.qcow2);
        let first = self.measure(&setup, "image", &tool.backup_args(&[&image.qcow2]), false);
        let first = match first {
            Ok(m) => m,
            Err(e) => {
                // Later steps need the first snapshot: they fail with it.
                for s in &chain {
                    let why = if *s == Scenario::Image {
                        e.clone()
                    } else {
                        format!("first backup {e}")
                    };
                    record(*s, Outcome::Failed(why));
                }
                return;
            }
        };
        if self.wants(Scenario::Image) {
            record(
                Scenario::Image,
                Outcome::Ran {
                    measurement: first,
                    repo_bytes: Some(disk_usage(&repo)),
                    note: if self.wants(Scenario::Changed) {
                        String::new()
                    } else {
                        self.oracle_check(&repo)
                    },
                },
            );
        }
        if self.wants(Scenario::Changed) {
            let outcome = match &inputs.changed {
                None => Outcome::Failed("changed data set missing".into()),
                Some(changed) => {
                    warm_page_cache(&changed.qcow2);
                    let before = disk_usage(&repo);
                    match self.measure(
                        &setup,
                        "changed",
                        &tool.backup_args(&[&changed.qcow2]),
                        false,
                    ) {
                        Ok(m) => {
                            let after = disk_usage(&repo);
                            Outcome::Ran {
                                measurement: m,
                                repo_bytes: Some(after),
                                note: Self::join_notes(
                                    format!(
                                        "repo grew {:.1} MiB",
                                        after.saturating_sub(before) as f64 / 1048576.0
                                    ),
                                    self.oracle_check(&repo),
                                ),
                            }
                        }
                        Err(e) => Outcome::Failed(e),
                    }
                }
            };
            record(Scenario::Changed, outcome);
        }
        if !self.wants(Scenario::Restore) && !self.wants(Scenario::Dump) {
            return;
        }
        let id = match setup.snapshot_id(&image.qcow2) {
            Ok(id) => id,
            Err(e) => {
                for s in [Scenario::Restore, Scenario::Dump] {
                    if self.wants(s) {
                        record(s, Outcome::Failed(e.clone()));
                    }
                }
                return;
            }
        };
        if self.wants(Scenario::Restore) {
            let target = dir.join("restore-target");
            remove_all(&target);
            let outcome =
                match self.measure(&setup, "restore", &tool.restore_args(&id, &target), false) {
                    Ok(m) => {
                        let name = image
                            .qcow2
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        let note = match find_file(&target, &name) {
                            None => "restored file NOT FOUND".to_string(),
                            Some(restored) => match same_content(&restored, &image.qcow2) {
                                Ok(true) => "restored file identical".to_string(),
                                Ok(false) => "restored file DIFFERS".to_string(),
                                Err(e) => format!("cannot compare: {e}"),
                            },
                        };
                        Outcome::Ran {
                            measurement: m,
                            repo_bytes: None,
                            note,
                        }
                    }
                    Err(e) => Outcome::Failed(e),
                };
            remove_all(&target);
            record(Scenario::Restore, outcome);
        }
        if self.wants(Scenario::Dump) {
            let outcome =
                match self.measure(&setup, "dump", &tool.dump_args(&id, &image.qcow2), true) {
                    Ok(m) => Outcome::Ran {
                        measurement: m,
                        repo_bytes: None,
                        note: String::new(),
                    },
                    Err(e) => Outcome::Failed(e),
                };
            record(Scenario::Dump, outcome);
        }
    }

    /// Image mode (restix): first `backup --image` into a fresh repo, then the
    /// changed-block incremental from the increment overlay with it as parent.
    fn image_mode_chain(&self, tool: &Tool, dir: &Path, inputs: &Inputs, record: &mut Record<'_>) {
        let chain: Vec<Scenario> = [Scenario::ImageMode, Scenario::Incremental]
            .into_iter()
            .filter(|s| self.wants(*s))
            .collect();
        let fail_all = |record: &mut Record<'_>, why: &str| fail_chain(&chain, record, why);
        let Some(image) = &inputs.image else {
            return fail_all(record, "image data set missing");
        };
        let (setup, repo) = match self.fresh_repo(tool, dir, "imagemode-repo") {
            Ok(v) => v,
            Err(e) => return fail_all(record, &e),
        };
        warm_page_cache(&image.qcow2);
        let args = tool.image_backup_args(&image.qcow2, &[]);
        let (first, summary) = match self.measure_image(&setup, "imagemode", &args) {
            Ok(v) => v,
            Err(e) => {
                for s in &chain {
                    let why = if *s == Scenario::ImageMode {
                        e.clone()
                    } else {
                        format!("first image-mode backup {e}")
                    };
                    record(*s, Outcome::Failed(why));
                }
                return;
            }
        };
        if self.wants(Scenario::ImageMode) {
            let note = Self::join_notes(
                image_note(&summary),
                if self.wants(Scenario::Incremental) {
                    String::new()
                } else {
                    self.oracle_check(&repo)
                },
            );
            record(
                Scenario::ImageMode,
                Outcome::Ran {
                    measurement: first,
                    repo_bytes: Some(disk_usage(&repo)),
                    note,
                },
            );
        }
        if self.wants(Scenario::Incremental) {
            let outcome = match (&inputs.increment, summary.snapshot_id.as_deref()) {
                (None, _) => Outcome::Failed("increment data set missing".into()),
                (_, None) => Outcome::Failed("no snapshot id in the --json summary".into()),
                (Some(inc), Some(parent)) => {
                    self.incremental(&setup, &repo, image, inc, parent, "layer")
                }
            };
            record(Scenario::Incremental, outcome);
        }
        remove_all(&repo);
    }

    /// The dirty-bitmap incremental in a repository of its own (so that it
    /// stores its new chunks rather than finding them from the layer run):
    /// an unmeasured first `backup --image`, then the measured incremental.
    fn bitmap_chain(&self, tool: &Tool, dir: &Path, inputs: &Inputs, record: &mut Record<'_>) {
        let steps = || -> Result<Outcome, String> {
            let image = inputs.image.as_ref().ok_or("image data set missing")?;
            let inc = inputs
                .increment
                .as_ref()
                .ok_or("increment data set missing")?;
            let (setup, repo) = self.fresh_repo(tool, dir, "bitmap-repo")?;
            let out = setup.run(
                "first backup --image",
                &tool.image_backup_args(&image.qcow2, &[]),
            )?;
            let parent = ImageSummary::parse(&out)
                .snapshot_id
                .ok_or("no snapshot id in the --json summary")?;
            Ok(self.incremental(&setup, &repo, image, inc, &parent, "bitmap"))
        };
        let outcome = steps().unwrap_or_else(Outcome::Failed);
        remove_all(&dir.join("bitmap-repo"));
        record(Scenario::IncrementalBitmap, outcome);
    }

    /// One measured changed-block incremental of the increment overlay with
    /// the changes from `source` (`layer` or `bitmap`).
    fn incremental(
        &self,
        setup: &Setup<'_>,
        repo: &Path,
        image: &ImageSet,
        inc: &IncrementSet,
        parent: &str,
        source: &str,
    ) -> Outcome {
        warm_page_cache(&inc.qcow2);
        warm_page_cache(&image.qcow2);
        // The guest disk keeps its name across the chain, as in OpenNebula.
        let name = image
            .qcow2
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut extra = vec![
            "--image-name",
            &name,
            "--parent",
            parent,
            "--changes",
            source,
        ];
        if source == "bitmap" {
            extra.extend(["--bitmap", inc.bitmap.as_str()]);
        }
        let before = disk_usage(repo);
        let args = setup.tool.image_backup_args(&inc.qcow2, &extra);
        let tag = format!("incremental-{source}");
        match self.measure_image(setup, &tag, &args) {
            Ok((m, summary)) => {
                let after = disk_usage(repo);
                let mut note = format!(
                    "repo grew {:.1} MiB; {}",
                    after.saturating_sub(before) as f64 / 1048576.0,
                    image_note(&summary)
                );
                if !summary.incremental {
                    note = format!("NOT INCREMENTAL; {note}");
                }
                Outcome::Ran {
                    measurement: m,
                    repo_bytes: Some(after),
                    note: Self::join_notes(note, self.oracle_check(repo)),
                }
            }
            Err(e) => Outcome::Failed(e),
        }
    }

    /// The sparse image into a fresh repo: restic backs up the qcow2 file,
    /// restix its guest view.
    fn sparse_chain(&self, tool: &Tool, dir: &Path, inputs: &Inputs, record: &mut Record<'_>) {
        let steps = || -> Result<Outcome, String> {
            let sparse = inputs.sparse.as_ref().ok_or("sparse data set missing")?;
            let (setup, repo) = self.fresh_repo(tool, dir, "sparse-repo")?;
            warm_page_cache(&sparse.qcow2);
            if tool.family == Family::Restix {
                let args = tool.image_backup_args(&sparse.qcow2, &[]);
                let (m, summary) = self.measure_image(&setup, "sparse", &args)?;
                Ok(Outcome::Ran {
                    measurement: m,
                    repo_bytes: Some(disk_usage(&repo)),
                    note: Self::join_notes(image_note(&summary), self.oracle_check(&repo)),
                })
            } else {
                let m =
                    self.measure(&setup, "sparse", &tool.backup_args(&[&sparse.qcow2]), false)?;
                Ok(Outcome::Ran {
                    measurement: m,
                    repo_bytes: Some(disk_usage(&repo)),
                    note: format!(
                        "reads the {:.1} MiB qcow2 file; {}",
                        sparse.file_bytes as f64 / 1048576.0,
                        self.oracle_check(&repo)
                    ),
                })
            }
        };
        let outcome = steps().unwrap_or_else(Outcome::Failed);
        remove_all(&dir.join("sparse-repo"));
        record(Scenario::Sparse, outcome);
    }

    /// A measured `backup --image --json`, with its summary line parsed.
    fn measure_image(
        &self,
        setup: &Setup<'_>,
        tag: &str,
        args: &[OsString],
    ) -> Result<(Measurement, ImageSummary), String> {
        let m = self.measure(setup, tag, args, false)?;
        let log = self
            .work
            .join("logs")
            .join(format!("{tag}-{}.stdout", setup.tool.slug()));
        let out = fs::read_to_string(&log).unwrap_or_default();
        Ok((m, ImageSummary::parse(&out)))
    }

    fn small_chain(&self, tool: &Tool, dir: &Path, inputs: &Inputs, record: &mut Record<'_>) {
        let Some(small) = &inputs.small else {
            return record(
                Scenario::Small,
                Outcome::Failed("small data set missing".into()),
            );
        };
        let outcome = match self.fresh_repo(tool, dir, "small-repo") {
            Err(e) => Outcome::Failed(e),
            Ok((setup, repo)) => {
                warm_page_cache(&small.root);
                match self.measure(&setup, "small", &tool.backup_args(&[&small.root]), false) {
                    Ok(m) => Outcome::Ran {
                        measurement: m,
                        repo_bytes: Some(disk_usage(&repo)),
                        note: self.oracle_check(&repo),
                    },
                    Err(e) => Outcome::Failed(e),
                }
            }
        };
        remove_all(&dir.join("small-repo"));
        record(Scenario::Small, outcome);
    }

    fn prune_chain(&self, tool: &Tool, dir: &Path, inputs: &Inputs, record: &mut Record<'_>) {
        let Some(prune) = &inputs.prune else {
            return record(
                Scenario::Prune,
                Outcome::Failed("prune data set missing".into()),
            );
        };
        let steps = || -> Result<Outcome, String> {
            let (setup, repo) = self.fresh_repo(tool, dir, "prune-repo")?;
            setup.run("backup A", &tool.backup_args(&[&prune.first]))?;
            setup.run("backup B", &tool.backup_args(&[&prune.second]))?;
            let id = setup.snapshot_id(&prune.first)?;
            setup.run("forget", &tool.forget_args(&id))?;
            let before = disk_usage(&repo);
            let m = self.measure(&setup, "prune", &tool.prune_args(), false)?;
            let after = disk_usage(&repo);
            Ok(Outcome::Ran {
                measurement: m,
                repo_bytes: Some(after),
                note: Self::join_notes(
                    format!(
                        "repo {:.0} → {:.0} MiB",
                        before as f64 / 1048576.0,
                        after as f64 / 1048576.0
                    ),
                    self.oracle_check(&repo),
                ),
            })
        };
        let outcome = steps().unwrap_or_else(Outcome::Failed);
        remove_all(&dir.join("prune-repo"));
        record(Scenario::Prune, outcome);
    }

    #[cfg(feature = "sftp")]
    fn sftp_chain(&self, tool: &Tool, _dir: &Path, inputs: &Inputs, record: &mut Record<'_>) {
        let Some(sshd) = &self.sshd else {
            return record(Scenario::Sftp, Outcome::Failed("sshd not started".into()));
        };
        let Some(image) = &inputs.image else {
            return record(
                Scenario::Sftp,
                Outcome::Failed("image data set missing".into()),
            );
        };
        let home = sshd.home();
        let repo = sshd.dir().join(format!("{}-repo", tool.slug()));
        let cache = sshd.dir().join(format!("{}-cache", tool.slug()));
        remove_all(&repo);
        remove_all(&cache);
        let setup = Setup {
            tool,
            repo: sshd.sftp_short(&repo),
            cache: cache.clone(),
            home: Some(HomeEnv {
                home: home.path().to_path_buf(),
                path: home.path_var(),
            }),
            env: Vec::new(),
        };
        let outcome = match setup.run("init", &tool.init_args()) {
            Err(e) => Outcome::Failed(e),
            Ok(_) => {
                warm_page_cache(&image.qcow2);
                match self.measure(&setup, "sftp", &tool.backup_args(&[&image.qcow2]), false) {
                    Ok(m) => Outcome::Ran {
                        measurement: m,
                        repo_bytes: Some(disk_usage(&repo)),
                        note: String::new(),
                    },
                    Err(e) => Outcome::Failed(e),
                }
            }
        };
        remove_all(&repo);
        remove_all(&cache);
        record(Scenario::Sftp, outcome);
    }

    #[cfg(not(feature = "sftp"))]
    fn sftp_chain(&self, _tool: &Tool, _dir: &Path, _inputs: &Inputs, record: &mut Record<'_>) {
        record(
            Scenario::Sftp,
            Outcome::Failed("built without the `sftp` feature (use benches/run.sh --sftp)".into()),
        );
    }

    /// First image backup into a fresh prefix of the Garage bucket. The
    /// repository size is the sum of the object sizes, listed by the tool
    /// itself (`list packs` would miss keys and config; Garage's data folders
    /// hold three replicas plus metadata, so `du` of them would mislead).
    #[cfg(feature = "s3")]
    fn s3_chain(&self, tool: &Tool, inputs: &Inputs, record: &mut Record<'_>) {
        let Some(garage) = &self.garage else {
            return record(
                Scenario::S3,
                Outcome::Failed("garage not found (cargo install garage)".into()),
            );
        };
        let Some(image) = &inputs.image else {
            return record(
                Scenario::S3,
                Outcome::Failed("image data set missing".into()),
            );
        };
        let cache = self.work.join(format!("{}-s3-cache", tool.slug()));
        remove_all(&cache);
        let setup = Setup {
            tool,
            repo: garage.repo_url(&format!("bench-{}", tool.slug())),
            cache: cache.clone(),
            home: None,
            env: garage.env(),
        };
        let outcome = match setup.run("init", &tool.init_args()) {
            Err(e) => Outcome::Failed(e),
            Ok(_) => {
                warm_page_cache(&image.qcow2);
                match self.measure(&setup, "s3", &tool.backup_args(&[&image.qcow2]), false) {
                    Ok(m) => Outcome::Ran {
                        measurement: m,
                        repo_bytes: None,
                        note: String::new(),
                    },
                    Err(e) => Outcome::Failed(e),
                }
            }
        };
        remove_all(&cache);
        record(Scenario::S3, outcome);
    }

    #[cfg(not(feature = "s3"))]
    fn s3_chain(&self, _tool: &Tool, _inputs: &Inputs, record: &mut Record<'_>) {
        record(
            Scenario::S3,
            Outcome::Failed("built without the `s3` feature (use benches/run.sh --s3)".into()),
        );
    }

    /// First image backup into a fresh repository on the loopback
    /// `rclone serve restic`; the repository size is `du` of its folder on
    /// the server's disk.
    #[cfg(feature = "rest")]
    fn rest_chain(&self, tool: &Tool, inputs: &Inputs, record: &mut Record<'_>) {
        let Some(server) = &self.rest_server else {
            return record(
                Scenario::Rest,
                Outcome::Failed("rclone not found (apt-get install rclone)".into()),
            );
        };
        let Some(image) = &inputs.image else {
            return record(
                Scenario::Rest,
                Outcome::Failed("image data set missing".into()),
            );
        };
        let name = format!("bench-{}", tool.slug());
        let repo = server.root().join(&name);
        let cache = self.work.join(format!("{}-rest-cache", tool.slug()));
        remove_all(&repo);
        remove_all(&cache);
        let setup = Setup {
            tool,
            repo: server.url(&name),
            cache: cache.clone(),
            home: None,
            env: Vec::new(),
        };
        let outcome = match setup.run("init", &tool.init_args()) {
            Err(e) => Outcome::Failed(e),
            Ok(_) => {
                warm_page_cache(&image.qcow2);
                match self.measure(&setup, "rest", &tool.backup_args(&[&image.qcow2]), false) {
                    Ok(m) => Outcome::Ran {
                        measurement: m,
                        repo_bytes: Some(disk_usage(&repo)),
                        note: self.oracle_check_url(&setup.repo),
                    },
                    Err(e) => Outcome::Failed(e),
                }
            }
        };
        remove_all(&repo);
        remove_all(&cache);
        record(Scenario::Rest, outcome);
    }

    #[cfg(not(feature = "rest"))]
    fn rest_chain(&self, _tool: &Tool, _inputs: &Inputs, record: &mut Record<'_>) {
        record(
            Scenario::Rest,
            Outcome::Failed("built without the `rest` feature (use benches/run.sh --rest)".into()),
        );
    }
}

/// What restix's `backup --image --json` summary line reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageSummary {
    /// The new snapshot.
    pub snapshot_id: Option<String>,
    /// Guest disk size.
    pub virtual_size: u64,
    /// Bytes in allocated data extents.
    pub allocated_bytes: u64,
    /// Bytes read from the image.
    pub bytes_read: u64,
    /// Whether the parent's chunks were reused.
    pub incremental: bool,
    /// Guest bytes reported changed.
    pub changed_bytes: u64,
    /// Guest bytes of parent chunks reused without reading.
    pub bytes_reused: u64,
    /// Guest bytes chunked anew around the changes.
    pub bytes_rechunked: u64,
    /// Bytes added to the repository (before compression).
    pub data_added: u64,
    /// Bytes added to the repository (stored, compressed).
    pub data_added_packed: u64,
}

impl ImageSummary {
    /// From the last `"message_type":"summary"` line of `stdout`.
    pub fn parse(stdout: &str) -> ImageSummary {
        let Some(v) = stdout
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v.get("message_type").and_then(|t| t.as_str()) == Some("summary"))
        else {
            return ImageSummary::default();
        };
        let n = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
        let image = v.get("image").cloned().unwrap_or_default();
        ImageSummary {
            snapshot_id: v
                .get("snapshot_id")
                .and_then(|x| x.as_str())
                .map(String::from),
            virtual_size: n(&image, "virtual_size"),
            allocated_bytes: n(&image, "allocated_bytes"),
            bytes_read: n(&image, "bytes_read"),
            incremental: image
                .get("incremental")
                .and_then(|x| x.as_bool())
                .unwrap_or(false),
            changed_bytes: n(&image, "changed_bytes"),
            bytes_reused: n(&image, "bytes_reused"),
            bytes_rechunked: n(&image, "bytes_rechunked"),
            data_added: n(&v, "data_added"),
            data_added_packed: n(&v, "data_added_packed"),
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

/// The table note of an image-mode run: what it read and stored.
fn image_note(s: &ImageSummary) -> String {
    let mut parts = vec![format!(
        "read {} of {} allocated ({} virtual)",
        mib(s.bytes_read),
        mib(s.allocated_bytes),
        mib(s.virtual_size)
    )];
    if s.incremental {
        parts.push(format!(
            "changed {}, re-chunked {}, reused {} unread",
            mib(s.changed_bytes),
            mib(s.bytes_rechunked),
            mib(s.bytes_reused)
        ));
    }
    parts.push(format!(
        "added {} ({} stored)",
        mib(s.data_added),
        mib(s.data_added_packed)
    ));
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::parse(s.name()), Some(s));
        }
        assert_eq!(Scenario::parse("nope"), None);
    }

    #[test]
    fn parses_the_image_summary_line() {
        let out = "{\"message_type\":\"status\"}\nnoise\n{\"message_type\":\"summary\",\"data_added\":5,\"data_added_packed\":3,\"snapshot_id\":\"abc\",\"image\":{\"virtual_size\":10,\"allocated_bytes\":8,\"bytes_read\":7,\"incremental\":true,\"changed_bytes\":2,\"bytes_reused\":6,\"bytes_rechunked\":4}}\n";
        let s = ImageSummary::parse(out);
        assert_eq!(s.snapshot_id.as_deref(), Some("abc"));
        assert_eq!(
            (
                s.virtual_size,
                s.allocated_bytes,
                s.bytes_read,
                s.changed_bytes
            ),
            (10, 8, 7, 2)
        );
        assert!(s.incremental);
        assert_eq!((s.bytes_reused, s.bytes_rechunked), (6, 4));
        assert_eq!((s.data_added, s.data_added_packed), (5, 3));
        assert!(image_note(&s).contains("re-chunked 0.0 MiB"));
        assert_eq!(ImageSummary::parse("not json"), ImageSummary::default());
        assert_eq!(Scenario::Incremental.baseline(), Scenario::Changed);
        assert!(Scenario::ImageMode.restix_only());
        assert!(!Scenario::Sparse.restix_only());
    }

    #[test]
    fn compares_files_and_measures_disk_usage() {
        let dir = std::env::temp_dir().join(format!("restix-bench-sc-{}", std::process::id()));
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("a"), vec![7u8; 3 << 20]).unwrap();
        fs::write(dir.join("sub/b"), vec![7u8; 3 << 20]).unwrap();
        fs::write(dir.join("c"), vec![8u8; 3 << 20]).unwrap();
        assert!(same_content(&dir.join("a"), &dir.join("sub/b")).unwrap());
        assert!(!same_content(&dir.join("a"), &dir.join("c")).unwrap());
        assert_eq!(find_file(&dir, "b"), Some(dir.join("sub/b")));
        assert!(disk_usage(&dir) >= 9 << 20);
        fs::remove_dir_all(&dir).unwrap();
    }
}
