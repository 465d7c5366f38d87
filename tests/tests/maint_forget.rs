//! `forget` policy equivalence: for many keep policies, restix keeps and
//! removes exactly the snapshots the real restic keeps and removes.
//!
//! The repository is made by restic (one tiny backup); 240 more snapshots
//! over four years, three hosts, two path sets, assorted tags and three UTC
//! offsets are written directly with the engine (same tree), which is far
//! faster than 240 backups.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use restix_engine::backend::local::LocalBackend;
use restix_engine::repository::Repository;
use restix_repo_format::GoTime;
use restix_tests::harness::{s, Sandbox, Tool, PASSWORD};
use restix_tests::require_restic;
use serde_json::Value;

/// Deterministic pseudo-random numbers (LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn make_repo(sb: &Sandbox) -> std::path::PathBuf {
    let repo = sb.join("repo");
    sb.init(Tool::Restic, &repo, 2).ok();
    let src = sb.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    // Tagged so that tag-only policies keep something in its group (0.17+
    // refuses to empty a group).
    sb.restic([
        "-r",
        s(&repo),
        "backup",
        "--host",
        "seed",
        "--tag",
        "important,b",
        s(&src),
    ])
    .ok();

    let backend = Arc::new(LocalBackend::new(&repo));
    let r = Repository::open(backend, PASSWORD.as_bytes(), None).unwrap();
    let (_, seed) = r.list_snapshots().unwrap().pop().unwrap();
    let mut rng = Lcg(42);
    // 2021-01-01T00:00:00Z
    let mut t: i64 = 1_609_459_200;
    let hosts = ["h1", "h2", "h3"];
    let tags = ["daily", "important", "a", "b"];
    let offsets = [0, 7200, -25_200];
    for _ in 0..240 {
        // Mostly hours to days apart, sometimes minutes (same hour/day buckets).
        t += match rng.next(10) {
            0..=2 => 60 * (1 + rng.next(50)) as i64,
            3..=6 => 3600 * (1 + rng.next(30)) as i64,
            _ => 86_400 * (1 + rng.next(12)) as i64,
        };
        let mut snap = seed.clone();
        snap.time = GoTime::new(
            t,
            rng.next(1_000_000_000) as u32,
            offsets[rng.next(3) as usize],
        );
        snap.hostname = hosts[rng.next(3) as usize].to_string();
        snap.paths = if rng.next(4) == 0 {
            vec!["/data".into(), "/etc".into()]
        } else {
            vec!["/data".into()]
        };
        snap.tags = tags
            .iter()
            .filter(|_| rng.next(3) == 0)
            .map(|t| t.to_string())
            .collect();
        snap.parent = None;
        r.save_snapshot(&snap).unwrap();
    }
    repo
}

/// Per group key: (kept IDs, removed IDs, reasons per kept ID).
type Outcome = BTreeMap<
    String,
    (
        BTreeSet<String>,
        BTreeSet<String>,
        BTreeMap<String, Vec<String>>,
    ),
>;

fn outcome(json: &Value) -> Outcome {
    let mut out = Outcome::new();
    for g in json.as_array().expect("forget --json is an array") {
        let key = format!("{}|{}|{}", g["host"], g["paths"], g["tags"]);
        let ids = |v: &Value| -> BTreeSet<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| s["id"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let keep = ids(&g["keep"]);
        let remove = ids(&g["remove"]);
        // Reasons are in keep order (0.14 has no id in them).
        let mut reasons = BTreeMap::new();
        let keep_list: Vec<&Value> = g["keep"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let reason_list: Vec<&Value> = g["reasons"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        assert_eq!(
            keep_list.len(),
            reason_list.len(),
            "one reason per kept snapshot: {g}"
        );
        for (k, r) in keep_list.iter().zip(reason_list) {
            let matches: Vec<String> = r["matches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap().to_string())
                .collect();
            reasons.insert(k["id"].as_str().unwrap().to_string(), matches);
        }
        out.insert(key, (keep, remove, reasons));
    }
    out
}

/// restic 0.15+ (and so 0.18, which restix follows) also keeps the oldest
/// snapshot of a group while a `--keep-X` bucket has count left, with the
/// reason "oldest X snapshot"; restic 0.14 (the oracle here) does not.
/// Removing exactly those reasons (and snapshots kept only for them) turns
/// the 0.18 outcome into the 0.14 one. Returns how many were moved.
fn without_oldest_rule(outcome: &mut Outcome) -> usize {
    let mut moved = 0;
    for (keep, remove, reasons) in outcome.values_mut() {
        for (id, matches) in reasons.iter_mut() {
            matches.retain(|m| !m.starts_with("oldest "));
            if matches.is_empty() {
                keep.remove(id);
                remove.insert(id.clone());
                moved += 1;
            }
        }
        reasons.retain(|_, m| !m.is_empty());
    }
    moved
}

#[test]
fn forget_policies_match_restic() {
    require_restic!();
    let sb = Sandbox::new();
    let repo = make_repo(&sb);
    let policies: &[&[&str]] = &[
        &["--keep-last", "5"],
        &["--keep-hourly", "10"],
        &["--keep-daily", "7"],
        &["--keep-weekly", "5"],
        &["--keep-monthly", "12"],
        &["--keep-yearly", "3"],
        &[
            "--keep-daily",
            "7",
            "--keep-weekly",
            "4",
            "--keep-monthly",
            "6",
            "--keep-yearly",
            "2",
        ],
        &["--keep-daily", "500"],
        &["--keep-weekly", "300", "--keep-last", "1"],
        &["--keep-within", "1y2m"],
        &["--keep-within", "10d5h"],
        &[
            "--keep-within-daily",
            "30d",
            "--keep-within-weekly",
            "3m",
            "--keep-within-monthly",
            "1y",
        ],
        &["--keep-within-hourly", "5d", "--keep-within-yearly", "10y"],
        &["--keep-tag", "important"],
        &["--keep-tag", "a,b", "--keep-last", "2"],
        &[
            "--keep-tag",
            "daily",
            "--keep-tag",
            "b",
            "--keep-monthly",
            "3",
        ],
        &["--group-by", "host", "--keep-daily", "3"],
        &["--group-by", "tags", "--keep-monthly", "2"],
        &[
            "--group-by",
            "host,tags",
            "--keep-weekly",
            "2",
            "--keep-yearly",
            "5",
        ],
        &["--group-by", "", "--keep-weekly", "10"],
        &["--host", "h1", "--keep-last", "3"],
        &["--tag", "daily", "--keep-yearly", "1", "--keep-hourly", "4"],
        &["--path", "/etc", "--keep-monthly", "4"],
    ];
    let mut compared = 0;
    let mut oldest_kept = 0;
    for policy in policies {
        let mut args = vec!["-r", s(&repo), "forget", "--dry-run", "--json"];
        args.extend_from_slice(policy);
        let expected = outcome(&sb.restic(&args).ok().json());
        let mut actual = outcome(&sb.restix(&args).ok().json());
        oldest_kept += without_oldest_rule(&mut actual);
        assert_eq!(
            expected.keys().collect::<Vec<_>>(),
            actual.keys().collect::<Vec<_>>(),
            "groups differ for {policy:?}"
        );
        for (key, (keep, remove, reasons)) in &expected {
            let (akeep, aremove, areasons) = &actual[key];
            assert_eq!(
                keep, akeep,
                "kept snapshots differ for {policy:?}, group {key}"
            );
            assert_eq!(
                remove, aremove,
                "removed snapshots differ for {policy:?}, group {key}"
            );
            assert_eq!(
                reasons, areasons,
                "reasons differ for {policy:?}, group {key}"
            );
            compared += keep.len() + remove.len();
        }
    }
    assert!(compared > 2000, "compared {compared} decisions");
    // The policies exercise the oldest-snapshot rule.
    assert!(oldest_kept > 0);
    eprintln!(
        "compared {compared} keep/remove decisions; {oldest_kept} kept by the 0.15+ oldest rule"
    );

    // The real run removes what the dry run announced, and restic agrees.
    let policy = ["--keep-daily", "7", "--keep-monthly", "3"];
    let mut args = vec!["-r", s(&repo), "forget", "--json", "--dry-run"];
    args.extend_from_slice(&policy);
    let planned = outcome(&sb.restix(&args).ok().json());
    let mut args = vec!["-r", s(&repo), "forget"];
    args.extend_from_slice(&policy);
    sb.restix(&args).ok().stdout_has("files deleted");
    let left: BTreeSet<String> = sb
        .restic(["-r", s(&repo), "snapshots", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let kept: BTreeSet<String> = planned.values().flat_map(|(k, _, _)| k.clone()).collect();
    assert_eq!(left, kept);
    sb.restic(["-r", s(&repo), "check"]).ok();
}

#[test]
fn forget_explicit_ids_and_text() {
    require_restic!();
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    sb.init(Tool::Restic, &repo, 2).ok();
    let src = sb.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    for time in [
        "2024-01-01 10:00:00",
        "2024-01-02 10:00:00",
        "2024-01-03 10:00:00",
    ] {
        sb.restic(["-r", s(&repo), "backup", "--time", time, s(&src)])
            .ok();
    }
    let run = sb
        .restix(["-r", s(&repo), "forget", "--dry-run", "--keep-last", "1"])
        .ok();
    let out = run.out();
    assert!(
        out.starts_with("Applying Policy: keep 1 latest snapshots\nkeep 1 snapshots:\n"),
        "{out}"
    );
    assert!(out.contains("last snapshot"), "{out}");
    assert!(out.contains("remove 2 snapshots:"), "{out}");
    assert!(
        out.contains("Would have removed the following snapshots:\n{"),
        "{out}"
    );
    // No policy: an error like restic 0.17+.
    sb.restix(["-r", s(&repo), "forget"])
        .fails()
        .stderr_has("no policy was specified");
    // Explicit ID.
    let snaps = sb
        .restic(["-r", s(&repo), "snapshots", "--json"])
        .ok()
        .json();
    let first = snaps[0]["id"].as_str().unwrap().to_string();
    sb.restix(["-r", s(&repo), "forget", &first[..8]]).ok();
    let left = sb
        .restic(["-r", s(&repo), "snapshots", "--json"])
        .ok()
        .json();
    assert_eq!(left.as_array().unwrap().len(), 2);
    assert!(left
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["id"] != first.as_str()));
}

/// Must-show 1 literally: 210 snapshots made by `restix backup --time`,
/// spread over three years (two hosts, some tagged), and the keep
/// policies decide exactly as the real restic does.
#[test]
fn forget_on_backups_with_time_matches_restic() {
    require_restic!();
    let sb = Sandbox::new();
    let repo = sb.join("repo");
    sb.init(Tool::Restix, &repo, 2).ok();
    let src = sb.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("file.txt"), b"forget me not\n").unwrap();
    let mut rng = Lcg(7);
    // 2022-03-01T00:00:00Z
    let mut t: i64 = 1_646_092_800;
    let mut backups: Vec<Vec<String>> = Vec::new();
    for _ in 0..210 {
        t += match rng.next(4) {
            0 => 60 * (1 + rng.next(90)) as i64,
            1 => 3600 * (1 + rng.next(20)) as i64,
            _ => 86_400 * (1 + rng.next(9)) as i64,
        };
        let host = if rng.next(3) == 0 { "other" } else { "main" };
        let mut args: Vec<String> = [
            "-r",
            s(&repo),
            "backup",
            "-q",
            "--time",
            &chrono_like(t),
            "--host",
            host,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        if rng.next(4) == 0 {
            args.push("--tag".into());
            args.push("monthly".into());
        }
        args.push(s(&src).to_string());
        backups.push(args);
    }
    // Four at a time (backups share the repository; most of a run is
    // waiting for fsync and the lock re-check, not CPU).
    std::thread::scope(|scope| {
        for part in backups.chunks(backups.len().div_ceil(4)) {
            let sb = &sb;
            scope.spawn(move || {
                for args in part {
                    sb.restix(args).ok();
                }
            });
        }
    });
    let count = sb
        .restic(["-r", s(&repo), "snapshots", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .len();
    assert_eq!(count, 210);
    let policies: &[&[&str]] = &[
        &["--keep-last", "20"],
        &["--keep-hourly", "30"],
        &["--keep-daily", "14"],
        &["--keep-weekly", "8"],
        &["--keep-monthly", "18"],
        &["--keep-yearly", "5"],
        &["--keep-within", "6m"],
        &["--keep-within-weekly", "1y", "--keep-last", "3"],
        &["--keep-tag", "monthly", "--keep-daily", "5"],
        &[
            "--keep-daily",
            "7",
            "--keep-weekly",
            "5",
            "--keep-monthly",
            "12",
            "--keep-yearly",
            "10",
        ],
    ];
    for policy in policies {
        let mut args = vec!["-r", s(&repo), "forget", "--dry-run", "--json"];
        args.extend_from_slice(policy);
        let expected = outcome(&sb.restic(&args).ok().json());
        let mut actual = outcome(&sb.restix(&args).ok().json());
        without_oldest_rule(&mut actual);
        assert_eq!(expected, actual, "decisions differ for {policy:?}");
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC; the tests run with TZ=UTC) for `--time`.
fn chrono_like(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}
