//! The binary end to end: exit codes, messages, and a CSV ingestion with quarantine.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;
use std::process::{Command, Output};

fn affluent(project: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_affluent"))
        .arg("--project")
        .arg(project)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn version_and_help() {
    let o = affluent(Path::new("."), &["--version"]);
    assert!(o.status.success());
    assert!(text(&o).starts_with("affluent 0."), "{}", text(&o));
    let o = affluent(Path::new("."), &["ingest", "--help"]);
    assert!(text(&o).contains("--from"), "{}", text(&o));
}

#[test]
fn validate_reports_errors_with_positions_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("affluent.toml"),
        "[sources.x]\ntype = \"rest\"\nclient.base_url = \"https://x.org\"\nendpoint.data_selctor = \"a\"\n",
    )
    .unwrap();
    let o = affluent(dir.path(), &["validate"]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("affluent.toml:4:10: error: unknown key `data_selctor`"),
        "{t}"
    );
    assert!(t.contains("did you mean `data_selector`?"), "{t}");

    let o = affluent(&dir.path().join("missing"), &["validate"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("cannot read"), "{}", text(&o));
}

#[test]
fn csv_ingest_lands_once_and_quarantines_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("raw")).unwrap();
    std::fs::write(
        dir.path().join("raw/a.csv"),
        "date_time,agency_name,counter_id,visitor_count,unit\n2024-01-01_09,Lyon_1,0,12,visitors\n2024-01-01 10:00,Lyon_1,zero,3,visitors\n2024-01-01_11,Lyon_1,0\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("affluent.toml"),
        "[sources.raw]\ntype = \"csv\"\npath = \"raw/*.csv\"\ncolumns = { counter_id = \"int\", visitor_count = \"int\" }\n",
    )
    .unwrap();
    let o = affluent(dir.path(), &["ingest", "raw"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("1 landed, 0 unchanged, 1 records, 2 quarantined"),
        "{}",
        text(&o)
    );
    let o = affluent(dir.path(), &["ingest", "raw"]);
    assert!(text(&o).contains("0 landed, 1 unchanged"), "{}", text(&o));

    let o = affluent(dir.path(), &["quarantine", "list"]);
    let t = text(&o);
    assert!(t.contains("raw: 2 quarantined records"), "{t}");
    assert!(
        t.contains("counter_id: expected an integer, found …"),
        "{t}"
    );
    assert!(t.contains("expected 5 fields, found …"), "{t}");

    let o = affluent(dir.path(), &["landing", "list", "raw"]);
    let t = text(&o);
    assert!(t.contains("raw/a.csv") && t.contains("1 entries"), "{t}");
    let id = t
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let o = affluent(dir.path(), &["landing", "show", "raw", &id]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("date_time,agency_name"));

    let o = affluent(dir.path(), &["ingest", "rwa"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no source named `rwa`") && text(&o).contains("did you mean `raw`?"),
        "{}",
        text(&o)
    );
}

#[test]
fn prune_removes_rejected_entries_and_keeps_unloaded_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("raw")).unwrap();
    std::fs::write(dir.path().join("raw/good.csv"), "id,n\n1,2\n").unwrap();
    // A file whose header lacks a declared column is landed, then rejected whole.
    std::fs::write(dir.path().join("raw/bad.csv"), "id,other\n1,2\n").unwrap();
    std::fs::write(
        dir.path().join("affluent.toml"),
        "[landing]\nretention = \"30d\"\n\n[sources.raw]\ntype = \"csv\"\npath = \"raw/*.csv\"\ncolumns = { n = \"int\" }\n",
    )
    .unwrap();
    let o = affluent(dir.path(), &["ingest", "raw"]);
    assert!(
        !o.status.success(),
        "a rejected file fails the run: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("declared column `n` is not in the file's header"),
        "{}",
        text(&o)
    );

    // A rejected file is not remembered as seen: the next run reads it again and says why.
    let o = affluent(dir.path(), &["ingest", "raw"]);
    assert!(text(&o).contains("1 landed, 1 unchanged"), "{}", text(&o));
    assert!(!o.status.success());

    // Within the 30-day retention: nothing goes.
    let o = affluent(dir.path(), &["landing", "prune"]);
    assert!(text(&o).contains("raw: removed 0 entries"), "{}", text(&o));
    let o = affluent(
        dir.path(),
        &["landing", "prune", "raw", "--older-than", "0s", "--dry-run"],
    );
    assert!(text(&o).contains("would remove 2 entries"), "{}", text(&o));
    let o = affluent(
        dir.path(),
        &["landing", "prune", "raw", "--older-than", "0s"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("removed 2 entries and 0 leftovers")
            && text(&o).contains("kept 1 not yet loaded"),
        "{}",
        text(&o)
    );
    let o = affluent(dir.path(), &["landing", "list", "raw"]);
    assert!(
        text(&o).contains("1 entries") && text(&o).contains("raw/good.csv"),
        "{}",
        text(&o)
    );
}
