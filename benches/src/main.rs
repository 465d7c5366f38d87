//! `restix-benches`: runs restic, rustic (when on `PATH`) and restix on the
//! same data sets in one go and prints a Markdown table of wall time, CPU
//! time, peak RSS, repository size and restix/restic ratios.
//!
//! Each measured command runs as its own child and is reaped with `wait4`,
//! so its `rusage` is exactly that command's (see `measure`). Data sets are
//! built once into `$RESTIX_BENCH_DIR` (default `/var/tmp/restix-bench`) and
//! reused; see `datasets` for what they hold.
//!
//! ```text
//! benches/run.sh --quick                       # ~200 MB data, all tools
//! benches/run.sh --size 2G --prune --sftp --s3 --rest # everything
//! cargo run --release -p restix-benches -- --quick --tools restic --only image,small
//! benches/run.sh --scale 1M,4M,10M             # how cost grows with the index
//! ```

mod content;
mod datasets;
#[cfg(all(feature = "sftp", feature = "s3"))]
mod distance;
#[cfg(all(feature = "sftp", feature = "s3"))]
mod distance_cells;
mod error;
mod measure;
mod mount;
mod plot;
mod report;
mod scale;
mod scenarios;
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use datasets::DataSets;
use error::{BenchError, IoContext};
use report::{better, Cell};
use scenarios::{Inputs, Outcome, Runner, Scenario};
use tools::{find_on_path, version_line, Family, Tool};

const MIB: u64 = 1 << 20;

const USAGE: &str = "\
restix-benches: compare restix with restic (and rustic) on the same data

usage: restix-benches [options]
  --quick              small data sets (~200 MiB image) instead of ~2 GiB
  --size SIZE          image content size, e.g. 500M, 2G, 10G (default 2G)
  --only LIST          scenarios: image,imagemode,changed,incremental,
                       incremental-bitmap,restore,dump,small,prune,sftp,s3,sparse,rest
                       (default: all but prune, sftp, s3 and rest, which come with
                       --prune, --sftp, --s3 and --rest; imagemode, incremental*:
                       restix only)
  --prepare            only build the data sets (for the selected scenarios)
  --prune              add the prune scenario (heavy)
  --sftp               add the SFTP scenario (needs the `sftp` feature)
  --s3                 add the S3 scenario: a 3-node Garage cluster on 127.0.0.1
                       (needs the `s3` feature and `garage`)
  --rest               add the REST scenario: `rclone serve restic` on 127.0.0.1
                       (needs the `rest` feature and `rclone`)
  --tools LIST         restic,rustic,restix (default: those available)
  --threads LIST       restix GOMAXPROCS variants, `all` = no limit (default all,1)
  --repeat N           best of N runs by wall time (default 1)
  --restix PATH        restix binary (default $RESTIX_BIN, else next to this binary)
  --restic PATH        restic binary (default /usr/bin/restic)
  --rustic PATH        rustic binary (default: `rustic` on PATH)
  --dir DIR            cache + scratch folder (default $RESTIX_BENCH_DIR or /var/tmp/restix-bench)
  --output FILE        also write the report to FILE
  --timeout SECS       kill a command after SECS (default 3600)
  --no-warm-memory     skip touching the free memory once before the runs
  --scale LIST         scale scenarios on repositories whose index lists these
                       blob counts, e.g. 1M,4M,10M: small backup (cold and warm
                       cache), snapshots, ls latest, forget --dry-run; alone
                       unless --only names other scenarios too
  --plot FILE          where the scale plot (SVG) goes (default
                       DIR/results/scale.svg)
  --mount              only the mount scenario: restic's and restix's `mount` of
                       one repository, reading the image's disk (needs FUSE)
  --distance LIST      only the distance scenario: backup and restore of the
                       image over SFTP and S3 through a delay line at these
                       round trips in ms, e.g. 0,10,40,100 (needs the `sftp`
                       and `s3` features: benches/run.sh --distance ...)
  --connections LIST   with --distance: extra restix SFTP runs with
                       -o sftp.connections=N for each N
";

/// Parsed command line.
#[derive(Debug)]
struct Options {
    size: u64,
    prepare_only: bool,
    scenarios: Vec<Scenario>,
    tools: Option<Vec<Family>>,
    threads: Vec<Option<u32>>,
    repeat: u32,
    restix: Option<PathBuf>,
    restic: PathBuf,
    rustic: Option<PathBuf>,
    dir: PathBuf,
    output: Option<PathBuf>,
    timeout: Duration,
    warm_memory: bool,
    command_line: String,
    /// Blob counts of the scale repositories (empty: no scale scenarios).
    scale: Vec<u64>,
    plot: Option<PathBuf>,
    mount: bool,
    /// Round trips of the distance scenario, ms (empty: not run).
    distance: Vec<u64>,
    /// Extra `sftp.connections` values of the distance scenario (read only
    /// when built with the `sftp` and `s3` features).
    #[cfg_attr(not(all(feature = "sftp", feature = "s3")), allow(dead_code))]
    connections: Vec<usize>,
}

fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().trim_end_matches(['B', 'b', 'i']);
    let (num, mult) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 1u64 << 10),
        'm' | 'M' => (&t[..t.len() - 1], 1 << 20),
        'g' | 'G' => (&t[..t.len() - 1], 1 << 30),
        't' | 'T' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let value: f64 = num.parse().ok()?;
    if value.is_nan() || value <= 0.0 {
        return None;
    }
    Some((value * mult as f64) as u64)
}

fn parse_args(args: &[String]) -> Result<Options, BenchError> {
    let usage = |m: String| BenchError::Usage(format!("{m}\n\n{USAGE}"));
    let mut size = 2 << 30;
    let mut only: Option<Vec<Scenario>> = None;
    let (mut prune, mut sftp, mut s3, mut prepare_only) = (false, false, false, false);
    let mut rest = false;
    let mut warm_memory = true;
    let mut mount = false;
    let mut tools = None;
    let mut threads = vec![None, Some(1)];
    let mut repeat = 1;
    let mut restix = std::env::var_os("RESTIX_BIN").map(PathBuf::from);
    let mut restic = PathBuf::from("/usr/bin/restic");
    let mut rustic = find_on_path("rustic");
    let mut dir = std::env::var_os("RESTIX_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/restix-bench"));
    let mut output = None;
    let mut timeout = Duration::from_secs(3600);
    let mut scale = Vec::new();
    let mut plot = None;
    let mut distance = Vec::new();
    let mut connections = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| usage(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "-h" | "--help" => return Err(BenchError::Usage(USAGE.to_string())),
            "--quick" => size = 200 * MIB,
            "--prune" => prune = true,
            "--prepare" => prepare_only = true,
            "--sftp" => sftp = true,
            "--s3" => s3 = true,
            "--rest" => rest = true,
            "--no-warm-memory" => warm_memory = false,
            "--mount" => mount = true,
            "--size" => {
                let v = value("--size")?;
                size = parse_size(&v).ok_or_else(|| usage(format!("bad size {v:?}")))?;
            }
            "--only" => {
                let v = value("--only")?;
                let mut list = Vec::new();
                for name in v.split(',').filter(|n| !n.is_empty()) {
                    list.push(
                        Scenario::parse(name)
                            .ok_or_else(|| usage(format!("unknown scenario {name:?}")))?,
                    );
                }
                only = Some(list);
            }
            "--tools" => {
                let v = value("--tools")?;
                let mut list = Vec::new();
                for name in v.split(',').filter(|n| !n.is_empty()) {
                    list.push(match name {
                        "restic" => Family::Restic,
                        "restix" => Family::Restix,
                        "rustic" => Family::Rustic,
                        _ => return Err(usage(format!("unknown tool {name:?}"))),
                    });
                }
                tools = Some(list);
            }
            "--threads" => {
                let v = value("--threads")?;
                let mut list = Vec::new();
                for t in v.split(',').filter(|n| !n.is_empty()) {
                    list.push(match t {
                        "all" | "0" => None,
                        n => Some(
                            n.parse::<u32>()
                                .ok()
                                .filter(|n| *n > 0)
                                .ok_or_else(|| usage(format!("bad thread count {n:?}")))?,
                        ),
                    });
                }
                threads = list;
            }
            "--repeat" => {
                let v = value("--repeat")?;
                repeat = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| usage(format!("bad repeat count {v:?}")))?;
            }
            "--restix" => restix = Some(PathBuf::from(value("--restix")?)),
            "--restic" => restic = PathBuf::from(value("--restic")?),
            "--rustic" => rustic = Some(PathBuf::from(value("--rustic")?)),
            "--dir" => dir = PathBuf::from(value("--dir")?),
            "--scale" => {
                let v = value("--scale")?;
                for n in v.split(',').filter(|n| !n.is_empty()) {
                    scale.push(
                        scale::parse_count(n)
                            .ok_or_else(|| usage(format!("bad blob count {n:?}")))?,
                    );
                }
            }
            "--plot" => plot = Some(PathBuf::from(value("--plot")?)),
            "--distance" => {
                let v = value("--distance")?;
                for n in v.split(',').filter(|n| !n.is_empty()) {
                    distance.push(
                        n.trim_end_matches("ms")
                            .parse::<u64>()
                            .map_err(|_| usage(format!("bad round trip {n:?}")))?,
                    );
                }
            }
            "--connections" => {
                let v = value("--connections")?;
                for n in v.split(',').filter(|n| !n.is_empty()) {
                    connections.push(
                        n.parse::<usize>()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| usage(format!("bad connection count {n:?}")))?,
                    );
                }
            }
            "--output" => output = Some(PathBuf::from(value("--output")?)),
            "--timeout" => {
                let v = value("--timeout")?;
                let secs = v
                    .parse::<u64>()
                    .map_err(|_| usage(format!("bad timeout {v:?}")))?;
                timeout = Duration::from_secs(secs);
            }
            other => return Err(usage(format!("unknown argument {other:?}"))),
        }
    }
    let scenarios = match only {
        // --scale alone runs only the scale scenarios.
        None if !scale.is_empty() => Vec::new(),
        Some(list) => Scenario::ALL
            .into_iter()
            .filter(|s| list.contains(s))
            .collect(),
        None => Scenario::ALL
            .into_iter()
            .filter(|s| match s {
                Scenario::Prune => prune,
                Scenario::Sftp => sftp,
                Scenario::S3 => s3,
                Scenario::Rest => rest,
                _ => true,
            })
            .collect(),
    };
    Ok(Options {
        size,
        prepare_only,
        warm_memory,
        scenarios,
        tools,
        threads,
        repeat,
        restix,
        restic,
        rustic,
        dir,
        output,
        timeout,
        command_line: args.join(" "),
        scale,
        plot,
        mount,
        distance,
        connections,
    })
}

/// The restix binary: `--restix`/`$RESTIX_BIN`, else beside this program
/// (both live in the same `target/release`).
fn default_restix() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("restix")))
        .unwrap_or_else(|| PathBuf::from("restix"))
}

fn build_tools(opts: &Options) -> Vec<Tool> {
    let wanted = |f: Family| opts.tools.as_ref().is_none_or(|list| list.contains(&f));
    let mut tools = Vec::new();
    if wanted(Family::Restic) {
        tools.push(Tool {
            label: "restic".into(),
            family: Family::Restic,
            version: version_line(&opts.restic, &["version"]),
            bin: opts.restic.clone(),
            env: vec![],
        });
    }
    if wanted(Family::Rustic) {
        match &opts.rustic {
            Some(bin) => tools.push(Tool {
                label: "rustic".into(),
                family: Family::Rustic,
                version: version_line(bin, &["--version"]),
                bin: bin.clone(),
                env: vec![],
            }),
            None if opts.tools.is_some() => eprintln!("rustic is not on PATH: skipped"),
            None => {}
        }
    }
    if wanted(Family::Restix) {
        let bin = opts.restix.clone().unwrap_or_else(default_restix);
        let version = version_line(&bin, &["version"]);
        for t in &opts.threads {
            let (label, env) = match t {
                None => ("restix".to_string(), vec![]),
                Some(n) => (
                    format!("restix GOMAXPROCS={n}"),
                    vec![("GOMAXPROCS".to_string(), n.to_string())],
                ),
            };
            tools.push(Tool {
                label,
                family: Family::Restix,
                bin: bin.clone(),
                env,
                version: version.clone(),
            });
        }
    }
    tools
}

fn read_first(path: &str, key: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn memory_total() -> String {
    let kib = read_first("/proc/meminfo", "MemTotal");
    match kib.trim_end_matches("kB").trim().parse::<u64>() {
        Ok(k) => format!("{:.1} GiB", k as f64 / (1024.0 * 1024.0)),
        Err(_) => kib,
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

fn header(opts: &Options, tools: &[Tool], inputs: &Inputs) -> String {
    let mut h = String::from("## restix benchmark\n\n");
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    h.push_str(&format!(
        "- Date: {}\n- Host: {nproc} CPUs ({}), {} RAM, Linux {}\n",
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        read_first("/proc/cpuinfo", "model name"),
        memory_total(),
        command_output("uname", &["-r"]),
    ));
    let mut seen = Vec::new();
    for t in tools {
        if !seen.contains(&t.bin) {
            seen.push(t.bin.clone());
            h.push_str(&format!(
                "- {}: `{}` ({})\n",
                t.label.split(' ').next().unwrap_or(""),
                t.bin.display(),
                t.version
            ));
        }
    }
    if let Some(i) = &inputs.image {
        h.push_str(&format!(
            "- Image: {} of files ({} files: /usr/bin, /usr/lib, /usr/share copies + text, logs, random data) in ext4 (`mkfs.ext4 -d`), virtual {}, qcow2 file {}\n",
            mib(i.content_bytes),
            i.files,
            mib(i.virtual_bytes),
            mib(i.file_bytes)
        ));
    }
    if let Some(c) = &inputs.changed {
        h.push_str(&format!(
            "- Changed image: {} random 64 KiB guest blocks (1%) rewritten in place with `qemu-io write -s`, qcow2 file {}\n",
            c.blocks_written,
            mib(c.file_bytes)
        ));
    }
    if let Some(c) = &inputs.increment {
        h.push_str(&format!(
            "- Increment: qcow2 overlay on the image (`qemu-img create -b image.qcow2 -F qcow2`) holding the same {} blocks, same bytes (`qemu-io`), tracked by the persistent dirty bitmap `{}`; overlay file {}\n",
            c.blocks_written,
            c.bitmap,
            mib(c.file_bytes)
        ));
    }
    if let Some(sp) = &inputs.sparse {
        h.push_str(&format!(
            "- Sparse image: {} of files ({} files, same generator) in an ext4 of virtual {}, qcow2 file {}\n",
            mib(sp.content_bytes),
            sp.files,
            mib(sp.virtual_bytes),
            mib(sp.file_bytes)
        ));
    }
    if let Some(s) = &inputs.small {
        h.push_str(&format!(
            "- Small files: {} files of 0–16 KiB in nested folders, {}\n",
            s.files,
            mib(s.bytes)
        ));
    }
    if let Some(p) = &inputs.prune {
        h.push_str(&format!(
            "- Prune: snapshot A {} + snapshot B {} (60 % shared), A forgotten: {} unused\n",
            mib(p.first_bytes),
            mib(p.second_bytes),
            mib(p.unused_bytes)
        ));
    }
    h.push_str(&format!(
        "- Runs: best of {} by wall time; each tool has its own `--cache-dir`, emptied per chain; inputs read once and dirty data written back (`sync`) before each run{}; timeout {} s\n",
        opts.repeat,
        if opts.warm_memory {
            "; free memory touched once before all runs (a VM backs guest memory on first touch)"
        } else {
            ""
        },
        opts.timeout.as_secs()
    ));
    h.push_str(&format!(
        "- Command: `benches/run.sh {}`\n\n",
        opts.command_line
    ));
    h
}

fn input_bytes(inputs: &Inputs, s: Scenario) -> u64 {
    let image = inputs.image.as_ref().map(|i| i.file_bytes).unwrap_or(0);
    match s {
        Scenario::Image
        | Scenario::ImageMode
        | Scenario::Restore
        | Scenario::Dump
        | Scenario::Sftp
        | Scenario::S3
        | Scenario::Rest => image,
        // The data restic reads for the same result (the changed image).
        Scenario::Changed | Scenario::Incremental | Scenario::IncrementalBitmap => {
            inputs.changed.as_ref().map(|c| c.file_bytes).unwrap_or(0)
        }
        Scenario::Sparse => inputs.sparse.as_ref().map(|s| s.file_bytes).unwrap_or(0),
        Scenario::Small => inputs.small.as_ref().map(|s| s.bytes).unwrap_or(0),
        // Prune reads and rewrites part of the repository, not an input.
        Scenario::Prune => 0,
    }
}

fn build_inputs(opts: &Options) -> Result<Inputs, BenchError> {
    let sets = DataSets::new(&opts.dir, opts.size)?;
    let wants = |s: Scenario| opts.scenarios.contains(&s);
    let mut inputs = Inputs::default();
    let image_users = [
        Scenario::Image,
        Scenario::ImageMode,
        Scenario::Changed,
        Scenario::Incremental,
        Scenario::IncrementalBitmap,
        Scenario::Restore,
        Scenario::Dump,
        Scenario::Sftp,
        Scenario::S3,
        Scenario::Rest,
    ];
    let incrementals = [Scenario::Incremental, Scenario::IncrementalBitmap];
    if image_users.iter().any(|s| wants(*s)) {
        let image = sets.image()?;
        // The incrementals' rates and ratios refer to the changed image.
        if wants(Scenario::Changed) || incrementals.iter().any(|s| wants(*s)) {
            inputs.changed = Some(sets.changed(&image)?);
        }
        if incrementals.iter().any(|s| wants(*s)) {
            inputs.increment = Some(sets.increment(&image)?);
        }
        inputs.image = Some(image);
    }
    if wants(Scenario::Sparse) {
        inputs.sparse = Some(sets.sparse()?);
    }
    if wants(Scenario::Small) {
        inputs.small = Some(sets.small()?);
    }
    if wants(Scenario::Prune) {
        inputs.prune = Some(sets.prune()?);
    }
    Ok(inputs)
}

/// Touches most of the free memory once, then frees it; returns the bytes.
///
/// A virtual machine's host may back guest memory only when the guest first
/// touches it (Firecracker does): the first use of a page then costs a host
/// fault, ~3 s per GiB measured on the bench VM, and whichever run first
/// needs fresh page cache (a restore writing 2 GB, the packs of the
/// incremental after a first backup) pays for it, by chance of the order.
/// After one pass, freed pages stay backed and every run sees the memory a
/// long-running host has.
fn warm_memory() -> u64 {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("MemFree:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    // Leave room for the page cache the data sets keep and for the tools.
    let target = available.saturating_sub(2 << 30);
    const CHUNK: usize = 64 << 20;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut touched = 0u64;
    while touched + CHUNK as u64 <= target {
        // Not zeros: a zeroed allocation is untouched pages.
        chunks.push(vec![1u8; CHUNK]);
        touched += CHUNK as u64;
    }
    drop(chunks);
    touched
}

fn run(opts: Options) -> Result<(), BenchError> {
    if opts.mount {
        let restix = opts.restix.clone().unwrap_or_else(default_restix);
        return mount::run(
            &opts.dir,
            opts.size,
            &opts.restic,
            &restix,
            opts.output.as_deref(),
        );
    }
    if !opts.distance.is_empty() {
        return run_distance(&opts);
    }
    let tools = build_tools(&opts);
    if tools.is_empty() {
        return Err(BenchError::Usage("no tools to run".into()));
    }
    let mut scale_repos = Vec::new();
    for &blobs in &opts.scale {
        scale_repos.push(scale::scale_repo(&opts.dir, &opts.restic, blobs)?);
    }
    let inputs = build_inputs(&opts)?;
    if opts.prepare_only {
        eprintln!("data sets ready in {}", opts.dir.display());
        return Ok(());
    }
    if opts.warm_memory {
        // In a child process: a child's peak RSS as `wait4` reports it starts
        // from its parent's at fork, which would then count the warm-up.
        let status = std::env::current_exe().and_then(|exe| {
            std::process::Command::new(exe)
                .arg(WARM_MEMORY_CHILD)
                .status()
        });
        if !status.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("could not touch the free memory: {status:?}");
        }
    }
    let work = opts.dir.join("work");
    if work.exists() {
        std::fs::remove_dir_all(&work).ctx(|| format!("clean {}", work.display()))?;
    }
    std::fs::create_dir_all(&work).ctx(|| format!("mkdir {}", work.display()))?;
    let runner = Runner {
        work: work.clone(),
        timeout: opts.timeout,
        selected: opts.scenarios.clone(),
        oracle: opts.restic.is_file().then(|| opts.restic.clone()),
        #[cfg(feature = "sftp")]
        sshd: if opts.scenarios.contains(&Scenario::Sftp) {
            restix_tests::sshd::Sshd::start_if_available()
        } else {
            None
        },
        #[cfg(feature = "s3")]
        garage: if opts.scenarios.contains(&Scenario::S3) {
            restix_tests::garage::GarageCluster::start_if_available()
        } else {
            None
        },
        #[cfg(feature = "rest")]
        rest_server: if opts.scenarios.contains(&Scenario::Rest) {
            restix_tests::rclone::RcloneServe::start_if_available(
                restix_tests::rclone::ServeOptions::default(),
            )
        } else {
            None
        },
    };
    let mut cells: Vec<Cell> = Vec::new();
    let mut scale_cells: Vec<scale::ScaleCell> = Vec::new();
    for rep in 0..opts.repeat {
        // Alternate the order so no tool always runs first (or last).
        let order: Vec<usize> = if rep % 2 == 0 {
            (0..tools.len()).collect()
        } else {
            (0..tools.len()).rev().collect()
        };
        for ti in order {
            let Some(tool) = tools.get(ti) else { continue };
            eprintln!("[repeat {}/{}] {} ...", rep + 1, opts.repeat, tool.label);
            let mut record = |scenario: Scenario, outcome: Outcome| {
                match &outcome {
                    Outcome::Ran { measurement, .. } => eprintln!(
                        "  {:8} {:>8.2} s wall {:>8.2} s cpu {:>7} MiB",
                        scenario.name(),
                        measurement.wall.as_secs_f64(),
                        measurement.cpu().as_secs_f64(),
                        measurement.max_rss_kib / 1024
                    ),
                    Outcome::Failed(why) => eprintln!("  {:8} {why}", scenario.name()),
                }
                match cells
                    .iter_mut()
                    .find(|c| c.scenario == scenario && c.tool == ti)
                {
                    Some(cell) => {
                        let old =
                            std::mem::replace(&mut cell.outcome, Outcome::Failed(String::new()));
                        cell.outcome = better(old, outcome);
                    }
                    None => cells.push(Cell {
                        scenario,
                        tool: ti,
                        outcome,
                    }),
                }
            };
            if !opts.scenarios.is_empty() {
                runner.run_chains(tool, &inputs, &mut record);
            }
            for repo in &scale_repos {
                scale::run_chain(tool, repo, &work, opts.timeout, &mut |cell| {
                    scale::keep_better(&mut scale_cells, cell)
                });
            }
        }
    }
    cells.sort_by_key(|c| (c.scenario, c.tool));
    let mut report = header(&opts, &tools, &inputs);
    if !opts.scenarios.is_empty() {
        report.push_str(&report::table(&tools, &cells, &opts.scenarios, |s| {
            input_bytes(&inputs, s)
        }));
        report.push_str(
            "\nWall: spawn to exit; CPU: user+sys and peak RSS from `wait4` of that one \
             child (incl. the children it reaped, e.g. restic's ssh); Repo: `du` after the \
             run; Speed-up = restic wall / tool wall; RSS ratio = tool / restic.\n",
        );
    }
    if !scale_repos.is_empty() {
        report.push('\n');
        report.push_str(&scale::report(&scale_repos, &tools, &scale_cells));
        let plot_path = opts
            .plot
            .clone()
            .unwrap_or_else(|| opts.dir.join("results").join("scale.svg"));
        if let Some(parent) = plot_path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        match plot::scale_svg(&plot_path, &tools, &scale_cells) {
            Ok(()) => report.push_str(&format!(
                "\nPlot: `{}`. Wall and peak RSS (`wait4`) of each command; best of {} by wall.\n",
                plot_path.display(),
                opts.repeat
            )),
            Err(e) => eprintln!("could not draw {}: {e}", plot_path.display()),
        }
    }
    println!("{report}");
    let results = opts.dir.join("results");
    std::fs::create_dir_all(&results).ctx(|| format!("mkdir {}", results.display()))?;
    let latest = results.join("latest.md");
    std::fs::write(&latest, &report).ctx(|| format!("write {}", latest.display()))?;
    if let Some(out) = &opts.output {
        std::fs::write(out, &report).ctx(|| format!("write {}", out.display()))?;
    }
    eprintln!(
        "report saved to {}; logs in {}",
        latest.display(),
        Path::new(&work).join("logs").display()
    );
    Ok(())
}

/// `--distance`: its own report, written like the others.
#[cfg(all(feature = "sftp", feature = "s3"))]
fn run_distance(opts: &Options) -> Result<(), BenchError> {
    let restix = opts.restix.clone().unwrap_or_else(default_restix);
    let plot = opts
        .plot
        .clone()
        .unwrap_or_else(|| opts.dir.join("results").join("distance.svg"));
    let run = distance::DistanceRun {
        dir: &opts.dir,
        size: opts.size,
        restic: &opts.restic,
        restix: &restix,
        rtts: opts.distance.clone(),
        connections: opts.connections.clone(),
        tools: opts.tools.clone(),
        timeout: opts.timeout,
        plot,
    };
    let mut report = String::from("## restix benchmark: distance\n\n");
    report.push_str(&format!(
        "- Date: {}\n- Command: `benches/run.sh {}`\n\n",
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        opts.command_line
    ));
    report.push_str(&distance::run(&run)?);
    println!("{report}");
    let results = opts.dir.join("results");
    std::fs::create_dir_all(&results).ctx(|| format!("mkdir {}", results.display()))?;
    let latest = results.join("distance.md");
    std::fs::write(&latest, &report).ctx(|| format!("write {}", latest.display()))?;
    if let Some(out) = &opts.output {
        std::fs::write(out, &report).ctx(|| format!("write {}", out.display()))?;
    }
    Ok(())
}

#[cfg(not(all(feature = "sftp", feature = "s3")))]
fn run_distance(_opts: &Options) -> Result<(), BenchError> {
    Err(BenchError::Usage(
        "--distance needs the `sftp` and `s3` features (benches/run.sh --distance ...)".into(),
    ))
}

/// The hidden argument of the warm-up child process (see [`warm_memory`]).
const WARM_MEMORY_CHILD: &str = "--warm-memory-child";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(WARM_MEMORY_CHILD) {
        let touched = warm_memory();
        eprintln!("touched {} MiB of free memory once", touched / MIB);
        return ExitCode::SUCCESS;
    }
    let result = parse_args(&args).and_then(run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(BenchError::Usage(text)) => {
            eprintln!("{text}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("restix-benches: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("200M"), Some(200 << 20));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("0"), None);
    }

    #[test]
    fn default_selection_leaves_out_the_heavy_scenarios() {
        let o = parse_args(&args(&["--quick"])).unwrap();
        assert_eq!(o.size, 200 * MIB);
        assert!(!o.scenarios.contains(&Scenario::Prune));
        assert!(!o.scenarios.contains(&Scenario::Sftp));
        assert!(!o.scenarios.contains(&Scenario::S3));
        assert!(!o.scenarios.contains(&Scenario::Rest));
        let o = parse_args(&args(&[
            "--prune",
            "--only",
            "small,prune",
            "--threads",
            "1,4,all",
        ]))
        .unwrap();
        assert_eq!(o.scenarios, vec![Scenario::Small, Scenario::Prune]);
        assert_eq!(o.threads, vec![Some(1), Some(4), None]);
        assert!(parse_args(&args(&["--only", "bogus"])).is_err());
        assert!(parse_args(&args(&["--repeat", "0"])).is_err());
    }
}
