//! The PostgreSQL sink under SIGKILL: `affluent sinks run` killed at random moments while it
//! copies a 150k-row table (and its later versions) into the machine's PostgreSQL. After every
//! kill, PostgreSQL holds exactly the rows of the version its progress names (or nothing);
//! after a last run, exactly the table's rows: none lost, none doubled.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{affluent, query, text};

fn psql(url: &str, sql: &str) -> String {
    let o = Command::new("psql")
        .arg(url)
        .args(["-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql (PostgreSQL's client) is needed by this test");
    assert!(
        o.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Batch `k`: ids `[k * 20_000, k * 20_000 + ROWS)`, so each later batch updates ids of the
/// one before and adds new ones; `v` says which batch wrote a row last.
fn write_batch(project: &Path, k: usize, rows: usize) {
    let mut csv = String::from("id,name,v\n");
    for i in 0..rows {
        let id = k * 20_000 + i;
        csv.push_str(&format!(
            "{id},\"name {id}, \"\"quoted\"\"\ttab\",{}.5\n",
            k * 1000 + i % 7
        ));
    }
    std::fs::write(project.join("data").join(format!("batch{k}.csv")), csv).unwrap();
}

/// The latest Delta version of a table, from its log.
fn delta_version(project: &Path, table: &str) -> i64 {
    std::fs::read_dir(
        project
            .join(".affluent/tables")
            .join(table)
            .join("_delta_log"),
    )
    .unwrap()
    .filter_map(|e| {
        let name = e.ok()?.file_name().into_string().ok()?;
        name.strip_suffix(".json")?.parse::<i64>().ok()
    })
    .max()
    .unwrap()
}

#[test]
fn a_sink_killed_at_any_point_neither_loses_nor_doubles_a_row() {
    let base = std::env::var("AFFLUENT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("affluent_sink_kill_{}", std::process::id());
    psql(&base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));

    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("p");
    std::fs::create_dir_all(project.join("data")).unwrap();
    std::fs::write(
        project.join("affluent.toml"),
        format!(
            r#"
[sources.points]
type = "csv"
path = "data/*.csv"
columns = {{ id = "int", name = "string", v = "float" }}

[tables.points]
source = "points"
write = "merge"
primary_key = ["id"]

[sinks.warehouse]
type = "postgres"
url = "${{PG_URL:-}}"
schema = "{schema}"
tables = ["points"]
"#
        ),
    )
    .unwrap();
    // The sink is off for the loads (its url is unset), on for `sinks run`: the test's runs
    // are the only writers.

    // Rows at each Delta version the test made (compactions add versions with the same rows).
    let mut rows_at: BTreeMap<i64, i64> = BTreeMap::new();
    let mut batches = 0;
    let mut add_batch = |rows_at: &mut BTreeMap<i64, i64>| {
        write_batch(&project, batches, 150_000);
        batches += 1;
        let o = affluent(&project, &["ingest", "points"]);
        assert!(o.status.success(), "{}", text(&o));
        let n: i64 = query(&project, "SELECT count(*) AS n FROM points")
            .lines()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        rows_at.insert(delta_version(&project, "points"), n);
    };
    add_batch(&mut rows_at);

    let check = |when: &str, rows_at: &BTreeMap<i64, i64>| {
        let has_progress = psql(
            &base,
            &format!("SELECT to_regclass('{schema}.affluent_sink_progress') IS NOT NULL"),
        );
        let progress = if has_progress == "t" {
            psql(
                &base,
                &format!(
                    "SELECT delta_version FROM {schema}.affluent_sink_progress WHERE table_name = 'points'"
                ),
            )
        } else {
            String::new()
        };
        let exists = psql(
            &base,
            &format!("SELECT to_regclass('{schema}.points') IS NOT NULL"),
        );
        if progress.is_empty() {
            assert_eq!(exists, "f", "{when}: a table without progress");
            return None;
        }
        let version: i64 = progress.parse().unwrap();
        let expected = rows_at
            .range(..=version)
            .next_back()
            .map(|(_, n)| *n)
            .unwrap();
        let counted = psql(
            &base,
            &format!("SELECT count(*) || ' ' || count(DISTINCT id) FROM {schema}.points"),
        );
        assert_eq!(
            counted,
            format!("{expected} {expected}"),
            "{when}: PostgreSQL holds other rows than version {version}"
        );
        Some(version)
    };

    // Delays spread over a run's length, from a fixed seed (SplitMix64).
    let mut seed: u64 = 0x005e_ed0f_514c;
    let mut next = move || {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let started = Instant::now();
    // For each version: runs killed after a growing delay until one ends by itself.
    let mut kills = 0;
    let mut written_versions = std::collections::BTreeSet::new();
    let mut last_log = String::new();
    for round in 0..3 {
        if round > 0 {
            add_batch(&mut rows_at);
        }
        let mut delay = 20 + next() % 200;
        for attempt in 0.. {
            assert!(attempt < 40, "round {round}: no run ended by itself");
            let log = dir.path().join(format!("run{round}-{attempt}.log"));
            let mut child = Command::new(env!("CARGO_BIN_EXE_affluent"))
                .arg("--project")
                .arg(&project)
                .args(["sinks", "run"])
                .env("PG_URL", &base)
                .env_remove("RUST_LOG")
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(delay));
            if let Some(status) = child.try_wait().unwrap() {
                last_log = std::fs::read_to_string(&log).unwrap_or_default();
                assert!(status.success(), "{last_log}");
                check(&format!("round {round}, after a whole run"), &rows_at);
                break;
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
            if let Some(v) = check(&format!("round {round}, killed after {delay} ms"), &rows_at) {
                written_versions.insert(v);
            }
            delay = delay * 3 / 2 + next() % 100;
        }
    }
    assert!(kills >= 6, "only {kills} kills cut a run short");
    // The last version went as changes (rows added since the version written), whichever run
    // wrote it: the last whole one, or a killed one after its commit (the whole one then found
    // it up to date). The progress row says which.
    let scope = psql(
        &base,
        &format!("SELECT scope FROM {schema}.affluent_sink_progress WHERE table_name = 'points'"),
    );
    assert!(
        scope.starts_with("changes"),
        "the last version was written as changes, not {scope:?}: {last_log}"
    );

    std::fs::write(project.join(".env"), format!("PG_URL={base}\n")).unwrap();
    let o = affluent(&project, &["sinks", "run"]);
    assert!(o.status.success(), "{}", text(&o));
    let latest = delta_version(&project, "points");
    assert_eq!(check("after the last run", &rows_at), Some(latest));
    // Values as well as counts: the same sum of `v` and of the names' lengths.
    let delta = query(
        &project,
        "SELECT CAST(sum(v * 10) AS BIGINT) AS v, sum(length(name)) AS l FROM points",
    );
    let delta = delta.lines().nth(1).unwrap().replace(',', " ");
    let pg = psql(
        &base,
        &format!(
            "SELECT CAST(sum(v * 10) AS BIGINT) || ' ' || sum(length(name)) FROM {schema}.points"
        ),
    );
    assert_eq!(pg, delta);
    let o = affluent(&project, &["sinks", "status"]);
    assert!(text(&o).contains("(up to date)"), "{}", text(&o));
    eprintln!(
        "{kills} kills cut a run short; versions seen written between kills: {written_versions:?}; {:?} in all",
        started.elapsed()
    );
    psql(&base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
}
