//! `affluent run` against a local HTTP server that knows the true records of every interval:
//! SIGKILLed at random moments and restarted, faced with 429/500/resets, and with an outage.
//! After each, every record is in its table exactly once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{query, text};

/// Records per second of data time.
const PER_SECOND: i64 = 3;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub path: String,
    /// Status sent; 0 for a reset connection.
    pub status: u16,
}

#[derive(Debug, Default)]
struct State {
    down: bool,
    /// Share of requests answered with a fault (429, 500, reset in turn).
    fault_rate: f64,
    faults: u64,
    rng: u64,
    log: Vec<Seen>,
}

/// `GET /records?start=UNIX&end=UNIX` answers `{"records": [...]}`: `PER_SECOND` records per
/// second of `[start, end)`, ids `second * 10 + k`.
pub struct FeedServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl FeedServer {
    pub fn start(fault_rate: f64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State {
            fault_rate,
            rng: 0x9e37_79b9_7f4a_7c15,
            ..State::default()
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        Self { port, state }
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().expect("lock").down = down;
    }

    pub fn log(&self) -> Vec<Seen> {
        self.state.lock().expect("lock").log.clone()
    }

    pub fn faults(&self) -> u64 {
        self.state.lock().expect("lock").faults
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let fault = {
        let mut s = state.lock().expect("lock");
        let down = s.down;
        let fault = if down {
            Some(0)
        } else {
            s.rng ^= s.rng << 13;
            s.rng ^= s.rng >> 7;
            s.rng ^= s.rng << 17;
            let draw = (s.rng % 10_000) as f64 / 10_000.0;
            if draw < s.fault_rate {
                s.faults += 1;
                Some([429u16, 500, 0][(s.faults % 3) as usize])
            } else {
                None
            }
        };
        s.log.push(Seen {
            at: Instant::now(),
            path: path.clone(),
            status: fault.unwrap_or(200),
        });
        fault
    };
    let mut stream = stream;
    match fault {
        // Unreachable or reset: close without an answer.
        Some(0) => {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        Some(429) => {
            let body = "{\"error\": \"slow down\"}";
            let _ = write!(
                stream,
                "HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        Some(status) => {
            let body = "{\"error\": \"internal\"}";
            let _ = write!(
                stream,
                "HTTP/1.1 {status} Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        None => {
            let param = |name: &str| -> Option<i64> {
                path.split(['?', '&'])
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                    .and_then(|v| v.parse().ok())
            };
            let (Some(start), Some(end)) = (param("start"), param("end")) else {
                let body = "{\"detail\": \"start and end are required\"}";
                let _ = write!(
                    stream,
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                return;
            };
            let records: Vec<String> = (start..end)
                .flat_map(|t| {
                    (0..PER_SECOND)
                        .map(move |k| format!("{{\"id\": {}, \"t\": {t}, \"v\": {k}}}", t * 10 + k))
                })
                .collect();
            let body = format!("{{\"records\": [{}]}}", records.join(","));
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    }
    let _ = stream.flush();
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
}

/// A project polling the feed every 2 s since `start` (Unix seconds), into a merge table.
pub fn feed_project(dir: &Path, port: u16, start: i64, rate_limit: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let start = jiff::Timestamp::from_second(start).expect("ts");
    std::fs::write(
        dir.join("affluent.toml"),
        format!(
            r#"
# The lease is renewed every lease/3; on a loaded CI machine a 3 s lease was once outlived by
# a starved heartbeat, and the other process fetched that interval again (idempotent, but this
# file counts fetches). Claims of crashed processes on this host are reaped at once anyway.
[scheduler]
lease = "15s"
retry_initial = "200ms"
retry_max = "1s"
concurrency = 2
shutdown_grace = "2s"

[sources.feed]
type = "rest"
every = "2s"
start_date = "{start}"
max_active = 2
client.base_url = "http://127.0.0.1:{port}"
endpoint.path = "/records"
endpoint.params = {{ start = "{{interval.start:unix}}", end = "{{interval.end:unix}}" }}
endpoint.data_selector = "records"
retry = {{ max_attempts = 3, initial_backoff_ms = 100, max_backoff_secs = 2 }}
{rate_limit}

[tables.feed_records]
source = "feed"
write = "merge"
primary_key = ["id"]
columns = {{ id = {{ path = "id", type = "int" }}, t = {{ path = "t", type = "int" }}, v = {{ path = "v", type = "int" }} }}
"#
        ),
    )
    .expect("write project");
    dir.to_path_buf()
}

fn spawn_run(project: &Path, args: &[&str], log: &Path) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    Command::new(env!("CARGO_BIN_EXE_affluent"))
        .arg("--project")
        .arg(project)
        .arg("run")
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn affluent run")
}

/// Waits for a child, killing it after `limit`.
fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn now_s() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The true table: ids of every second in `[start, end)`, as count, distinct count and sum.
fn expected(start: i64, end: i64) -> String {
    let ids: Vec<i64> = (start..end)
        .flat_map(|t| (0..PER_SECOND).map(move |k| t * 10 + k))
        .collect();
    let sum: i64 = ids.iter().sum();
    format!(
        "n,d,s,lo,hi\n{},{},{sum},{start},{}\n",
        ids.len(),
        ids.len(),
        end - 1
    )
}

fn actual(project: &Path) -> String {
    query(
        project,
        "SELECT count(*) AS n, count(DISTINCT id) AS d, sum(id) AS s, min(t) AS lo, max(t) AS hi FROM feed_records",
    )
}

/// `affluent run --until T` and the end of the last interval it covers.
fn finish(project: &Path, start: i64, log: &Path) -> i64 {
    let until = now_s();
    let mut child = spawn_run(project, &["--until", &until.to_string_timestamp()], log);
    let status = wait_for(&mut child, Duration::from_secs(240));
    let logs = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "run --until did not finish: {status:?}\n{}",
        tail(&logs)
    );
    start + (until - start) / 2 * 2
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// `affluent status` reports no hole before `end` (later intervals came due after the run).
fn assert_no_hole_before(project: &Path, end: i64) {
    let o = super::affluent(project, &["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status json");
    assert_eq!(status[0]["task"], "source:feed");
    if let Some(hole) = status[0]["first_hole"].as_str() {
        let start: jiff::Timestamp = hole
            .trim_start_matches('[')
            .split(',')
            .next()
            .and_then(|s| s.parse().ok())
            .expect("hole start");
        assert!(start.as_second() >= end, "a hole before {end}: {status}");
    }
    assert_eq!(status[0]["failed"], 0, "{status}");
}

trait UnixText {
    fn to_string_timestamp(&self) -> String;
}

impl UnixText for i64 {
    fn to_string_timestamp(&self) -> String {
        jiff::Timestamp::from_second(*self).expect("ts").to_string()
    }
}

#[test]
fn run_killed_at_random_moments_loses_and_duplicates_nothing() {
    let kills: usize = std::env::var("AFFLUENT_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let server = FeedServer::start(0.0);
    let dir = tempfile::tempdir().expect("tmp");
    let start = now_s() - 60;
    let project = feed_project(&dir.path().join("p"), server.port, start, "");
    let log = dir.path().join("run.log");
    let mut rng: u64 = (std::process::id() as u64) << 20 | 0x2545;
    let mut killed_working = 0;
    for _ in 0..kills {
        let before = server.log().len();
        let mut child = spawn_run(&project, &[], &log);
        // Kill at a random moment once the process is at work (it has sent a request).
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.log().len() == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if server.log().len() > before {
            killed_working += 1;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(rng % 800));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }
    let end = finish(&project, start, &log);
    assert_eq!(actual(&project), expected(start, end));
    assert!(
        killed_working * 10 >= kills * 9,
        "only {killed_working} of {kills} runs reached the server before being killed"
    );
    assert_no_hole_before(&project, end);
}

#[test]
fn faults_are_retried_within_retry_after_and_rate_limits() {
    let server = FeedServer::start(0.3);
    let dir = tempfile::tempdir().expect("tmp");
    let start = now_s() - 30;
    let project = feed_project(
        &dir.path().join("p"),
        server.port,
        start,
        "rate_limit = { per_second = 4, per_day = 1000 }",
    );
    let log = dir.path().join("run.log");
    let end = finish(&project, start, &log);
    assert_eq!(actual(&project), expected(start, end));
    let seen = server.log();
    assert!(
        server.faults() >= 5,
        "only {} faults were injected",
        server.faults()
    );
    // No 1-second window holds more than 4 requests.
    for (i, a) in seen.iter().enumerate() {
        let within = seen[i..]
            .iter()
            .take_while(|b| b.at.duration_since(a.at) < Duration::from_secs(1))
            .count();
        assert!(within <= 4, "{within} requests within 1 s of request {i}");
    }
    // After a 429 with Retry-After: 1, the same request waits at least a second.
    let mut checked = 0;
    for (i, a) in seen.iter().enumerate().filter(|(_, s)| s.status == 429) {
        if let Some(next) = seen[i + 1..].iter().find(|b| b.path == a.path) {
            let gap = next.at.duration_since(a.at);
            assert!(
                gap >= Duration::from_secs(1),
                "retried after {gap:?}: {}",
                a.path
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no 429 was retried");
    assert!(
        seen.len() <= 1000,
        "the daily quota was exceeded: {}",
        seen.len()
    );
    let o = super::affluent(&project, &["runs", "--format", "json", "--limit", "1000"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn an_outage_is_healed_without_any_command() {
    let server = FeedServer::start(0.0);
    let dir = tempfile::tempdir().expect("tmp");
    let start = now_s() - 10;
    let project = feed_project(&dir.path().join("p"), server.port, start, "");
    let log = dir.path().join("run.log");
    let until = now_s() + 12;
    let mut child = spawn_run(&project, &["--until", &until.to_string_timestamp()], &log);
    std::thread::sleep(Duration::from_secs(3));
    server.set_down(true);
    std::thread::sleep(Duration::from_secs(5));
    server.set_down(false);
    let status = wait_for(&mut child, Duration::from_secs(120));
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        tail(&logs)
    );
    let end = start + (until - start) / 2 * 2;
    assert_eq!(actual(&project), expected(start, end));
    let failed = super::affluent(&project, &["runs", "--failed", "--format", "json"]);
    let failed = String::from_utf8_lossy(&failed.stdout).lines().count();
    assert!(
        failed > 0,
        "the outage caused no failed run:\n{}",
        tail(&logs)
    );
    assert_no_hole_before(&project, end);
}

/// Two `affluent run` processes sharing one PostgreSQL state store (and one project): every
/// interval is fetched once, by one of them, and every record is loaded once.
#[test]
fn two_processes_on_one_postgres_fetch_each_interval_once() {
    let base = std::env::var("AFFLUENT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    // A schema of its own, so that earlier runs' rows do not interfere.
    let schema = format!("affluent_cli_{}_{}", std::process::id(), now_s());
    let psql = Command::new("psql")
        .arg(&base)
        .args(["-q", "-c", &format!("CREATE SCHEMA {schema}")])
        .output()
        .expect("psql (PostgreSQL's client) is needed by this test");
    assert!(
        psql.status.success(),
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");

    let server = FeedServer::start(0.0);
    let dir = tempfile::tempdir().expect("tmp");
    let start = now_s() - 30;
    let project = feed_project(&dir.path().join("p"), server.port, start, "");
    let file = project.join("affluent.toml");
    let toml = std::fs::read_to_string(&file).expect("read");
    std::fs::write(&file, format!("state_url = \"{url}\"\n{toml}")).expect("write");
    let until = now_s() + 6;
    let log_a = dir.path().join("a.log");
    let log_b = dir.path().join("b.log");
    let mut a = spawn_run(&project, &["--until", &until.to_string_timestamp()], &log_a);
    let mut b = spawn_run(&project, &["--until", &until.to_string_timestamp()], &log_b);
    for (child, log) in [(&mut a, &log_a), (&mut b, &log_b)] {
        let status = wait_for(child, Duration::from_secs(180));
        let logs = std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            status.is_some_and(|s| s.success()),
            "{status:?}\n{}",
            tail(&logs)
        );
    }
    let end = start + (until - start) / 2 * 2;
    assert_eq!(actual(&project), expected(start, end));
    let mut per_path: std::collections::HashMap<String, usize> = Default::default();
    for seen in server.log() {
        *per_path.entry(seen.path).or_default() += 1;
    }
    assert_eq!(
        per_path.len() as i64,
        (end - start) / 2,
        "one request per interval"
    );
    assert!(
        per_path.values().all(|n| *n == 1),
        "an interval was fetched twice: {per_path:?}\n--- a\n{}\n--- b\n{}",
        tail(&std::fs::read_to_string(&log_a).unwrap_or_default()),
        tail(&std::fs::read_to_string(&log_b).unwrap_or_default())
    );
    let o = super::affluent(&project, &["runs", "--format", "json", "--limit", "1000"]);
    let workers: std::collections::HashSet<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|r| {
            r["worker"]
                .as_str()
                .map(|w| w.rsplit_once(':').map_or(w, |(p, _)| p).to_string())
        })
        .collect();
    assert_eq!(
        workers.len(),
        2,
        "both processes ran intervals: {workers:?}"
    );
}

/// SIGTERM stops scheduling, lets the run in flight finish within the grace period, exits 0, and
/// a restart covers what was left.
#[test]
fn sigterm_stops_cleanly_and_a_restart_resumes() {
    let server = FeedServer::start(0.0);
    let dir = tempfile::tempdir().expect("tmp");
    let start = now_s() - 40;
    let project = feed_project(&dir.path().join("p"), server.port, start, "");
    let log = dir.path().join("run.log");
    let mut child = spawn_run(&project, &[], &log);
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.log().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let stopped_at = Instant::now();
    let status = wait_for(&mut child, Duration::from_secs(20));
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        tail(&logs)
    );
    // shutdown_grace is 2 s in this project.
    assert!(
        stopped_at.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopped_at.elapsed()
    );
    assert!(logs.contains("shutting down"), "{}", tail(&logs));
    let end = finish(&project, start, &log);
    assert_eq!(actual(&project), expected(start, end));
}

/// `affluent run` evaluates an alert each time a load gives its table a new version: it fires
/// once when it starts to hold, not again at every load while it still holds.
#[test]
fn run_evaluates_alerts_after_each_load() {
    let server = FeedServer::start(0.0);
    let dir = tempfile::tempdir().expect("tmp");
    let start = now_s() - 8;
    let project = feed_project(&dir.path().join("p"), server.port, start, "");
    let mut toml = std::fs::read_to_string(project.join("affluent.toml")).expect("read");
    toml.push_str(
        r#"
[alerts.records_arrived]
sql = "SELECT count(*) AS n FROM feed_records"
message = "{n:int} records loaded"
when = { value = "n", above = 0 }
"#,
    );
    std::fs::write(project.join("affluent.toml"), toml).expect("write");
    let log = dir.path().join("run.log");
    finish(&project, start, &log);
    let fired = query(
        &project,
        "SELECT count(*) AS firings, min(evaluation) AS first FROM alert_firings",
    );
    assert_eq!(
        fired,
        "firings,first\n1,1\n",
        "{}",
        tail(&std::fs::read_to_string(&log).unwrap_or_default())
    );
    let o = super::affluent(&project, &["alerts", "list"]);
    let listed = super::text(&o);
    assert!(listed.contains("active on 1 of 1 entities"), "{listed}");
    let evaluations: u64 = listed
        .split("records_arrived [warning]: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(evaluations >= 2, "evaluated after each load: {listed}");
}
