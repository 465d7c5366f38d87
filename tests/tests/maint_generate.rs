//! `version` and `generate` (spec: cli §10.20, §10.21): no repository and
//! no password needed; completions for four shells and one man page per
//! command, named like restic's (`restic-backup.1` when the program is
//! called `restic`).

use restix_tests::harness::{restix_bin, s, Sandbox};

/// The program name completions and man pages are made for: `restic` for
/// a drop-in install under that name, else `restix`.
fn program_name() -> String {
    let invoked = restix_bin().file_name().unwrap().to_string_lossy();
    if invoked == "restic" {
        "restic"
    } else {
        "restix"
    }
    .to_string()
}

#[test]
fn version_text_and_json() {
    let sb = Sandbox::new();
    let run = sb.restix(["version"]).ok().stdout_has("compiled with");
    assert!(run.out().contains("linux/"), "{}", run.describe());
    let json = sb.restix(["version", "--json"]).ok().json();
    assert_eq!(json["message_type"], "version", "{json}");
    assert!(json["version"].as_str().is_some_and(|v| !v.is_empty()));
    assert_eq!(json["go_os"], "linux");
}

#[test]
fn generate_completions_and_man_pages() {
    let sb = Sandbox::new();
    let name = program_name();

    sb.restix(["generate"])
        .fails()
        .stderr_has("nothing to do, please specify at least one output file/dir");

    let files: Vec<_> = ["bash", "fish", "zsh", "powershell"]
        .iter()
        .map(|shell| (shell, sb.join(format!("completion.{shell}"))))
        .collect();
    let mut args = vec!["generate".to_string()];
    for (shell, path) in &files {
        args.push(format!("--{shell}-completion"));
        args.push(s(path).to_string());
    }
    let run = sb.restix(&args).ok();
    for (shell, path) in &files {
        assert!(
            run.out()
                .contains(&format!("writing {shell} completion file to {}", s(path))),
            "{}",
            run.describe()
        );
        let text = std::fs::read_to_string(path).unwrap();
        assert!(!text.is_empty(), "{shell} completion is empty");
        assert!(text.contains("backup"), "{shell} completion lacks backup");
        assert!(text.contains(&name), "{shell} completion lacks {name}");
    }
    // `-` writes to stdout (restic 0.18).
    let run = sb.restix(["generate", "--bash-completion", "-"]).ok();
    assert!(run.out().contains("backup"), "{}", run.describe());
    assert!(!run.out().contains("writing bash completion"));

    // One man page per command, plus the root page.
    let man = sb.join("man");
    std::fs::create_dir_all(&man).unwrap();
    sb.restix(["generate", "--man", s(&man)])
        .ok()
        .stdout_has(&format!("writing man pages to directory {}", s(&man)));
    for command in [
        "backup",
        "check",
        "forget",
        "prune",
        "restore",
        "snapshots",
        "stats",
        "unlock",
        "version",
        "generate",
        "key",
        "repair",
    ] {
        let page = man.join(format!("{name}-{command}.1"));
        let text =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{text}");
    }
    let backup = std::fs::read_to_string(man.join(format!("{name}-backup.1"))).unwrap();
    assert!(backup.contains("exclude"), "{backup}");
    assert!(man.join(format!("{name}.1")).is_file());
}
