//! Tables on an S3-compatible object store: moto's S3 server (PyPI `moto[server]`, installed by
//! `scripts/test`), one per test on a free port, a bucket created over plain HTTP. The projects
//! find the store through the `AWS_*` variables of their `.env`, as a user's would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{affluent, copy_dir, footfall_project, query, rows_per_entry, text};

/// The secret the test projects use: it must never be printed.
const SECRET: &str = "moto-secret-4f1c9a";

/// A moto S3 server; killed when dropped.
pub(crate) struct S3 {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn moto_server() -> PathBuf {
    if let Some(path) = std::env::var_os("AFFLUENT_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let cached = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/affluent/s3-venv/bin/moto_server"));
    match cached {
        Some(p) if p.exists() => p,
        _ => PathBuf::from("moto_server"),
    }
}

impl S3 {
    /// Starts a server with one bucket, `lake`, that takes any credentials.
    pub(crate) fn start() -> S3 {
        let s3 = Self::spawn(&[]);
        let started = Instant::now();
        loop {
            if let Some(reply) = s3.try_request("PUT", "/lake")
                && ok(&reply)
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto did not answer: {}",
                std::fs::read_to_string(&s3.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        s3
    }

    /// Starts a server that checks signatures against its IAM users, with one user allowed
    /// everything on S3 and the bucket `lake`; returns the user's key id and secret.
    pub(crate) fn start_with_auth() -> (S3, String, String) {
        // The first three requests (the user, its policy, its key) go unchecked.
        let s3 = Self::spawn(&[("INITIAL_NO_AUTH_ACTION_COUNT", "3")]);
        let script = "import sys, json, boto3
kw = dict(endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='setup', aws_secret_access_key='setup')
iam = boto3.client('iam', **kw)
iam.create_user(UserName='loader')
iam.put_user_policy(UserName='loader', PolicyName='s3', PolicyDocument=json.dumps({'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Action': 's3:*', 'Resource': '*'}]}))
key = iam.create_access_key(UserName='loader')['AccessKey']
kw.update(aws_access_key_id=key['AccessKeyId'], aws_secret_access_key=key['SecretAccessKey'])
boto3.client('s3', **kw).create_bucket(Bucket='lake')
print(key['AccessKeyId'], key['SecretAccessKey'])";
        let o = Command::new(s3.python())
            .args(["-c", script, &format!("http://127.0.0.1:{}", s3.port)])
            .output()
            .unwrap();
        assert!(o.status.success(), "IAM setup: {}", text(&o));
        let out = String::from_utf8(o.stdout).unwrap();
        let (id, secret) = out.trim().split_once(' ').unwrap();
        (s3, id.to_string(), secret.to_string())
    }

    /// Starts moto on a port of its choosing, read from its log.
    fn spawn(env: &[(&str, &str)]) -> S3 {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", "0"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto's S3 server ({}): {e}; install it with `pip install 'moto[server]'` or run scripts/test, which does",
                    moto_server().display()
                )
            });
        let started = Instant::now();
        let port = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(port) = text
                .split("Running on http://127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|p| p.parse::<u16>().ok())
            {
                break port;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        S3 {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn try_request(&self, method: &str, target: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        write!(
            stream,
            "{method} {target} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\r\n",
            self.port
        )
        .ok()?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).ok()?;
        Some(reply)
    }

    /// Keys of the bucket under a prefix (up to 1,000).
    pub(crate) fn keys(&self, prefix: &str) -> Vec<String> {
        let reply = self
            .try_request("GET", &format!("/lake?list-type=2&prefix={prefix}"))
            .unwrap();
        reply
            .split("<Key>")
            .skip(1)
            .filter_map(|k| k.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect()
    }

    /// A key's content, read with boto3 (beside moto; objects need a signed request).
    pub(crate) fn get(&self, key: &str) -> String {
        let o = Command::new(self.python())
        .args([
            "-c",
            "import sys, boto3; s3 = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='testing', aws_secret_access_key='x', region_name='us-east-1'); sys.stdout.write(s3.get_object(Bucket='lake', Key=sys.argv[2])['Body'].read().decode())",
            &format!("http://127.0.0.1:{}", self.port),
            key,
        ])
        .output()
        .unwrap();
        assert!(o.status.success(), "{key}: {}", text(&o));
        String::from_utf8(o.stdout).unwrap()
    }

    /// `SELECT count(*), sum(COLUMN)` of a table on the store, computed by another Delta
    /// reader: delta-rs's Python package (`deltalake`, with pyarrow, beside moto).
    pub(crate) fn count_and_sum(&self, table: &str, column: &str) -> String {
        let script = "import sys; from deltalake import DeltaTable; import pyarrow.compute as pc
opts = {'AWS_ACCESS_KEY_ID': 'testing', 'AWS_SECRET_ACCESS_KEY': 'x', 'AWS_REGION': 'us-east-1', 'AWS_ENDPOINT_URL': sys.argv[1], 'AWS_ALLOW_HTTP': 'true'}
t = DeltaTable('s3://lake/' + sys.argv[2], storage_options=opts).to_pyarrow_table()
print(f'n,v\\n{t.num_rows},{pc.sum(t[sys.argv[3]]).as_py()}')
# deltalake's runtime threads can abort the interpreter's teardown: leave without it.
import os; sys.stdout.flush(); os._exit(0)";
        let o = Command::new(self.python())
            .args([
                "-c",
                script,
                &format!("http://127.0.0.1:{}", self.port),
                table,
                column,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{table}: {}", text(&o));
        String::from_utf8(o.stdout).unwrap()
    }

    fn python(&self) -> PathBuf {
        let python = moto_server().with_file_name("python");
        if python.exists() {
            python
        } else {
            PathBuf::from("python3")
        }
    }

    /// Conditional puts the server refused (`412`): commits that lost a race.
    pub(crate) fn refused_puts(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains("PUT /lake/") && l.contains("_delta_log") && l.contains("\" 412 ")
            })
            .count()
    }

    /// Puts a project's tables under `s3://lake/PREFIX` with credentials in its `.env`.
    pub(crate) fn attach(&self, project: &Path, prefix: &str) {
        let file = project.join("affluent.toml");
        let toml = std::fs::read_to_string(&file).unwrap();
        std::fs::write(
            &file,
            format!("tables_location = \"s3://lake/{prefix}\"\n{toml}"),
        )
        .unwrap();
        self.env(project);
    }

    /// Writes the project's `.env`: the server's endpoint and credentials.
    pub(crate) fn env(&self, project: &Path) {
        self.env_with(project, "testing", SECRET);
    }

    /// Writes the project's `.env` with these credentials.
    pub(crate) fn env_with(&self, project: &Path, id: &str, secret: &str) {
        std::fs::write(
            project.join(".env"),
            format!(
                "AWS_ACCESS_KEY_ID={id}\nAWS_SECRET_ACCESS_KEY={secret}\nAWS_REGION=us-east-1\nAWS_ENDPOINT_URL=http://127.0.0.1:{}\nAWS_ALLOW_HTTP=true\n",
                self.port
            ),
        )
        .unwrap();
    }
}

/// Whether an HTTP reply's status is 200.
fn ok(reply: &str) -> bool {
    reply
        .lines()
        .next()
        .is_some_and(|status| status.split(' ').nth(1) == Some("200"))
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The same landing loaded and transformed into tables on S3 and into local tables gives the
/// same rows; loading again takes nothing; the files are in the bucket, none on local disk.
#[test]
fn tables_on_s3_hold_what_local_tables_hold_and_load_once() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let (remote, local) = (dir.path().join("remote"), dir.path().join("local"));
    footfall_project(&remote);
    let model = "\n[models.per_agency]\nsql = \"SELECT agency_name, count(*) AS n, sum(visitor_count) AS visits FROM latest GROUP BY agency_name\"\n";
    let toml = std::fs::read_to_string(remote.join("affluent.toml")).unwrap();
    std::fs::write(remote.join("affluent.toml"), format!("{toml}{model}")).unwrap();
    let o = affluent(&remote, &["ingest", "footfall", "--no-load"]);
    assert!(o.status.success(), "{}", text(&o));
    copy_dir(&remote, &local);
    s3.attach(&remote, "footfall");

    let o = affluent(&remote, &["validate"]);
    assert!(
        text(&o).contains("tables under s3://lake/footfall/"),
        "{}",
        text(&o)
    );
    let mut printed = String::new();
    for project in [&remote, &local] {
        for args in [&["load"][..], &["transform"]] {
            let o = affluent(project, args);
            assert!(o.status.success(), "{args:?}: {}", text(&o));
            printed.push_str(&text(&o));
        }
    }
    let o = affluent(&remote, &["load"]);
    assert!(text(&o).contains("0 entries"), "{}", text(&o));
    printed.push_str(&text(&o));

    let mut counts: Vec<u64> = rows_per_entry(&remote, "raw_events")
        .values()
        .copied()
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, [14616, 15624, 15624], "each file's rows once");
    for sql in [
        "SELECT count(*) AS n, sum(visitor_count) AS v FROM raw_events",
        "SELECT count(*) AS n FROM latest",
        "SELECT * FROM per_agency ORDER BY agency_name",
    ] {
        assert_eq!(query(&remote, sql), query(&local, sql), "{sql}");
    }

    // Another Delta reader sees the same rows in the bucket.
    assert_eq!(
        s3.count_and_sum("footfall/raw_events", "visitor_count"),
        query(
            &remote,
            "SELECT count(*) AS n, sum(visitor_count) AS v FROM raw_events"
        )
    );

    let keys = s3.keys("footfall/");
    for table in ["raw_events", "latest", "per_agency"] {
        assert!(
            keys.iter()
                .any(|k| k == &format!("footfall/{table}/_delta_log/00000000000000000000.json")),
            "{table} has no log in the bucket: {keys:?}"
        );
        assert!(
            keys.iter()
                .any(|k| k.starts_with(&format!("footfall/{table}/")) && k.ends_with(".parquet")),
            "{table} has no data file in the bucket: {keys:?}"
        );
    }
    assert!(!remote.join(".affluent/tables").exists());
    // The load's transaction names this project's writer, in the same commit as the rows.
    let writer = std::fs::read_to_string(remote.join(".affluent/state/writer")).unwrap();
    let commit = s3.get("footfall/raw_events/_delta_log/00000000000000000000.json");
    assert!(
        commit.contains(&format!("\"appId\":\"affluent-load@{writer}\"")),
        "{commit}"
    );
    assert!(!printed.contains(SECRET), "{printed}");
}

/// Two projects (two landing zones, two processes) load one append table and one merge table
/// on S3 at once, a commit per landed file, round after round: every row of both arrives once
/// in the append table, each key once in the merge table, the log has every version, and the
/// server's log shows commits that lost a race (a refused conditional put) and were retried.
/// Then both compact at once.
#[test]
fn two_projects_share_tables_on_s3_without_losing_or_doubling_a_row() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let projects: Vec<PathBuf> = ["a", "b"].iter().map(|n| dir.path().join(n)).collect();
    for project in &projects {
        footfall_project(project);
        let toml = std::fs::read_to_string(project.join("affluent.toml")).unwrap();
        // Two shared tables: an append table and a merge table (whose concurrent merges
        // conflict, and are written again).
        let toml = toml
            .replace(
                "[tables.raw_events]\nsource = \"footfall\"\n",
                "[tables.raw_events]\nsource = \"footfall\"\nlocation = \"s3://lake/shared/raw_events\"\n",
            )
            .replace(
                "[tables.latest]\nsource = \"footfall\"\n",
                "[tables.latest]\nsource = \"footfall\"\nlocation = \"s3://lake/shared/latest\"\n",
            );
        std::fs::write(project.join("affluent.toml"), toml).unwrap();
        s3.env(project);
        let o = affluent(project, &["ingest", "footfall", "--no-load"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let mut files: Vec<String> = std::fs::read_dir(projects[0].join("raw"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort(); // January first: 15,624 rows
    let load = |project: &Path| {
        Command::new(env!("CARGO_BIN_EXE_affluent"))
            .arg("--project")
            .arg(project)
            .args(["load", "footfall"])
            .env_remove("RUST_LOG")
            .env("AFFLUENT_LOAD_COMMIT_RECORDS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut rounds = 0;
    let mut rewritten = 0;
    loop {
        let children: Vec<Child> = projects.iter().map(|p| load(p)).collect();
        for child in children {
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success(), "round {rounds}: {}", text(&o));
            rewritten += text(&o).matches("writing it again").count();
        }
        rounds += 1;
        if rounds >= 3 && s3.refused_puts() > 0 || rounds == 16 {
            break;
        }
        // New files for the next round: copies of the exports, a commit each.
        for project in &projects {
            for (i, file) in files.iter().enumerate() {
                std::fs::copy(
                    project.join("raw").join(file),
                    project.join("raw").join(format!("r{rounds}_{i}.csv")),
                )
                .unwrap();
            }
            let o = affluent(project, &["ingest", "footfall", "--no-load"]);
            assert!(o.status.success(), "{}", text(&o));
        }
    }
    let refused = s3.refused_puts();
    eprintln!(
        "{rounds} rounds, {refused} commits lost a race and were retried, {rewritten} written again after a conflict"
    );
    // Two commits race either at the put (one refused by the store) or before it (the later
    // finds the other's version and its conflict check sends it back): either proves the point.
    assert!(
        refused > 0 || rewritten > 0,
        "no two commits raced in {rounds} rounds: the test proved nothing"
    );

    let per_file: u64 = 14616 + 15624 + 15624;
    let expected = 2 * per_file * rounds as u64;
    for project in &projects {
        assert_eq!(
            query(project, "SELECT count(*) AS n FROM raw_events"),
            format!("n\n{expected}\n")
        );
    }
    // The merge table: each key once, every key of the rows landed.
    let keys = "date_time, agency_name, counter_id";
    assert_eq!(
        query(&projects[0], "SELECT count(*) AS n FROM latest"),
        query(
            &projects[0],
            &format!("SELECT count(*) AS n FROM (SELECT DISTINCT {keys} FROM latest)")
        )
    );
    assert_eq!(
        query(&projects[0], "SELECT count(*) AS n FROM latest"),
        query(
            &projects[1],
            &format!(
                "SELECT count(*) AS n FROM (SELECT DISTINCT {keys} FROM raw_events WHERE date_time IS NOT NULL AND agency_name IS NOT NULL AND counter_id IS NOT NULL)"
            )
        )
    );
    let log: Vec<String> = s3
        .keys("shared/raw_events/_delta_log/")
        .into_iter()
        .filter(|k| k.ends_with(".json"))
        .collect();
    // Every version from 0, loads and compactions.
    for v in 0..log.len() {
        let key = format!("shared/raw_events/_delta_log/{v:020}.json");
        assert!(log.contains(&key), "version {v} missing: {log:?}");
    }
    let commits: Vec<String> = log.iter().map(|k| s3.get(k)).collect();
    let compactions = commits
        .iter()
        .filter(|c| c.contains("\"operation\":\"OPTIMIZE\""))
        .count();
    // 18 files in round 3 pass `[compaction] files` (16): each writer's load is followed by a
    // compaction, unless the other holds the lease (or compacted just before).
    assert!(compactions >= 1, "no compaction ran: the test proved less");
    eprintln!("{compactions} compactions in {} commits", commits.len());
    for project in &projects {
        let writer = std::fs::read_to_string(project.join(".affluent/state/writer")).unwrap();
        let with_writer = commits
            .iter()
            .filter(|c| c.contains(&format!("affluent-load@{writer}")))
            .count();
        assert_eq!(with_writer, 3 * rounds, "commits of writer {writer}");
    }

    // Both compact at once, round after round, new files loaded before each: one holds the
    // table's compaction lease, the other waits for another time, and no row is doubled
    // (deltalake alone would let both rewrites land).
    let mut refusals = 0;
    for round in 0..6 {
        for project in &projects {
            std::fs::copy(
                project.join("raw").join(&files[0]),
                project.join("raw").join(format!("o{round}.csv")),
            )
            .unwrap();
            let o = affluent(project, &["ingest", "footfall"]);
            assert!(o.status.success(), "{}", text(&o));
        }
        let optimize = |project: &Path| {
            Command::new(env!("CARGO_BIN_EXE_affluent"))
                .arg("--project")
                .arg(project)
                .args(["tables", "optimize", "raw_events"])
                .env_remove("RUST_LOG")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let children: Vec<Child> = projects.iter().map(|p| optimize(p)).collect();
        for child in children {
            let o = child.wait_with_output().unwrap();
            if !o.status.success() {
                assert!(
                    text(&o).contains("holds the compaction lease of `raw_events`")
                        || text(&o)
                            .contains("committed to `raw_events` while it was being compacted"),
                    "{}",
                    text(&o)
                );
                refusals += 1;
            }
        }
        let rows: u64 = query(&projects[0], "SELECT count(*) AS n FROM raw_events")
            .lines()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let landed = expected + 2 * 15624 * (round as u64 + 1);
        assert_eq!(rows, landed, "round {round} of concurrent compactions");
        if refusals > 0 && round >= 2 {
            break;
        }
    }
    eprintln!("{refusals} compactions found the lease held");
    assert!(
        refusals > 0,
        "the compactions never overlapped: the test proved nothing"
    );
}

/// A wrong secret: the store refuses the load with a message that says which variables to
/// check and shows no secret; the landed entries wait, and the right secret loads each once.
/// A bucket that does not exist is an error too, not an empty table.
#[test]
fn a_wrong_secret_or_bucket_is_a_clear_error_and_loses_nothing() {
    let (s3, id, secret) = S3::start_with_auth();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("p");
    footfall_project(&project);
    s3.attach(&project, "auth");
    let wrong = format!("wrong{secret}");
    s3.env_with(&project, &id, &wrong);
    let o = affluent(&project, &["ingest", "footfall"]);
    assert!(!o.status.success(), "{}", text(&o));
    let said = text(&o);
    assert!(said.contains("3 landed"), "{said}");
    assert!(said.contains("SignatureDoesNotMatch"), "{said}");
    assert!(said.contains("AWS_SECRET_ACCESS_KEY"), "{said}");
    assert!(!said.contains(&wrong) && !said.contains(&secret), "{said}");

    s3.env_with(&project, &id, &secret);
    let o = affluent(&project, &["load"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut counts: Vec<u64> = rows_per_entry(&project, "raw_events")
        .values()
        .copied()
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, [14616, 15624, 15624]);

    let toml = std::fs::read_to_string(project.join("affluent.toml")).unwrap();
    std::fs::write(
        project.join("affluent.toml"),
        toml.replace("s3://lake/auth", "s3://no-such-bucket/auth"),
    )
    .unwrap();
    let o = affluent(&project, &["query", "SELECT count(*) FROM raw_events"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no-such-bucket"), "{}", text(&o));
}
