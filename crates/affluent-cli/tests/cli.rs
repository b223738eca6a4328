//! The binary end to end: exit codes, messages, a CSV ingestion with quarantine, crashes of
//! loads, and (in `cli/scheduler.rs`) `affluent run` under kills, faults and an outage.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;
use std::process::{Command, Output};

#[path = "cli/alerts.rs"]
mod alerts;
#[path = "cli/layers.rs"]
mod layers;
#[path = "cli/ml.rs"]
mod ml;
#[path = "cli/objects.rs"]
mod objects;
#[path = "cli/scheduler.rs"]
mod scheduler;
#[path = "cli/secrets.rs"]
mod secrets;
#[path = "cli/sinks.rs"]
mod sinks;
#[path = "cli/streams.rs"]
mod streams;

fn affluent(project: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_affluent"))
        .arg("--project")
        .arg(project)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("runs")
}

/// Waits until a process started with `AFFLUENT_FAILPOINT=point` (stderr piped) says it is
/// there, then SIGKILLs it.
fn kill_at_failpoint(mut child: std::process::Child, point: &str) {
    let stderr = child.stderr.take().unwrap();
    let mut reader = std::io::BufReader::new(stderr);
    let mut line = String::new();
    loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert!(n > 0, "the process ended before reaching {point}");
        if line.contains(&format!("failpoint {point} reached")) {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
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
fn commands_need_only_the_variables_of_the_sources_they_call() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("local.csv"), "day,n\n2024-01-01,3\n").unwrap();
    std::fs::write(
        dir.path().join("affluent.toml"),
        r#"[sources.scores]
type = "rest"
client.base_url = "https://api.example.org/"
client.headers = { "X-Auth-Token" = "${SCORES_TOKEN}" }
client.auth = { type = "api_key", name = "key", api_key = "${SCORES_KEY}", location = "query" }

[sources.local]
type = "csv"
path = "local.csv"
columns = { day = "string", n = "int" }

[tables.local]
source = "local"
[tables.local.columns]
day = { path = "day", type = "date" }
n = { path = "n", type = "int" }
"#,
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_affluent"))
            .arg("--project")
            .arg(dir.path())
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("SCORES_TOKEN")
            .env_remove("SCORES_KEY")
            .output()
            .expect("runs")
    };
    // What calls no source, or only `local`, runs without the API's secrets.
    for args in [
        &["ingest", "local"][..],
        &["query", "SELECT sum(n) AS n FROM local"][..],
        &["tables"][..],
        &["status"][..],
        &["landing", "list", "local"][..],
    ] {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    }
    let o = run(&["query", "SELECT sum(n) AS n FROM local", "--format", "csv"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "n\n3");
    // Calling `scores` names both variables at once, with line and column.
    for args in [&["ingest", "scores"][..], &["validate"][..]] {
        let o = run(args);
        assert!(!o.status.success(), "{args:?}");
        let t = text(&o);
        assert!(
            t.contains("affluent.toml:4:37: error: environment variable `SCORES_TOKEN` is not set")
                && t.contains(
                    "affluent.toml:5:59: error: environment variable `SCORES_KEY` is not set"
                ),
            "{args:?}: {t}"
        );
    }
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

/// A project loading the footfall exports into an append table and a merge table.
fn footfall_project(dir: &Path) {
    let raw = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/footfall/raw");
    std::fs::create_dir_all(dir.join("raw")).unwrap();
    for name in [
        "events_all_agencies_counters_2024-01-01-2024-01-31.csv",
        "events_all_agencies_counters_2024-02-01-2024-02-29.csv",
        "events_all_agencies_counters_2024-03-01-2024-03-31.csv",
    ] {
        std::fs::copy(raw.join(name), dir.join("raw").join(name)).unwrap();
    }
    std::fs::write(
        dir.join("affluent.toml"),
        r#"
timezone = "Europe/Paris"
[sources.footfall]
type = "csv"
path = "raw/*.csv"
columns = { date_time = "string", agency_name = "string", counter_id = "int", visitor_count = "int", unit = "string" }

[tables.raw_events]
source = "footfall"

[tables.latest]
source = "footfall"
write = "merge"
primary_key = ["date_time", "agency_name", "counter_id"]
"#,
    )
    .unwrap();
}

/// A query's CSV, or nothing when its table does not exist yet.
fn try_query(project: &Path, sql: &str) -> String {
    let o = affluent(project, &["query", "--format", "csv", sql]);
    if !o.status.success() {
        assert!(text(&o).contains("not found"), "{sql}: {}", text(&o));
        return String::new();
    }
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn query(project: &Path, sql: &str) -> String {
    let o = affluent(project, &["query", "--format", "csv", sql]);
    assert!(o.status.success(), "{sql}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Rows per landing entry; empty when the table does not exist yet.
fn rows_per_entry(project: &Path, table: &str) -> std::collections::BTreeMap<String, u64> {
    let o = affluent(
        project,
        &[
            "query",
            "--format",
            "csv",
            &format!("SELECT _affluent_entry, count(*) AS n FROM {table} GROUP BY 1"),
        ],
    );
    if !o.status.success() {
        assert!(text(&o).contains("not found"), "{}", text(&o));
        return Default::default();
    }
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(1)
        .map(|l| {
            let (e, n) = l.split_once(',').unwrap();
            (e.to_string(), n.parse().unwrap())
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Landing entry id -> file name it came from (CSV entries keep their path as URL).
fn entry_files(project: &Path) -> std::collections::BTreeMap<String, String> {
    let o = affluent(
        project,
        &["landing", "list", "footfall", "--format", "json"],
    );
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let url = v["url"].as_str().unwrap();
            let file = Path::new(url).file_name().unwrap().to_string_lossy();
            (
                v["entry_id"].as_str().unwrap().to_string(),
                file.into_owned(),
            )
        })
        .collect()
}

/// Loads are SIGKILLed at named points (after the ledger, after the commit) and at random
/// moments while they run, with new entries landed between kills; after every kill each landing
/// entry's rows are in the append table completely or not at all and the merge table has no
/// duplicate key; a final load leaves every row exactly once.
#[test]
fn a_load_killed_at_any_point_never_loses_or_duplicates_a_row() {
    load_killed_anywhere(None);
}

/// The same with the tables on an S3-compatible store (moto): a kill between the object
/// store's writes (data files, then the commit's conditional put) neither loses nor doubles.
#[test]
fn a_load_killed_at_any_point_on_s3_never_loses_or_duplicates_a_row() {
    let s3 = objects::S3::start();
    load_killed_anywhere(Some(&s3));
}

fn load_killed_anywhere(s3: Option<&objects::S3>) {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("p");
    footfall_project(&project);
    let o = affluent(&project, &["ingest", "footfall", "--no-load"]);
    assert!(o.status.success(), "{}", text(&o));

    // The truth: the same landing loaded without interruption, in a copy: rows per file.
    let reference = dir.path().join("reference");
    copy_dir(&project, &reference);
    let started = std::time::Instant::now();
    let o = affluent(&reference, &["load"]);
    let load_ms = started.elapsed().as_millis() as u64;
    assert!(o.status.success(), "{}", text(&o));
    let files = entry_files(&reference);
    let rows_of_file: std::collections::BTreeMap<String, u64> =
        rows_per_entry(&reference, "raw_events")
            .into_iter()
            .map(|(entry, n)| (files[&entry].clone(), n))
            .collect();
    assert_eq!(rows_of_file.len(), 3, "{rows_of_file:?}");
    let distinct_keys = query(&reference, "SELECT count(*) AS n FROM latest");
    if let Some(s3) = s3 {
        s3.attach(&project, "crash");
    }

    // Each entry's rows: all of its file's rows, or none.
    let check = |when: &str| {
        let files = entry_files(&project);
        for (entry, n) in rows_per_entry(&project, "raw_events") {
            let file = &files[&entry];
            let source = file.rsplit_once("__copy").map_or(file.as_str(), |(f, _)| f);
            assert_eq!(
                Some(&n),
                rows_of_file.get(source),
                "{when}: raw_events holds {n} rows of entry {entry} ({file})"
            );
        }
        let dup = try_query(
            &project,
            "SELECT count(*) AS d FROM (SELECT date_time, agency_name, counter_id FROM latest GROUP BY 1, 2, 3 HAVING count(*) > 1)",
        );
        assert!(
            dup == "d\n0\n" || dup.is_empty(),
            "{when}: duplicate keys in latest: {dup}"
        );
    };

    let spawn = |failpoint: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_affluent"));
        cmd.arg("--project")
            .arg(&project)
            .arg("load")
            .env_remove("RUST_LOG")
            // One commit per file, so kills land between commits too.
            .env("AFFLUENT_LOAD_COMMIT_RECORDS", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(f) = failpoint {
            cmd.env("AFFLUENT_FAILPOINT", f);
        }
        cmd.spawn().unwrap()
    };

    for point in ["load:after_ledger", "load:after_commit"] {
        kill_at_failpoint(spawn(Some(point)), point);
        check(&format!("killed at {point}"));
    }

    // Random moments within a load's duration, with a new file landed before each round so there
    // is always work in flight. A simple LCG seeded by the clock; the seed is printed.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill delays seed {seed}, uninterrupted load {load_ms} ms");
    let months: Vec<&String> = rows_of_file.keys().collect();
    let mut interrupted = 0;
    let rounds = 8;
    for round in 0..rounds {
        let month = months[round % months.len()];
        std::fs::copy(
            project.join("raw").join(month),
            project
                .join("raw")
                .join(format!("{month}__copy{round}.csv")),
        )
        .unwrap();
        let o = affluent(&project, &["ingest", "footfall", "--no-load"]);
        assert!(o.status.success(), "{}", text(&o));
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = (seed >> 33) % (load_ms + 1);
        let mut child = spawn(None);
        std::thread::sleep(std::time::Duration::from_millis(delay));
        if child.try_wait().unwrap().is_none() {
            interrupted += 1;
        }
        let _ = child.kill();
        child.wait().unwrap();
        check(&format!("round {round}, killed after {delay} ms"));
    }
    eprintln!("{interrupted} of {rounds} random kills interrupted a running load");
    assert!(
        interrupted > 0,
        "no kill hit a running load: the test proved nothing"
    );

    let o = affluent(&project, &["load"]);
    assert!(o.status.success(), "{}", text(&o));
    check("after the final load");
    let per_entry = rows_per_entry(&project, "raw_events");
    assert_eq!(
        per_entry.len(),
        3 + rounds,
        "every entry loaded: {per_entry:?}"
    );
    let o = affluent(&project, &["load"]);
    assert!(text(&o).contains("0 entries"), "{}", text(&o));
    let expected: u64 = per_entry.values().sum();
    assert_eq!(
        query(&project, "SELECT count(*) AS n FROM raw_events"),
        format!("n\n{expected}\n")
    );
    // The copies repeat keys: the merge table still has each key once.
    assert_eq!(
        query(&project, "SELECT count(*) AS n FROM latest"),
        distinct_keys
    );
}

#[test]
fn tables_query_transform_and_export_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    footfall_project(dir.path());
    let toml = std::fs::read_to_string(dir.path().join("affluent.toml")).unwrap();
    std::fs::write(
        dir.path().join("affluent.toml"),
        format!(
            "{toml}\n[models.per_agency]\nsql = \"SELECT agency_name, sum(visitor_count) AS visits FROM raw_events WHERE visitor_count > 0 GROUP BY agency_name\"\n"
        ),
    )
    .unwrap();
    let o = affluent(dir.path(), &["tables"]);
    assert!(text(&o).contains("never written"), "{}", text(&o));
    let o = affluent(dir.path(), &["ingest", "footfall"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("raw_events: 3 entries"), "{}", text(&o));
    let o = affluent(dir.path(), &["transform"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("per_agency:"), "{}", text(&o));
    let o = affluent(dir.path(), &["tables", "--format", "json"]);
    let t = text(&o);
    assert!(
        t.contains("\"name\":\"per_agency\",\"kind\":\"model\""),
        "{t}"
    );
    let o = affluent(
        dir.path(),
        &[
            "query",
            "--format",
            "json",
            "SELECT count(*) AS n FROM per_agency",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("[{\"n\":"),
        "{}",
        text(&o)
    );
    let out = dir.path().join("per_agency.csv");
    let o = affluent(
        dir.path(),
        &[
            "export",
            "per_agency",
            "--format",
            "csv",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .starts_with("agency_name,visits\n")
    );
    let o = affluent(dir.path(), &["query", "DROP TABLE raw_events"]);
    assert!(!o.status.success());
    let o = affluent(dir.path(), &["landing", "replay", "footfall"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("raw_events: 3 entries"), "{}", text(&o));
}

/// Retention removes only what every table of the source has loaded, and a full replay refuses
/// to drop the rows of entries that retention removed.
#[test]
fn prune_removes_entries_loaded_by_every_table_and_replay_protects_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("raw")).unwrap();
    std::fs::write(dir.path().join("raw/a.csv"), "id,n\n1,2\n2,3\n").unwrap();
    std::fs::write(
        dir.path().join("affluent.toml"),
        "[sources.raw]\ntype = \"csv\"\npath = \"raw/*.csv\"\n\n[tables.all_rows]\nsource = \"raw\"\n\n[tables.by_id]\nsource = \"raw\"\nwrite = \"merge\"\nprimary_key = [\"id\"]\n",
    )
    .unwrap();
    let o = affluent(dir.path(), &["ingest", "raw", "--no-load"]);
    assert!(o.status.success(), "{}", text(&o));
    // Landed, not loaded: kept whatever its age.
    let o = affluent(dir.path(), &["landing", "prune", "--older-than", "0s"]);
    assert!(text(&o).contains("removed 0 entries"), "{}", text(&o));
    assert!(text(&o).contains("kept 1 not yet loaded"), "{}", text(&o));
    let o = affluent(dir.path(), &["load"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = affluent(dir.path(), &["landing", "prune", "--older-than", "0s"]);
    assert!(text(&o).contains("removed 1 entries"), "{}", text(&o));
    let o = affluent(dir.path(), &["landing", "replay", "raw"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no longer in landing (removed by retention)"),
        "{}",
        text(&o)
    );
    assert_eq!(
        query(dir.path(), "SELECT count(*) AS n FROM all_rows"),
        "n\n2\n"
    );
}

/// Two processes loading the same tables at once: one waits for the other, nothing is loaded
/// twice.
#[test]
fn concurrent_loads_do_not_duplicate_rows() {
    let dir = tempfile::tempdir().unwrap();
    footfall_project(dir.path());
    let o = affluent(dir.path(), &["ingest", "footfall", "--no-load"]);
    assert!(o.status.success(), "{}", text(&o));
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_affluent"))
            .arg("--project")
            .arg(dir.path())
            .arg("load")
            .env("AFFLUENT_LOAD_COMMIT_RECORDS", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{}{}",
        text(&a),
        text(&b)
    );
    let per_entry = rows_per_entry(dir.path(), "raw_events");
    assert_eq!(per_entry.len(), 3);
    let mut counts: Vec<u64> = per_entry.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(
        counts,
        [14616, 15624, 15624],
        "each file's rows exactly once"
    );
}

/// Seed 004's transform: importing the real raw exports of `shared/fixtures/footfall/raw` gives
/// exactly the rows of the independent DuckDB reference (`shared/bench/footfall_duckdb.py`),
/// every column equal (numbers compared as numbers).
#[test]
fn footfall_daily_equals_the_reference_implementation() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/footfall");
    let dir = tempfile::tempdir().unwrap();
    for file in ["affluent.toml", "agencies.csv"] {
        std::fs::copy(example.join(file), dir.path().join(file)).unwrap();
    }
    copy_dir(&example.join("models"), &dir.path().join("models"));
    let raw = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/footfall/raw");
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_affluent"))
            .arg("--project")
            .arg(dir.path())
            .args(args)
            .env("FOOTFALL_RAW_DIR", &raw)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    run(&["ingest", "agencies"]);
    let landed = run(&["ingest", "footfall_raw"]);
    assert!(landed.contains("6 landed"), "{landed}");
    run(&["transform", "footfall_events", "footfall_daily"]);
    let ours = run(&[
        "query",
        "--format",
        "csv",
        "SELECT * FROM footfall_daily ORDER BY agency_name, counter_id, date",
    ]);
    let expected = std::fs::read_to_string(example.join("expected/footfall_daily.csv")).unwrap();
    let cells = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect()
    };
    let (ours, expected) = (cells(&ours), cells(&expected));
    assert_eq!(ours[0], expected[0], "columns");
    assert_eq!(ours.len(), 2_792, "2,791 rows and a header");
    assert_eq!(ours.len(), expected.len());
    for (i, (a, b)) in ours.iter().zip(&expected).enumerate().skip(1) {
        let same = a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| match (x.parse::<f64>(), y.parse::<f64>()) {
                    (Ok(x), Ok(y)) => x == y,
                    _ => x == y,
                });
        assert!(same, "row {i}: affluent {a:?} != reference {b:?}");
    }
}

/// A copy of `examples/footfall` in `dir`, without its raw exports.
/// `affluent simulate footfall` on a free port, and its URL.
fn footfall_simulator(args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut sim = Command::new(env!("CARGO_BIN_EXE_affluent"))
        .args(["simulate", "footfall", "--port", "0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(sim.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    (sim, url)
}

fn footfall_example_copy(dir: &Path) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/footfall");
    std::fs::create_dir_all(dir).unwrap();
    for file in ["affluent.toml", "agencies.csv", "holidays.csv"] {
        std::fs::copy(example.join(file), dir.join(file)).unwrap();
    }
    copy_dir(&example.join("models"), &dir.join("models"));
}

/// Seed 004 both ways: a week read from the simulator through the REST source (every agency ×
/// counter × hour) gives the same `footfall_daily` as the simulator's answers exported as the
/// seed's CSV and imported through the CSV source.
#[test]
fn footfall_over_rest_equals_the_same_answers_imported_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sim, url) = footfall_simulator(&["--seed", "11"]);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let empty = dir.path().join("no-exports");
    std::fs::create_dir_all(&empty).unwrap();
    let run = |project: &Path, raw: &Path, args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_affluent"))
            .arg("--project")
            .arg(project)
            .args(args)
            .env("FOOTFALL_API_URL", &url)
            .env("FOOTFALL_RAW_DIR", raw)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let daily = "SELECT * FROM footfall_daily ORDER BY agency_name, counter_id, date";

    // Through REST: one-day intervals here (each one 504 requests: 21 counters × 24 hours) keep
    // the debug-build test short; the example polls hourly.
    let rest = dir.path().join("rest");
    footfall_example_copy(&rest);
    let toml = std::fs::read_to_string(rest.join("affluent.toml")).unwrap();
    let toml = toml.replace("every = \"1h\"\nstart_date = \"-8w\"", "every = \"1d\"");
    assert!(
        toml.contains("every = \"1d\"\nconcurrency"),
        "the example changed: {toml}"
    );
    std::fs::write(rest.join("affluent.toml"), toml).unwrap();
    run(&rest, &empty, &["ingest", "agencies"]);
    let out = run(
        &rest,
        &empty,
        &[
            "backfill",
            "footfall_api",
            "--from",
            "2024-03-04",
            "--to",
            "2024-03-11",
        ],
    );
    assert!(out.contains(" 0 failed, 0 left"), "{out}");
    let requests = run(
        &rest,
        &empty,
        &[
            "query",
            "--format",
            "csv",
            "SELECT count(*) AS n FROM api_events",
        ],
    );
    assert_eq!(requests, "n\n3528\n", "7 days × 24 hours × 21 counters");
    let over_rest = run(&rest, &empty, &["query", "--format", "csv", daily]);

    // Through CSV: the simulator's answers for the same week, as the seed exported them.
    let csv = dir.path().join("csv");
    footfall_example_copy(&csv);
    let exports = dir.path().join("exports");
    std::fs::create_dir_all(&exports).unwrap();
    let o = affluent(
        &csv,
        &[
            "simulate",
            "footfall",
            "--seed",
            "11",
            "--export-csv",
            exports.join("week.csv").to_str().unwrap(),
            "--from",
            "2024-03-04",
            "--to",
            "2024-03-11",
        ],
    );
    assert!(text(&o).contains("3528 readings"), "{}", text(&o));
    run(&csv, &exports, &["ingest", "agencies"]);
    run(&csv, &exports, &["ingest", "footfall_raw"]);
    run(
        &csv,
        &exports,
        &["transform", "footfall_events", "footfall_daily"],
    );
    let from_csv = run(&csv, &exports, &["query", "--format", "csv", daily]);
    let _ = sim.kill();
    let _ = sim.wait();

    let rows = over_rest.lines().count() - 1;
    // 5 weekdays × 21 counters, minus the counter-days broken all day (no positive reading).
    assert!((95..=105).contains(&rows), "{rows} rows:\n{over_rest}");
    assert_eq!(over_rest, from_csv);
}

/// Seed 004's simulator goes down (its port closed) while `affluent run` catches up 12 hourly
/// intervals: the failed intervals are retried with no command, and every reading is in
/// `api_events` exactly once, equal to the simulator's own export of the same hours.
#[test]
fn an_outage_of_the_footfall_simulator_is_healed_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("p");
    footfall_example_copy(&project);
    let toml = std::fs::read_to_string(project.join("affluent.toml")).unwrap();
    let toml = toml
        .replace("start_date = \"-8w\"", "start_date = \"-12h\"")
        .replace(
            "retry_initial = \"10s\"\nretry_max = \"5m\"",
            "retry_initial = \"1s\"\nretry_max = \"2s\"",
        );
    assert!(toml.contains("start_date = \"-12h\"") && toml.contains("retry_max = \"2s\""));
    std::fs::write(project.join("affluent.toml"), toml).unwrap();
    let o = affluent(&project, &["ingest", "agencies"]);
    assert!(o.status.success(), "{}", text(&o));

    let now = jiff::Timestamp::now();
    let down = now.checked_add(jiff::SignedDuration::from_secs(3)).unwrap();
    let up = now.checked_add(jiff::SignedDuration::from_secs(8)).unwrap();
    let outage = format!("{down}/{up}");
    let (mut sim, url) = footfall_simulator(&["--seed", "7", "--outage", &outage]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_affluent"))
        .arg("--project")
        .arg(&project)
        .args(["run", "--until", "now", "--no-serve"])
        .env("FOOTFALL_API_URL", &url)
        .env_remove("RUST_LOG")
        // To files: a pipe nobody reads while it runs would fill and block the run.
        .stdout(std::fs::File::create(dir.path().join("run.out")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("run.err")).unwrap())
        .spawn()
        .unwrap();
    // A hang fails the test with the run's output rather than holding CI.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
    }
    let run = Output {
        status: child.wait().unwrap(),
        stdout: std::fs::read(dir.path().join("run.out")).unwrap(),
        stderr: std::fs::read(dir.path().join("run.err")).unwrap(),
    };
    assert!(run.status.success(), "{}", text(&run));
    let finished = jiff::Timestamp::now();
    assert!(
        finished > up,
        "the run ended before the outage did: {}",
        text(&run)
    );

    // The outage hit: runs failed, and were retried by the scheduler itself.
    let failed = affluent(
        &project,
        &["runs", "footfall_api", "--failed", "--format", "json"],
    );
    // One JSON object per run.
    let failed = String::from_utf8_lossy(&failed.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["status"] != "success")
        .count();
    assert!(
        failed > 0,
        "no run failed: the outage missed the run\n{}",
        text(&run)
    );
    let status = affluent(&project, &["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let api = status
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "source:footfall_api")
        .unwrap();
    assert_eq!(api["failed"], 0, "{api}");
    // Its coverage since the start date: every hour that ended is done, no hole.
    let c = affluent(
        &project,
        &["status", "--coverage", "footfall_api", "--format", "json"],
    );
    assert!(c.status.success(), "{}", text(&c));
    let c: serde_json::Value = serde_json::from_slice(&c.stdout).unwrap();
    assert_eq!(c["task"], "source:footfall_api");
    let done = c["counts"]["done"].as_u64().unwrap_or(0);
    assert!((11..=12).contains(&done), "{c}");
    assert_eq!(c["counts"].as_object().unwrap().len(), 1, "only done: {c}");
    assert_eq!(c["segments"].as_array().unwrap().len(), 1, "{c}");
    let table = affluent(&project, &["status", "--coverage", "footfall_api"]);
    assert!(
        text(&table).contains("0 hole(s)") && !text(&table).contains("← hole"),
        "{}",
        text(&table)
    );

    let q = affluent(
        &project,
        &[
            "query",
            "--format",
            "csv",
            "SELECT count(*) AS n, count(DISTINCT concat(CAST(date_time AS VARCHAR), '/', agency_name, '/', CAST(counter_id AS VARCHAR))) AS d, count(DISTINCT date_time) AS h, sum(visitor_count) AS s, to_char(min(date_time), '%Y-%m-%dT%H:%M:00Z') AS first, to_char(max(date_time) + INTERVAL '1 hour', '%Y-%m-%dT%H:%M:00Z') AS end FROM api_events",
        ],
    );
    assert!(q.status.success(), "{}", text(&q));
    let out = String::from_utf8_lossy(&q.stdout).into_owned();
    let row: Vec<&str> = out.lines().nth(1).unwrap().split(',').collect();
    let (n, d, h): (u64, u64, u64) = (
        row[0].parse().unwrap(),
        row[1].parse().unwrap(),
        row[2].parse().unwrap(),
    );
    assert_eq!(n, d, "a reading twice: {out}");
    assert_eq!(n, 21 * h, "every counter of every hour: {out}");
    assert!((11..=12).contains(&h), "12 hours: {out}");

    // The simulator's own answers for the same hours, as the seed exported them (the table
    // keeps instants, in UTC; the range is given as such).
    let export = dir.path().join("export.csv");
    let o = affluent(
        &project,
        &[
            "simulate",
            "footfall",
            "--seed",
            "7",
            "--export-csv",
            export.to_str().unwrap(),
            "--from",
            row[4],
            "--to",
            row[5],
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let exported = std::fs::read_to_string(&export).unwrap();
    let lines: Vec<&str> = exported.lines().skip(1).collect();
    assert_eq!(lines.len() as u64, n, "{}", text(&o));
    let header: Vec<&str> = exported.lines().next().unwrap().split(',').collect();
    let at = header.iter().position(|c| *c == "visitor_count").unwrap();
    let sum: i64 = lines
        .iter()
        .map(|l| l.split(',').nth(at).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(
        sum.to_string(),
        row[3],
        "the same readings: {out}\n{}\n{}",
        lines[0],
        lines[lines.len() - 1]
    );
    let _ = sim.kill();
    let _ = sim.wait();
}

#[test]
fn lineage_traces_a_models_rows_to_the_entries_they_were_loaded_from() {
    let dir = tempfile::tempdir().unwrap();
    footfall_project(dir.path());
    let toml = std::fs::read_to_string(dir.path().join("affluent.toml")).unwrap();
    std::fs::write(
        dir.path().join("affluent.toml"),
        format!(
            "{toml}\n[models.per_agency]\nsql = \"SELECT agency_name, sum(visitor_count) AS visits FROM raw_events GROUP BY agency_name\"\n"
        ),
    )
    .unwrap();
    for args in [&["ingest", "footfall"][..], &["transform"]] {
        let o = affluent(dir.path(), args);
        assert!(o.status.success(), "{}", text(&o));
    }
    let o = affluent(
        dir.path(),
        &[
            "lineage",
            "per_agency",
            "--where",
            "agency_name = 'Lyon_1'",
            "--format",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let l: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let nodes: Vec<(&str, &str)> = l["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap(), n["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(nodes, [("per_agency", "model"), ("raw_events", "table")]);
    assert!(
        l["notes"][0]
            .as_str()
            .unwrap()
            .contains("do not carry their landing entry"),
        "{l}"
    );
    // The entries of the rows it was computed from, as the table itself counts them.
    let mut want = rows_per_entry_where(dir.path(), "raw_events", "agency_name = 'Lyon_1'");
    assert_eq!(want.len(), 3, "one entry per file: {want:?}");
    for e in l["entries"].as_array().unwrap() {
        assert_eq!(e["table"], "raw_events");
        assert_eq!(e["source"], "footfall");
        assert_eq!(e["status"], 200, "{e}");
        assert!(e["url"].as_str().unwrap().ends_with(".csv"), "{e}");
        let rows = want
            .remove(e["entry"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{e}"));
        assert_eq!(e["rows"].as_u64().unwrap(), rows, "{e}");
    }
    assert!(want.is_empty(), "entries not listed: {want:?}");
    // A condition naming no column of the sources says so; an unknown table is an error.
    let o = affluent(
        dir.path(),
        &["lineage", "per_agency", "--where", "nope = 1"],
    );
    assert!(
        o.status.success() && text(&o).contains("the condition does not apply to `raw_events`"),
        "{}",
        text(&o)
    );
    let o = affluent(dir.path(), &["lineage", "per_agnecy"]);
    assert!(
        !o.status.success() && text(&o).contains("did you mean `per_agency`"),
        "{}",
        text(&o)
    );
}

/// Rows of `table` matching `condition`, per landing entry.
fn rows_per_entry_where(
    project: &Path,
    table: &str,
    condition: &str,
) -> std::collections::BTreeMap<String, u64> {
    query(
        project,
        &format!("SELECT _affluent_entry, count(*) FROM {table} WHERE {condition} GROUP BY 1"),
    )
    .lines()
    .skip(1)
    .map(|l| {
        let (e, n) = l.rsplit_once(',').unwrap();
        (e.to_string(), n.parse().unwrap())
    })
    .collect()
}

#[test]
fn demo_backfills_its_example_offline() {
    let dir = tempfile::tempdir().unwrap();
    footfall_example_copy(dir.path());
    let o = affluent(dir.path(), &["demo", "--no-run", "--weeks", "1"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("footfall simulator"), "{t}");
    // A week of hours, each run once, none failed (the models downstream run with them).
    assert!(
        t.contains("source:footfall_api: 168 interval(s) in range"),
        "{t}"
    );
    assert!(t.contains(" 0 failed, 0 left to another process"), "{t}");
    assert!(
        t.contains("1 week(s) landed, loaded and modelled")
            && t.contains("the dashboard is complete"),
        "{t}"
    );
    // A week of responses in one landing segment, not a file per response.
    let landing = dir.path().join(".affluent/landing/footfall_api");
    let files: Vec<_> = std::fs::read_dir(&landing).unwrap().collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let o = affluent(
        dir.path(),
        &[
            "query",
            "--format",
            "csv",
            "SELECT count(DISTINCT date) AS days FROM footfall_daily",
        ],
    );
    let days: i64 = String::from_utf8_lossy(&o.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{}", text(&o)));
    // The branches open six days a week; the 168 hours may touch an eighth calendar day.
    assert!((5..=8).contains(&days), "{days} days in a week's backfill");

    // The examples are a list: an unknown one is refused with the names.
    let o = affluent(dir.path(), &["demo", "--example", "nope"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("footfall"), "{}", text(&o));
}

/// `affluent record` against the footfall simulator, then the same hours replayed from the
/// cassette with the simulator gone: the same rows, no request.
#[test]
fn record_then_replay_with_the_api_gone() {
    let dir = tempfile::tempdir().unwrap();
    footfall_example_copy(dir.path());
    let (mut sim, url) = footfall_simulator(&["--seed", "3"]);
    let range = ["--from", "2025-03-04T09:00", "--to", "2025-03-04T11:00"];
    let record = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_affluent"))
            .arg("--project")
            .arg(dir.path())
            .args(["record", "footfall_api"])
            .args(range)
            .args(extra)
            .env("FOOTFALL_API_URL", &url)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    // The source has no `cassette`: say where to write.
    let o = record(&[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("has no `cassette`: add `cassette = \"cassettes/footfall_api.json\"`"),
        "{}",
        text(&o)
    );
    // 21 agency counters × 2 hours.
    let o = record(&["--output", "cassettes/api.json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("recorded 42 answer(s)"), "{}", text(&o));
    sim.kill().unwrap();
    sim.wait().unwrap();
    let cassette: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("cassettes/api.json")).unwrap())
            .unwrap();
    assert_eq!(cassette["source"], "footfall_api");
    assert_eq!(cassette["interactions"].as_array().unwrap().len(), 42);
    // The recording was a real run: its answers are landed, and load.
    let o = affluent(dir.path(), &["load", "footfall_api"]);
    assert!(o.status.success(), "{}", text(&o));
    let live = query(
        dir.path(),
        "SELECT count(*), sum(visitor_count) FROM api_events",
    );

    // A fresh data directory replays the cassette: the simulator is gone, the rows are the same.
    std::fs::remove_dir_all(dir.path().join(".affluent")).unwrap();
    let file = dir.path().join("affluent.toml");
    let toml = std::fs::read_to_string(&file).unwrap().replace(
        "[sources.footfall_api]\n",
        "[sources.footfall_api]\ncassette = \"cassettes/api.json\"\nreplay = \"always\"\n",
    );
    std::fs::write(&file, toml).unwrap();
    let o = affluent(
        dir.path(),
        &[
            "ingest",
            "footfall_api",
            range[0],
            range[1],
            range[2],
            range[3],
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("42 requests") && text(&o).contains("(replayed from "),
        "{}",
        text(&o)
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*), sum(visitor_count) FROM api_events"
        ),
        live
    );
    // Another day: `date_time` follows the interval, so the recordings of the other parameters
    // answer; their records name their own hour, so no row is invented.
    let o = affluent(
        dir.path(),
        &[
            "ingest",
            "footfall_api",
            "--from",
            "2025-03-05T09:00",
            "--to",
            "2025-03-05T10:00",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("replayed from recordings made for other values of date_time"),
        "{}",
        text(&o)
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*), sum(visitor_count) FROM api_events"
        ),
        live
    );
}

/// examples/culture under `affluent run`, offline (every source replays its cassette): the tick
/// runs the four sources and the models they trigger, and one summary email arrives at a local
/// SMTP server, with what each fetched and the alerts fired.
#[test]
fn culture_runs_a_tick_offline_and_mails_one_summary() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (smtp_url, mails) = rt.block_on(affluent_notify::testing::smtp_sink());
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/culture");
    for file in ["affluent.toml", "countries.csv"] {
        std::fs::copy(example.join(file), dir.path().join(file)).unwrap();
    }
    copy_dir(&example.join("cassettes"), &dir.path().join("cassettes"));
    copy_dir(&example.join("geo"), &dir.path().join("geo"));
    // validate says which sources replay, and why.
    let o = Command::new(env!("CARGO_BIN_EXE_affluent"))
        .arg("--project")
        .arg(dir.path())
        .arg("validate")
        .env_remove("TICKETMASTER_API_KEY")
        .env_remove("FOOTBALL_DATA_TOKEN")
        .env_remove("AFFLUENT_OFFLINE")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("source `events` replays cassettes/events.json (TICKETMASTER_API_KEY unset or empty): it calls no API")
            && !text(&o).contains("source `economy` replays"),
        "{}",
        text(&o)
    );
    // Recording calls the API: not without its key.
    let o = Command::new(env!("CARGO_BIN_EXE_affluent"))
        .arg("--project")
        .arg(dir.path())
        .args(["record", "events"])
        .env_remove("TICKETMASTER_API_KEY")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o)
            .contains("recording `events` calls its API, which needs TICKETMASTER_API_KEY: set it"),
        "{}",
        text(&o)
    );
    let o = Command::new(env!("CARGO_BIN_EXE_affluent"))
        .arg("--project")
        .arg(dir.path())
        .args(["run", "--until", "now", "--no-serve"])
        .env("AFFLUENT_OFFLINE", "1")
        .env("CULTURE_SMTP_URL", &smtp_url)
        .env("CULTURE_MAIL_TO", "culture-team@example.org")
        .env_remove("TICKETMASTER_API_KEY")
        .env_remove("FOOTBALL_DATA_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // The run says which sources replay, and why.
    assert!(
        text(&o).contains(
            "source:events: 0 */3 * * *, REPLAYING cassettes/events.json (TICKETMASTER_API_KEY unset or empty): no API call"
        ),
        "{}",
        text(&o)
    );
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1, "one summary for the tick: {mails:?}");
    // As a reader sees it: header lines unfolded, quoted-printable decoded.
    let raw = mails[0]
        .replace("\r\n", "\n")
        .replace("=\n", "")
        .replace("\n ", " ");
    let mut bytes = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        match raw.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
            Some(Ok(b)) if raw.as_bytes()[i] == b'=' => {
                bytes.push(b);
                i += 3;
            }
            _ => {
                bytes.push(raw.as_bytes()[i]);
                i += 1;
            }
        }
    }
    let mail = String::from_utf8_lossy(&bytes).into_owned();
    for line in [
        "To: culture-team@example.org",
        "Subject: [affluent] culture: run of ",
        "all done, 3 alert(s)",
        "- source:events: 22 record(s) replayed from cassettes/events.json (2 answer(s), no API call), 22 row(s) loaded",
        "- source:matches: 46 record(s) replayed from cassettes/matches.json (2 answer(s), no API call), 46 row(s) loaded",
        "- source:economy: 99 record(s) replayed from cassettes/economy.json (2 answer(s), no API call), 99 row(s) loaded",
        "- source:countries: 250 record(s) fetched in 1 request(s), 250 row(s) loaded",
        "- model:standings: 23 row(s) written",
        "Alerts fired (3):",
        "- Brazil : croissance du PIB inhabituelle en 2020 (-21,2 %, médiane des 8 années précédentes -1,48 %)",
    ] {
        assert!(mail.contains(line), "{line:?} not in\n{mail}");
    }
}

#[test]
fn query_stops_at_the_bounds_of_the_project_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("affluent.toml"),
        "[query]\ntimeout = \"1s\"\nmemory = \"32MiB\"\nmax_rows = 5\n",
    )
    .unwrap();
    let o = affluent(
        dir.path(),
        &["query", "SELECT count(*) FROM range(100000000000)"],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(
            "error: query stopped after 1s, the limit of `timeout` in [query] of affluent.toml"
        ),
        "{}",
        text(&o)
    );
    let o = affluent(dir.path(), &["query", "SELECT * FROM range(6)"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("query returns more than 5 rows, the limit of `max_rows`"),
        "{}",
        text(&o)
    );
    let o = affluent(
        dir.path(),
        &["query", "SELECT length(repeat('x', 2000000000))"],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("query needs more than 32MiB of memory, the limit of `memory`"),
        "{}",
        text(&o)
    );
    let o = affluent(
        dir.path(),
        &["query", "--format", "csv", "SELECT * FROM range(5)"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "value\n0\n1\n2\n3\n4\n");
}
