//! `GoTime`'s local zone follows Go's `time.Local` rules (spec §11.5): the
//! zone is resolved once per process, so each case runs in a child process
//! (this test binary re-executed with a different `TZ`).

use std::process::Command;

use restix_repo_format::GoTime;

const WINTER: i64 = 1_700_000_000; // 2023-11-14
const SUMMER: i64 = 1_690_000_000; // 2023-07-22

#[test]
fn child_reports_offsets() {
    // Only meaningful when started by `tz_rules` below.
    if std::env::var_os("RESTIX_TZ_CHILD").is_none() {
        return;
    }
    let w = GoTime::from_unix_nanos_local(WINTER, 5).offset_seconds;
    let s = GoTime::from_unix_nanos_local(SUMMER, 5).offset_seconds;
    println!("OFFSETS {w} {s}");
}

fn offsets_with(tz: Option<&str>) -> Option<(i32, i32)> {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_reports_offsets",
        "--nocapture",
        "--test-threads=1",
    ]);
    cmd.env("RESTIX_TZ_CHILD", "1");
    match tz {
        Some(v) => cmd.env("TZ", v),
        None => cmd.env_remove("TZ"),
    };
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.split("OFFSETS ").nth(1))?;
    let mut it = line.split(' ').map(|v| v.parse::<i32>().unwrap());
    Some((it.next()?, it.next()?))
}

#[test]
fn tz_rules() {
    if !std::path::Path::new("/usr/share/zoneinfo/Europe/Berlin").exists() {
        return restix_testkit::skip("zoneinfo database", "apt-get install tzdata");
    }
    assert_eq!(offsets_with(Some("Europe/Berlin")), Some((3600, 7200)));
    assert_eq!(
        offsets_with(Some(":America/New_York")),
        Some((-18000, -14400))
    );
    assert_eq!(
        offsets_with(Some("/usr/share/zoneinfo/Asia/Kolkata")),
        Some((19800, 19800))
    );
    assert_eq!(offsets_with(Some("")), Some((0, 0)));
    assert_eq!(offsets_with(Some("No/Such_Zone")), Some((0, 0)));
    // TZ unset: /etc/localtime (whatever it is here) must just work.
    assert!(offsets_with(None).is_some());
}
