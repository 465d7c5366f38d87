//! The distance scenario (`--distance`): backup and restore of the bench
//! image over SFTP and S3 at several round-trip times, restic and restix in
//! one run.
//!
//! The kernels this runs on have no `netem`, so the distance is the delay
//! line of the test harness (`restix_tests::delay`): a TCP proxy on
//! 127.0.0.1 that holds each direction of each connection for half the
//! round trip, without limiting bandwidth. Round trip 0 is the plain
//! loopback connection, no proxy.
//!
//! - SFTP: the private OpenSSH sshd of the test harness; both tools reach it
//!   through a `$HOME` whose ssh config names the delay line's port (restic
//!   runs `ssh`, restix speaks SSH in-process).
//! - S3: the private 3-node Garage cluster of the test harness; the
//!   repository URL names the delay line's port (node 1 behind it).
//!
//! Per transport, round trip and tool: a fresh repository (`init`, not
//! measured), the measured first `backup` of the image, the measured
//! `restore latest` into an empty folder (compared byte for byte with the
//! image), then for restix's repositories `restic check --read-data` on the
//! plain connection (not measured). `--connections` adds restix runs with
//! `-o sftp.connections=N` to the SFTP rows, to choose that default.

use std::ffi::OsString;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use restix_tests::delay::DelayLine;
use restix_tests::garage::{GarageCluster, BUCKET};
use restix_tests::sshd::{Sshd, HOST_ALIAS};

use crate::datasets::{warm_page_cache, DataSets};
use crate::error::{BenchError, IoContext};
use crate::measure::{run_measured, Measurement};

pub use crate::distance_cells::{DistanceCell, Step, Transport};
use crate::scenarios::{find_file, same_content};
use crate::tools::{version_line, Family, Tool, PASSWORD};

/// One column of the report: a tool, maybe with extra global options.
#[derive(Debug, Clone)]
pub struct Variant {
    /// The program.
    pub tool: Tool,
    /// Global options put before the command (`-o sftp.connections=N`).
    pub extra: Vec<OsString>,
    /// Transports it runs on.
    pub transports: Vec<Transport>,
}

impl Variant {
    /// The column label.
    pub fn label(&self) -> &str {
        &self.tool.label
    }
}

/// Everything `--distance` needs.
pub struct DistanceRun<'a> {
    /// Bench folder (data sets are cached there).
    pub dir: &'a Path,
    /// Image content size.
    pub size: u64,
    /// restic.
    pub restic: &'a Path,
    /// restix.
    pub restix: &'a Path,
    /// Round trips, milliseconds.
    pub rtts: Vec<u64>,
    /// Extra `sftp.connections` values for restix.
    pub connections: Vec<usize>,
    /// `--tools`: which programs run (`None`: restic and restix).
    pub tools: Option<Vec<Family>>,
    /// Kill a command after this long.
    pub timeout: Duration,
    /// Where the SVG goes.
    pub plot: PathBuf,
}

/// How one chain reaches its server.
struct Endpoint {
    /// The repository URL through the delay line (or direct at 0 ms).
    repo: String,
    /// The same repository on the plain connection, for the check.
    check_repo: String,
    /// Environment for both tools.
    env: Vec<(String, String)>,
    /// Environment variables to remove.
    env_remove: Vec<&'static str>,
    /// Server-side folder of an SFTP repository (removed afterwards).
    local_repo: Option<PathBuf>,
}

fn command(variant: &Variant, ep: &Endpoint, cache: &Path, args: &[OsString]) -> Command {
    let mut all = variant.extra.clone();
    all.extend(args.iter().cloned());
    let mut cmd = variant.tool.command(&ep.repo, cache, &all);
    for (k, v) in &ep.env {
        cmd.env(k, v);
    }
    for k in &ep.env_remove {
        cmd.env_remove(k);
    }
    cmd
}

fn tail(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// `restic check --read-data` of the repository on the plain connection.
fn oracle_check(restic: &Path, ep: &Endpoint) -> String {
    let mut cmd = Command::new(restic);
    cmd.env("RESTIC_PASSWORD", PASSWORD)
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_PASSWORD_COMMAND")
        .arg("-r")
        .arg(&ep.check_repo)
        .args(["--no-cache", "check", "--read-data"])
        .stdin(Stdio::null());
    for (k, v) in &ep.env {
        cmd.env(k, v);
    }
    match cmd.output() {
        Ok(o) if o.status.success() => "restic check --read-data ok".into(),
        Ok(o) => format!("restic check --read-data FAILED: {}", tail(&o.stderr)),
        Err(e) => format!("restic check not run: {e}"),
    }
}

/// The servers of one run.
struct Servers {
    sshd: Option<Sshd>,
    garage: Option<GarageCluster>,
}

impl Servers {
    /// Where the delay line forwards to for `transport`.
    fn target(&self, transport: Transport) -> Option<SocketAddr> {
        let port = match transport {
            Transport::Sftp => self.sshd.as_ref()?.port(),
            Transport::S3 => {
                let endpoint = self.garage.as_ref()?.endpoint(0);
                endpoint.rsplit(':').next()?.parse().ok()?
            }
        };
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn endpoint(&self, transport: Transport, port: u16, name: &str) -> Option<Endpoint> {
        match transport {
            Transport::Sftp => {
                let sshd = self.sshd.as_ref()?;
                let home = sshd.home_via(port);
                let local = sshd.dir().join(name);
                Some(Endpoint {
                    repo: format!("sftp:{}@{HOST_ALIAS}:{}", sshd.user(), local.display()),
                    check_repo: local.display().to_string(),
                    env: vec![
                        ("HOME".into(), home.path().display().to_string()),
                        ("PATH".into(), home.path_var().to_string_lossy().into()),
                    ],
                    env_remove: vec!["SSH_AUTH_SOCK"],
                    local_repo: Some(local),
                })
            }
            Transport::S3 => {
                let garage = self.garage.as_ref()?;
                Some(Endpoint {
                    repo: format!("s3:http://127.0.0.1:{port}/{BUCKET}/{name}"),
                    check_repo: garage.repo_url(name),
                    env: garage
                        .env()
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                    env_remove: Vec::new(),
                    local_repo: None,
                })
            }
        }
    }
}

/// One chain: init, measured backup, measured restore, check.
#[allow(clippy::too_many_arguments)]
fn chain(
    run: &DistanceRun<'_>,
    work: &Path,
    image: &Path,
    variant: &Variant,
    transport: Transport,
    rtt_ms: u64,
    ep: &Endpoint,
    record: &mut dyn FnMut(Step, Result<Measurement, String>, String),
) {
    let tag = format!("{}-{}-{rtt_ms}ms", transport.slug(), variant.tool.slug());
    let cache = work.join(format!("cache-{tag}"));
    let target = work.join(format!("restore-{tag}"));
    let logs = work.join("logs");
    let _ = fs::create_dir_all(&logs);
    let init = command(variant, ep, &cache, &[OsString::from("init")])
        .stdin(Stdio::null())
        .output();
    match init {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let why = format!("init FAILED: {}", tail(&o.stderr));
            record(Step::Backup, Err(why.clone()), String::new());
            return record(Step::Restore, Err(why), String::new());
        }
        Err(e) => {
            let why = format!("init: cannot run: {e}");
            record(Step::Backup, Err(why.clone()), String::new());
            return record(Step::Restore, Err(why), String::new());
        }
    }
    let measured = |step: &str, args: Vec<OsString>| -> Result<Measurement, String> {
        let out = File::create(logs.join(format!("{step}-{tag}.stdout")))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        let err_log = logs.join(format!("{step}-{tag}.stderr"));
        let mut cmd = command(variant, ep, &cache, &args);
        match run_measured(&mut cmd, out, &err_log, run.timeout) {
            Ok(m) if m.exit.success() => Ok(m),
            Ok(m) => Err(format!("FAILED ({}): {}", m.exit, m.stderr_tail)),
            Err(e) => Err(format!("FAILED (cannot run: {e})")),
        }
    };
    warm_page_cache(image);
    let backup = measured("backup", variant.tool.backup_args(&[image]));
    let backed_up = backup.is_ok();
    record(Step::Backup, backup, String::new());
    if !backed_up {
        return record(Step::Restore, Err("no backup".into()), String::new());
    }
    let restore = measured("restore", variant.tool.restore_args("latest", &target));
    let note = if restore.is_ok() {
        match find_file(&target, "image.qcow2").map(|f| same_content(&f, image)) {
            Some(Ok(true)) => "restored image identical".to_string(),
            Some(Ok(false)) => "RESTORED IMAGE DIFFERS".to_string(),
            Some(Err(e)) => format!("compare failed: {e}"),
            None => "RESTORED IMAGE MISSING".to_string(),
        }
    } else {
        String::new()
    };
    let _ = fs::remove_dir_all(&target);
    let note = if variant.tool.family == Family::Restix {
        format!("{note}; {}", oracle_check(run.restic, ep))
    } else {
        note
    };
    record(Step::Restore, restore, note);
    let _ = fs::remove_dir_all(&cache);
}

/// The variants: restic, restix, and restix with each extra connection count.
fn variants(run: &DistanceRun<'_>) -> Vec<Variant> {
    let wanted = |f: Family| run.tools.as_ref().is_none_or(|list| list.contains(&f));
    let mut out = vec![
        Variant {
            tool: Tool {
                label: "restic".into(),
                family: Family::Restic,
                version: version_line(run.restic, &["version"]),
                bin: run.restic.to_path_buf(),
                env: vec![],
            },
            extra: vec![],
            transports: Transport::ALL.to_vec(),
        },
        Variant {
            tool: Tool {
                label: "restix".into(),
                family: Family::Restix,
                version: version_line(run.restix, &["version"]),
                bin: run.restix.to_path_buf(),
                env: vec![],
            },
            extra: vec![],
            transports: Transport::ALL.to_vec(),
        },
    ];
    out.retain(|v| wanted(v.tool.family));
    if !wanted(Family::Restix) {
        return out;
    }
    for &n in &run.connections {
        out.push(Variant {
            tool: Tool {
                label: format!("restix c={n}"),
                family: Family::Restix,
                version: String::new(),
                bin: run.restix.to_path_buf(),
                env: vec![],
            },
            extra: vec!["-o".into(), format!("sftp.connections={n}").into()],
            transports: vec![Transport::Sftp],
        });
    }
    out
}

/// Run everything; the Markdown report.
pub fn run(run: &DistanceRun<'_>) -> Result<String, BenchError> {
    let image = DataSets::new(run.dir, run.size)?.image()?;
    let work = run.dir.join("distance-work");
    if work.exists() {
        fs::remove_dir_all(&work).ctx(|| format!("clean {}", work.display()))?;
    }
    fs::create_dir_all(&work).ctx(|| format!("mkdir {}", work.display()))?;
    let servers = Servers {
        sshd: Sshd::start_if_available(),
        garage: GarageCluster::start_if_available(),
    };
    let variants = variants(run);
    let mut cells: Vec<DistanceCell> = Vec::new();
    for transport in Transport::ALL {
        let Some(server) = servers.target(transport) else {
            eprintln!("{}: server not available, skipped", transport.slug());
            continue;
        };
        for &rtt_ms in &run.rtts {
            let line = if rtt_ms == 0 {
                None
            } else {
                Some(
                    DelayLine::start(server, Duration::from_millis(rtt_ms))
                        .ctx(|| format!("start a delay line to {server}"))?,
                )
            };
            let port = line.as_ref().map_or(server.port(), DelayLine::port);
            for variant in variants
                .iter()
                .filter(|v| v.transports.contains(&transport))
            {
                let name = format!("dist-{}-{rtt_ms}", variant.tool.slug());
                let Some(ep) = servers.endpoint(transport, port, &name) else {
                    continue;
                };
                eprintln!("{} {rtt_ms} ms {} ...", transport.slug(), variant.label());
                chain(
                    run,
                    &work,
                    &image.qcow2,
                    variant,
                    transport,
                    rtt_ms,
                    &ep,
                    &mut |step, outcome, note| {
                        match &outcome {
                            Ok(m) => eprintln!(
                                "  {:8} {:>8.2} s wall {:>8.2} s cpu",
                                step.title(),
                                m.wall.as_secs_f64(),
                                m.cpu().as_secs_f64()
                            ),
                            Err(e) => eprintln!("  {:8} {e}", step.title()),
                        }
                        cells.push(DistanceCell {
                            transport,
                            rtt_ms,
                            variant: variant.label().to_string(),
                            step,
                            outcome,
                            note,
                        });
                    },
                );
                if let Some(local) = &ep.local_repo {
                    let _ = fs::remove_dir_all(local);
                }
            }
        }
    }
    let mut text = report(run, &image, &variants, &cells);
    if let Some(parent) = run.plot.parent() {
        let _ = fs::create_dir_all(parent);
    }
    let labels: Vec<String> = variants.iter().map(|v| v.label().to_string()).collect();
    match crate::plot::distance_svg(&run.plot, &labels, &cells) {
        Ok(()) => text.push_str(&format!("\nPlot: `{}`.\n", run.plot.display())),
        Err(e) => eprintln!("could not draw {}: {e}", run.plot.display()),
    }
    // The logs stay (DIR/distance-work/logs); repositories and caches are
    // gone already.
    Ok(text)
}

fn wall(cells: &[DistanceCell], t: Transport, rtt: u64, label: &str, step: Step) -> Option<f64> {
    cells
        .iter()
        .find(|c| c.transport == t && c.rtt_ms == rtt && c.variant == label && c.step == step)
        .and_then(|c| c.outcome.as_ref().ok())
        .map(|m| m.wall.as_secs_f64())
}

fn report(
    run: &DistanceRun<'_>,
    image: &crate::datasets::ImageSet,
    variants: &[Variant],
    cells: &[DistanceCell],
) -> String {
    let mut out = String::from("## Distance: SFTP and S3 through a delay line\n\n");
    out.push_str(&format!(
        "- Image: {:.1} MiB qcow2 file ({:.1} MiB of files in ext4)\n",
        image.file_bytes as f64 / 1048576.0,
        image.content_bytes as f64 / 1048576.0
    ));
    for v in variants.iter().filter(|v| !v.tool.version.is_empty()) {
        out.push_str(&format!(
            "- {}: `{}` ({})\n",
            v.label(),
            v.tool.bin.display(),
            v.tool.version
        ));
    }
    out.push_str(
        "- Round trip 0: plain loopback; others: the harness's delay line \
         (`tests/src/delay.rs`) holding each direction for half the round trip\n\n",
    );
    for transport in Transport::ALL {
        let here: Vec<&Variant> = variants
            .iter()
            .filter(|v| v.transports.contains(&transport))
            .collect();
        if !cells.iter().any(|c| c.transport == transport) {
            continue;
        }
        for step in Step::ALL {
            out.push_str(&format!(
                "### {} {}, wall seconds\n\n| RTT |",
                transport.title(),
                step.title()
            ));
            for v in &here {
                out.push_str(&format!(" {} |", v.label()));
            }
            out.push_str(" restix speed-up vs restic | restix / restix at 0 ms |\n|---|");
            for _ in &here {
                out.push_str("---:|");
            }
            out.push_str("---:|---:|\n");
            for &rtt in &run.rtts {
                out.push_str(&format!("| {rtt} ms |"));
                for v in &here {
                    let cell = cells.iter().find(|c| {
                        c.transport == transport
                            && c.rtt_ms == rtt
                            && c.variant == v.label()
                            && c.step == step
                    });
                    match cell.map(|c| &c.outcome) {
                        Some(Ok(m)) => out.push_str(&format!(" {:.2} |", m.wall.as_secs_f64())),
                        Some(Err(e)) => out.push_str(&format!(" {e} |")),
                        None => out.push_str(" – |"),
                    }
                }
                let restic = wall(cells, transport, rtt, "restic", step);
                let restix = wall(cells, transport, rtt, "restix", step);
                let own = wall(cells, transport, 0, "restix", step);
                match (restic, restix) {
                    (Some(a), Some(b)) if b > 0.0 => out.push_str(&format!(" {:.1}x |", a / b)),
                    _ => out.push_str(" – |"),
                }
                match (restix, own) {
                    (Some(a), Some(b)) if b > 0.0 => out.push_str(&format!(" {:.2} |\n", a / b)),
                    _ => out.push_str(" – |\n"),
                }
            }
            out.push('\n');
        }
    }
    let notes: Vec<String> = cells
        .iter()
        .filter(|c| !c.note.is_empty())
        .map(|c| {
            format!(
                "- {} {} ms {}: {}",
                c.transport.slug(),
                c.rtt_ms,
                c.variant,
                c.note
            )
        })
        .collect();
    if !notes.is_empty() {
        out.push_str("Checks after each restore:\n\n");
        out.push_str(&notes.join("\n"));
        out.push('\n');
    }
    out
}
