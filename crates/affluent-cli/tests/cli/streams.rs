//! `[streams.NAME]` end to end: the Vélib simulator polled every (simulated) minute over HTTP,
//! each poll landed and loaded into an append table, the stream's 3-minute windows per station
//! written to Delta; checked against the definitions applied to the simulator's own record of
//! what each poll saw, with and without SIGKILLs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use affluent_simulate::velib::Seen;
use jiff::{SignedDuration, Timestamp};

use super::{affluent, kill_at_failpoint, query, text};

const SIZE: i64 = 180_000;
const DELAY: i64 = 120_000;
const LATENESS: i64 = 300_000;

fn project(dir: &Path, url: &str) {
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/velib/geo/paris_arrondissements.geojson"),
        dir.join("arrondissements.geojson"),
    )
    .unwrap();
    std::fs::write(
        dir.join("affluent.toml"),
        format!(
            r#"name = "velib-streams"

[sources.velib]
type = "rest"
every = "1m"
catchup = false
change_detection = false
client.base_url = "{url}/api/explore/v2.1/catalog/datasets/"
endpoint.path = "velib-disponibilite-en-temps-reel/exports/json"

[tables.station_status]
source = "velib"
[tables.station_status.columns]
stationcode = "stationcode"
duedate = {{ path = "duedate", type = "timestamp" }}
mechanical = {{ path = "mechanical", type = "int" }}
ebike = {{ path = "ebike", type = "int" }}
docks = {{ path = "numdocksavailable", type = "int" }}

[zones.arrondissements]
file = "arrondissements.geojson"
name = "l_ar"

[streams.station_3min]
input = "station_status"
key = "stationcode"
time = "duedate"
size = "3m"
delay = "2m"
lateness = "5m"
[streams.station_3min.aggregates]
mechanical = "avg(mechanical)"
ebike = "avg(ebike)"
docks = "avg(docks)"
reports = "count(docks)"
"#
        ),
    )
    .unwrap();
}

/// A window as the tables hold it: (station, start in seconds) → averages, reports, events,
/// late, duplicates.
type Windows = BTreeMap<(String, i64), ([f64; 3], i64, i64, i64, i64)>;

#[derive(Debug, Default, PartialEq)]
struct Expected {
    reports: usize,
    finals: Windows,
    open: Windows,
    duplicates: u64,
    dropped: u64,
    late: u64,
}

/// The windows the definitions give for what the polls saw, in the order they saw it: the
/// watermark is the latest accepted report time minus the delay; a (station, time) already
/// seen is a duplicate; a report whose window ended `LATENESS` before the watermark is dropped;
/// one older than the watermark is late.
fn expected(seen: &[Seen]) -> Expected {
    #[derive(Default)]
    struct W {
        sum: [f64; 3],
        n: i64,
        late: i64,
        dups: i64,
    }
    let mut out = Expected {
        reports: seen.len(),
        ..Expected::default()
    };
    let mut max_t: Option<i64> = None;
    let mut latest: HashMap<&str, i64> = HashMap::new();
    let mut taken: HashSet<(&str, i64)> = HashSet::new();
    let mut windows: BTreeMap<(String, i64), W> = BTreeMap::new();
    for s in seen {
        let (k, t) = (s.stationcode.as_str(), s.reported_at * 1000);
        let wm = max_t.map(|m| m - DELAY);
        let start = t.div_euclid(SIZE) * SIZE;
        let closed = wm.is_some_and(|w| start + SIZE + LATENESS <= w);
        if latest.get(k) == Some(&t) || (taken.contains(&(k, t)) && !closed) {
            out.duplicates += 1;
            if !closed && let Some(w) = windows.get_mut(&(k.to_string(), start)) {
                w.dups += 1;
            }
            continue;
        }
        let newest = latest.entry(k).or_insert(t);
        *newest = (*newest).max(t);
        if closed {
            out.dropped += 1;
            continue;
        }
        let late = wm.is_some_and(|w| t < w);
        out.late += u64::from(late);
        let w = windows.entry((k.to_string(), start)).or_default();
        let mechanical = f64::from(s.bikes - s.ebike);
        for (sum, v) in w
            .sum
            .iter_mut()
            .zip([mechanical, f64::from(s.ebike), f64::from(s.docks)])
        {
            *sum += v;
        }
        w.n += 1;
        w.late += i64::from(late);
        taken.insert((k, t));
        max_t = Some(max_t.map_or(t, |m| m.max(t)));
    }
    let wm = max_t.map(|m| m - DELAY);
    for ((k, start), w) in windows {
        let n = w.n as f64;
        let row = (
            [w.sum[0] / n, w.sum[1] / n, w.sum[2] / n],
            w.n,
            w.n,
            w.late,
            w.dups,
        );
        let closed = wm.is_some_and(|m| start + SIZE + LATENESS <= m);
        let into = if closed {
            &mut out.finals
        } else {
            &mut out.open
        };
        into.insert((k, start / 1000), row);
    }
    out
}

fn windows_of(project: &Path, table: &str) -> Windows {
    let csv = query(
        project,
        &format!(
            "SELECT stationcode, to_unixtime(window_start) AS s, mechanical, ebike, docks, reports, events, late, duplicates FROM {table} ORDER BY stationcode, s"
        ),
    );
    let mut out = Windows::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let num = |i: usize| f[i].parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
        let int = |i: usize| f[i].parse::<i64>().unwrap_or_else(|_| panic!("{line}"));
        let previous = out.insert(
            (f[0].to_string(), int(1)),
            ([num(2), num(3), num(4)], int(5), int(6), int(7), int(8)),
        );
        assert!(previous.is_none(), "window written twice: {line}");
    }
    out
}

fn assert_same(what: &str, got: &Windows, want: &Windows) {
    let missing: Vec<_> = want
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !want.contains_key(*k))
        .take(5)
        .collect();
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} windows, {} expected; missing {missing:?}, not expected {extra:?}",
        got.len(),
        want.len()
    );
    for ((key, g), (wkey, w)) in got.iter().zip(want) {
        assert_eq!(key, wkey, "{what}");
        let close = g.0.iter().zip(&w.0).all(|(a, b)| (a - b).abs() < 1e-9);
        assert!(
            close && (g.1, g.2, g.3, g.4) == (w.1, w.2, w.3, w.4),
            "{what} {key:?}: {g:?}, expected {w:?}"
        );
    }
}

struct Run {
    _runtime: tokio::runtime::Runtime,
    server: affluent_simulate::Server,
    polls: Vec<Timestamp>,
}

fn simulator(minutes: i64) -> Run {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let t0: Timestamp = "2025-03-03T05:00:00Z".parse().unwrap();
    let server = runtime
        .block_on(affluent_simulate::Server::velib(
            0,
            affluent_simulate::Options {
                seed: 3,
                clock: affluent_simulate::Clock::Fixed(t0),
                ..affluent_simulate::Options::default()
            },
        ))
        .unwrap();
    let polls = (0..minutes)
        .map(|m| t0 + SignedDuration::from_mins(m))
        .collect();
    Run {
        _runtime: runtime,
        server,
        polls,
    }
}

fn check(project: &Path, want: &Expected, when: &str) {
    let rows = query(project, "SELECT count(*) AS n FROM station_status");
    assert_eq!(
        rows,
        format!("n\n{}\n", want.reports),
        "{when}: the input table"
    );
    let finals = windows_of(project, "station_3min");
    if finals.len() != want.finals.len() && std::env::var("DEBUG_STREAM").is_ok() {
        let open = windows_of(project, "station_3min_open");
        for k in want.finals.keys().filter(|k| !finals.contains_key(*k)) {
            eprintln!(
                "missing {k:?}: want {:?}, open has {:?}",
                want.finals[k],
                open.get(k)
            );
            eprintln!(
                "{}",
                query(
                    project,
                    &format!(
                        "SELECT duedate, mechanical, ebike, docks, _affluent_entry FROM station_status WHERE stationcode = '{}' ORDER BY _affluent_entry",
                        k.0
                    )
                )
            );
        }
        eprintln!("{}", text(&affluent(project, &["streams", "status"])));
        eprintln!(
            "{}",
            query(
                project,
                "SELECT version, operation FROM (SELECT 1 AS version, 'x' AS operation)"
            )
        );
        let _ = std::process::Command::new("ls")
            .arg(project.join(".affluent/tables/station_status/_delta_log"))
            .status();
        let _ = std::process::Command::new("ls")
            .arg(project.join(".affluent/tables/station_3min/_delta_log"))
            .status();
    }
    assert_same(&format!("{when}: final windows"), &finals, &want.finals);
    assert_same(
        &format!("{when}: open windows"),
        &windows_of(project, "station_3min_open"),
        &want.open,
    );
    let o = affluent(project, &["streams", "status"]);
    let status = text(&o);
    assert!(
        status.contains(&format!(
            "({} late), {} duplicates, {} too late",
            want.late, want.duplicates, want.dropped
        )),
        "{when}: {status}"
    );
}

#[test]
fn stream_windows_of_polled_stations_follow_the_definitions_and_the_simulators_truth() {
    let run = simulator(20);
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &run.server.url());
    for poll in &run.polls {
        run.server.set_time(*poll);
        let o = affluent(dir.path(), &["ingest", "velib"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let truth = affluent_simulate::Velib::new(3).truth(&run.polls);
    let want = expected(&truth);
    // The simulator's own count of repeated reports is the stream's duplicates.
    assert_eq!(
        want.duplicates,
        truth.iter().filter(|s| s.repeat).count() as u64
    );
    assert!(want.duplicates > 1000, "{want:?}");
    assert!(!want.finals.is_empty() && !want.open.is_empty());
    eprintln!(
        "{} reports seen: {} final windows, {} open, {} duplicates, {} late, {} too late",
        truth.len(),
        want.finals.len(),
        want.open.len(),
        want.duplicates,
        want.late,
        want.dropped
    );
    assert!(
        want.late > 0 && want.dropped > 0,
        "the polls saw late reports and too late ones"
    );
    check(dir.path(), &want, "after 20 polls");
    // Zones: the arrondissement of a point, NULL outside Paris; an unknown set is an error.
    assert_eq!(
        query(
            dir.path(),
            "SELECT zone_of('arrondissements', 2.275725, 48.865983) AS a, zone_of('arrondissements', 2.24, 48.835) AS b"
        ),
        "a,b\n16ème Ardt,\n"
    );
    let o = affluent(
        dir.path(),
        &["query", "SELECT zone_of('nowhere', 2.3, 48.8)"],
    );
    assert!(
        !o.status.success() && text(&o).contains("no zones `nowhere`"),
        "{}",
        text(&o)
    );
    // Nothing new: running again changes nothing.
    let o = affluent(dir.path(), &["streams", "run"]);
    assert!(text(&o).contains("nothing new"), "{}", text(&o));
    check(dir.path(), &want, "after a run with nothing new");
    // A replay of the landing rewrites the input's rows: the windows are computed again from
    // the whole table, and come out the same.
    let o = affluent(dir.path(), &["landing", "replay", "velib"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = affluent(dir.path(), &["streams", "run"]);
    assert!(
        text(&o).contains("computed again from the whole table")
            || text(&o).contains("computing the windows again"),
        "{}",
        text(&o)
    );
    check(dir.path(), &want, "after a replay of the input");

    // The same polls landed first and loaded in one commit: the stream still reads them in
    // the order they were fetched.
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &run.server.url());
    for poll in &run.polls {
        run.server.set_time(*poll);
        let o = affluent(dir.path(), &["ingest", "velib", "--no-load"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let o = affluent(dir.path(), &["load"]);
    assert!(o.status.success(), "{}", text(&o));
    check(dir.path(), &want, "after one load of every poll");
}

#[test]
fn a_stream_killed_at_any_point_writes_each_window_once() {
    let run = simulator(20);
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &run.server.url());
    let model = affluent_simulate::Velib::new(3);
    let mut polled = 0;
    let poll_two = |polled: &mut usize| {
        for poll in &run.polls[*polled..*polled + 2] {
            run.server.set_time(*poll);
            let o = affluent(dir.path(), &["ingest", "velib", "--no-load"]);
            assert!(o.status.success(), "{}", text(&o));
        }
        *polled += 2;
    };
    let load = |failpoint: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_affluent"));
        cmd.arg("--project")
            .arg(dir.path())
            .arg("load")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(f) = failpoint {
            cmd.env("AFFLUENT_FAILPOINT", f);
        }
        cmd.spawn().unwrap()
    };
    // A killed load is finished by the next one, which runs the stream after it.
    let recover_and_check = |polled: usize, when: &str| {
        let o = affluent(dir.path(), &["load"]);
        assert!(o.status.success(), "{when}: {}", text(&o));
        let o = affluent(dir.path(), &["streams", "run"]);
        assert!(o.status.success(), "{when}: {}", text(&o));
        check(
            dir.path(),
            &expected(&model.truth(&run.polls[..polled])),
            when,
        );
    };
    // Killed where it matters: after the final windows are committed and before the
    // checkpoint (on the first run, which computes them from the whole table, and on a later
    // one, which appends), and after the open windows are written.
    for point in [
        "stream:after_windows",
        "stream:after_open",
        "stream:after_windows",
    ] {
        poll_two(&mut polled);
        kill_at_failpoint(load(Some(point)), point);
        recover_and_check(polled, &format!("killed at {point}"));
    }
    // And at random moments of a load and its stream, as long as an uninterrupted one takes.
    poll_two(&mut polled);
    let started = std::time::Instant::now();
    let mut child = load(None);
    child.wait().unwrap();
    let load_ms = started.elapsed().as_millis() as u64;
    // A failing seed is replayed with AFFLUENT_TEST_KILL_SEED.
    let mut seed = std::env::var("AFFLUENT_TEST_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill delays seed {seed} (AFFLUENT_TEST_KILL_SEED), uninterrupted load {load_ms} ms");
    let mut interrupted = 0;
    let mut round = 0;
    while polled < run.polls.len() {
        poll_two(&mut polled);
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = (seed >> 33) % (load_ms + 1);
        let mut child = load(None);
        std::thread::sleep(std::time::Duration::from_millis(delay));
        if child.try_wait().unwrap().is_none() {
            interrupted += 1;
        }
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        round += 1;
        if round % 3 == 0 {
            recover_and_check(polled, &format!("round {round}, killed after {delay} ms"));
        }
    }
    eprintln!("{interrupted} of {round} random kills interrupted a running load");
    assert!(
        interrupted > 0,
        "no kill hit a running load: the test proved nothing"
    );
    let o = affluent(dir.path(), &["load"]);
    assert!(o.status.success(), "{}", text(&o));
    recover_and_check(polled, &format!("after {interrupted} random kills"));
}

#[test]
fn the_velib_demo_builds_its_windows_zones_and_statistics_offline() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("velib");
    super::copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/velib"),
        &project,
    );
    let o = affluent(
        &project,
        &[
            "demo",
            "--no-run",
            "--hours",
            "1",
            "--until",
            "2025-03-03T09:00:00Z",
        ],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("60 polls landed") && t.contains("the dashboard is complete"),
        "{t}"
    );
    assert!(
        t.contains("stream station_3min: read versions 0..=0"),
        "{t}"
    );
    assert_eq!(
        query(
            &project,
            "SELECT count(*) AS n, count(DISTINCT zone) FILTER (WHERE zone LIKE '%Ardt') AS ardts FROM stations"
        ),
        "n,ardts\n1471,20\n"
    );
    // The polygons agree with the dataset's own commune for every station but five on the
    // boundary (four labelled with the neighbouring commune though inside Paris's limits, one in
    // the Bois de Vincennes labelled Paris but just outside the 12th's polygon).
    assert_eq!(
        query(
            &project,
            "SELECT stationcode FROM stations WHERE (commune = 'Paris') <> (zone LIKE '%Ardt') ORDER BY 1"
        ),
        "stationcode\n12126\n13121\n14023\n14116\n19043\n"
    );
    let windows = query(
        &project,
        "SELECT count(*) AS n FROM zone_3min WHERE is_final",
    );
    let n: i64 = windows.lines().nth(1).unwrap().parse().unwrap();
    assert!(n > 20 * 10, "{windows}");
    // The seed's model: learnt from the windows, better than chance on the held-out ones, a
    // prediction for every station's current window (stations without docks left out).
    let model = query(
        &project,
        "SELECT train_rows, test_rows, roc_auc FROM ml_models WHERE model = 'full_in_30min'",
    );
    let fields: Vec<f64> = model
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("not trained:\n{t}"))
        .split(',')
        .map(|f| f.parse().unwrap())
        .collect();
    eprintln!("full_in_30min: {model}");
    assert!(fields[0] > 1000.0 && fields[1] > 200.0, "{model}");
    assert!(fields[2] > 0.6, "no better than chance: {model}");
    assert_eq!(
        query(&project, "SELECT count(*) AS n FROM full_soon"),
        query(
            &project,
            "SELECT count(DISTINCT stationcode) AS n FROM (SELECT * FROM station_3min UNION ALL SELECT * FROM station_3min_open) WHERE mechanical + ebike + docks > 0"
        ),
        "every station with docks has a prediction"
    );
}

/// Starts `affluent streams work` on a project, its output to `log`.
fn worker(project: &Path, log: &Path, failpoint: Option<&str>) -> std::process::Child {
    let out = std::fs::File::create(log).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_affluent"));
    cmd.arg("--project")
        .arg(project)
        .args(["streams", "work"])
        .env("RUST_LOG", "affluent_pipeline=debug")
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    if let Some(f) = failpoint {
        cmd.env("AFFLUENT_FAILPOINT", f);
    }
    cmd.spawn().unwrap()
}

#[test]
fn two_workers_on_one_nats_consumer_share_the_windows_and_one_killed_loses_nothing() {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string());
    let run = simulator(20);
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &run.server.url());
    // A project of its own on the server: its subjects and JetStream stream are new.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("velib-bus-{}-{nanos}", std::process::id());
    let file = dir.path().join("affluent.toml");
    let text_of = std::fs::read_to_string(&file)
        .unwrap()
        .replace("name = \"velib-streams\"", &format!("name = \"{name}\""));
    std::fs::write(
        &file,
        format!(
            "{text_of}\n[bus]\nkind = \"nats\"\nurl = \"{url}\"\npartitions = 4\nack_wait = \"2s\"\nlocal_worker = false\n"
        ),
    )
    .unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = |n: &str| logs.path().join(n);
    let read = |n: &str| std::fs::read_to_string(log(n)).unwrap_or_default();
    let mut polled = 0;
    let poll = |polled: &mut usize| {
        run.server.set_time(run.polls[*polled]);
        let o = affluent(dir.path(), &["ingest", "velib"]);
        assert!(o.status.success(), "{}", text(&o));
        *polled += 1;
    };
    // A first worker, alone, stops where its first final windows are committed and its
    // partition's state is not yet saved, and is killed there.
    let mut first = worker(dir.path(), &log("first.log"), Some("stream:after_windows"));
    let reached = |wait_s: u64| {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(wait_s);
        while std::time::Instant::now() < until {
            if read("first.log").contains("failpoint stream:after_windows reached") {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    };
    while polled < 15 && !reached(if polled > 8 { 10 } else { 1 }) {
        poll(&mut polled);
    }
    assert!(
        reached(30),
        "the first worker never wrote final windows:\n{}",
        read("first.log")
    );
    first.kill().unwrap(); // SIGKILL, its message neither acknowledged nor in its state
    first.wait().unwrap();
    // Two workers on the same durable consumer share the rest, the killed one's message
    // among it (handed out again once `ack_wait` passed).
    let mut second = worker(dir.path(), &log("second.log"), None);
    let mut third = worker(dir.path(), &log("third.log"), None);
    while polled < run.polls.len() {
        poll(&mut polled);
    }
    let o = affluent(dir.path(), &["streams", "work", "--until-idle"]);
    assert!(o.status.success(), "{}", text(&o));
    for w in [&mut second, &mut third] {
        w.kill().unwrap();
        w.wait().unwrap();
    }
    let (second_log, third_log) = (read("second.log"), read("third.log"));
    for (which, log) in [("second", &second_log), ("third", &third_log)] {
        assert!(
            log.contains("message Done"),
            "the {which} worker processed nothing:\n{log}"
        );
    }
    eprintln!(
        "messages processed: second worker {}, third {}",
        second_log.matches("message Done").count(),
        third_log.matches("message Done").count()
    );
    // Exactly the windows of one engine over the whole stream: each once.
    let truth = affluent_simulate::Velib::new(3).truth(&run.polls);
    let want = expected(&truth);
    check(dir.path(), &want, "two workers on NATS, one killed");

    // A replay of the landing rewrites the input: the stream starts again (tables cleared,
    // a new epoch, the whole input published) and the windows come out the same.
    let o = affluent(dir.path(), &["landing", "replay", "velib"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = affluent(dir.path(), &["streams", "run"]);
    assert!(
        o.status.success() && text(&o).contains("published versions 0..="),
        "{}",
        text(&o)
    );
    let o = affluent(dir.path(), &["streams", "work", "--until-idle"]);
    assert!(o.status.success(), "{}", text(&o));
    check(dir.path(), &want, "started again on NATS after a replay");

    // The server keeps nothing of the test.
    let id = std::fs::read_to_string(dir.path().join(".affluent/state/bus-id")).unwrap();
    run._runtime.block_on(async {
        let client = async_nats::connect(&url).await.unwrap();
        let stream = format!("AFFLUENT_{name}-{}_station_3min", id.trim());
        async_nats::jetstream::new(client)
            .delete_stream(&stream)
            .await
            .unwrap();
    });
}
