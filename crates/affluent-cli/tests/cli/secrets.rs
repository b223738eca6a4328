//! Secrets, end to end: `affluent -vv run` against a careless API that echoes its key in every
//! encoding (in data and in errors), with failure notifications to a webhook. No form of any
//! secret may appear in what the process prints, in any file it writes (landing, quarantine,
//! tables, the state store and its journal), in `runs`, `status`, `query` and `sinks`, or in
//! the notifications it sends; the PostgreSQL warehouse's url carries a password too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use super::text;

/// The forms a secret takes on the wire and in a careless server's answers.
fn wire_forms(secret: &str) -> Vec<String> {
    use base64::Engine;
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let json = serde_json::to_string(secret).unwrap();
    let json = json[1..json.len() - 1].to_string();
    vec![
        secret.to_string(),
        form,
        utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string(),
        json.replace('/', "\\/"),
        base64::engine::general_purpose::STANDARD.encode(secret),
    ]
}

/// What the server saw: webhook bodies and the Authorization header they came with.
#[derive(Default)]
struct Seen {
    hooks: Vec<(String, String)>,
    keys: Vec<String>,
}

/// `/ok/TOKEN/records?key=K&start=S` answers one record echoing K; `/bad` answers 500 with an
/// error echoing K; `POST /hook` keeps the notification.
fn careless_api(seen: Arc<Mutex<Seen>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let target = line.split(' ').nth(1).unwrap_or("/").to_string();
                let (mut length, mut auth) = (0usize, String::new());
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    let (name, value) = header.split_once(':').unwrap_or((&header, ""));
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap_or(0),
                        "authorization" => auth = value.trim().to_string(),
                        _ => {}
                    }
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                let url = url::Url::parse(&format!("http://x{target}")).unwrap();
                let query: std::collections::BTreeMap<String, String> =
                    url.query_pairs().into_owned().collect();
                let key = query.get("key").cloned().unwrap_or_default();
                let (status, answer) = if url.path() == "/hook" {
                    seen.lock()
                        .unwrap()
                        .hooks
                        .push((String::from_utf8_lossy(&body).into_owned(), auth));
                    ("200 OK", "{}".to_string())
                } else if url.path().starts_with("/ok/") {
                    seen.lock().unwrap().keys.push(key.clone());
                    let start: i64 = query.get("start").and_then(|s| s.parse().ok()).unwrap_or(0);
                    let forms = wire_forms(&key);
                    (
                        "200 OK",
                        serde_json::json!({
                            "records": [{"id": start, "echo": key, "forms": [&forms[1], &forms[2], &forms[4]]}],
                            "request": target,
                        })
                        .to_string(),
                    )
                } else {
                    (
                        "500 Internal Server Error",
                        format!(
                            r#"{{"message": "key {} is not valid for {}"}}"#,
                            wire_forms(&key)[3],
                            wire_forms(&key)[1]
                        ),
                    )
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = stream.flush();
            });
        }
    });
    port
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if !path.ends_with("affluent.toml") {
            out.push(path);
        }
    }
    out
}

#[test]
fn no_secret_leaves_the_process_in_any_encoding() {
    // Secrets with every character URLs, forms and JSON treat specially.
    let secrets = [
        (
            "ab-cd/ef_gh.ij",
            "tok en-1",
            "hook/tok+en=1",
            "pg-pa55/word_1",
        ),
        (
            "k\"e\\y&a=b?c#d %2F€",
            "p+a~t.h é",
            "h\"o\\o/k#7 x",
            "p@ss w\"o\\rd€#?",
        ),
    ];
    let pg = std::env::var("AFFLUENT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    for (round, (key, path_token, hook_token, pg_password)) in secrets.into_iter().enumerate() {
        // The warehouse's url carries a password (the machine's PostgreSQL trusts local
        // logins, so it is not checked, but it is in the url everywhere the sink goes).
        let schema = format!("affluent_secrets_{}_{round}", std::process::id());
        let encoded =
            percent_encoding::utf8_percent_encode(pg_password, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let pg_url = pg.replacen("postgres@", &format!("postgres:{encoded}@"), 1);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let port = careless_api(seen.clone());
        let dir = tempfile::tempdir().unwrap();
        let start = jiff::Timestamp::now().as_second() - 6;
        let start = jiff::Timestamp::from_second(start - start % 2).unwrap();
        std::fs::write(
            dir.path().join("affluent.toml"),
            format!(
                r#"
[scheduler]
retry_initial = "100ms"
retry_max = "200ms"
shutdown_grace = "2s"

[notify]
on = ["failure", "success"]
webhook = {{ url = "http://127.0.0.1:{port}/hook", headers = {{ Authorization = "Bearer ${{HOOK_TOKEN}}" }} }}

[sources.ok]
type = "rest"
every = "2s"
start_date = "{start}"
client.base_url = "http://127.0.0.1:{port}/ok/${{PATH_TOKEN}}"
client.auth = {{ type = "api_key", name = "key", api_key = "${{API_KEY}}", location = "query" }}
client.headers = {{ "X-Api-Key" = "${{API_KEY}}" }}
endpoint.path = "records"
endpoint.params = {{ start = "{{interval.start:unix}}" }}
endpoint.data_selector = "records"

[sources.bad]
type = "rest"
every = "2s"
start_date = "{start}"
client.base_url = "http://127.0.0.1:{port}/bad"
client.auth = {{ type = "api_key", name = "key", api_key = "${{API_KEY}}", location = "query" }}
retry = {{ max_attempts = 1 }}

[tables.ok_records]
source = "ok"
write = "merge"
primary_key = ["id"]
columns = {{ id = {{ path = "id", type = "int" }}, echo = {{ path = "echo", type = "string" }} }}

[sinks.warehouse]
type = "postgres"
url = "${{WAREHOUSE_URL}}"
schema = "{schema}"
tables = ["ok_records"]
"#
            ),
        )
        .unwrap();
        let env = [
            ("API_KEY", key),
            ("PATH_TOKEN", path_token),
            ("HOOK_TOKEN", hook_token),
            ("WAREHOUSE_URL", pg_url.as_str()),
        ];
        let run = |args: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_affluent"))
                .arg("--project")
                .arg(dir.path())
                .args(args)
                .envs(env)
                .env_remove("RUST_LOG")
                .output()
                .unwrap()
        };
        // `run` catches up, retries the failing source, notifies; SIGTERM ends it cleanly.
        let log = dir.path().join("run.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_affluent"))
            .arg("--project")
            .arg(dir.path())
            .args(["-vv", "run", "--no-serve"])
            .envs(env)
            .env_remove("RUST_LOG")
            .stdout(std::fs::File::create(dir.path().join("run.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            let notified = seen.lock().unwrap().hooks.len();
            let loaded = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("ok_records");
            if notified >= 2 && loaded {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let status = child.wait().unwrap();
        assert!(status.success(), "round {round}: run ended {status:?}");
        let outputs = [
            run(&["runs", "--format", "json"]),
            run(&["runs", "--failed"]),
            run(&["status", "--format", "json"]),
            run(&["status"]),
            run(&[
                "-vv",
                "query",
                "SELECT * FROM ok_records",
                "--format",
                "json",
            ]),
            run(&["landing", "list", "ok", "--format", "json"]),
            run(&["quarantine", "list"]),
            run(&["-vv", "sinks", "run"]),
            run(&["sinks", "status"]),
        ];
        let mut texts: Vec<(String, String)> = outputs
            .iter()
            .map(|o| ("output".to_string(), text(o)))
            .collect();
        // Not vacuous: the API got the real key, rows were loaded, a failure was notified
        // with the real hook token in its header.
        let seen = seen.lock().unwrap();
        assert!(
            seen.keys.iter().any(|k| k == key),
            "round {round}: {:?}",
            seen.keys
        );
        let rows = &texts[4].1;
        assert!(rows.contains("\"echo\""), "round {round}: {rows}");
        let status = &texts[8].1;
        assert!(status.contains("(up to date)"), "round {round}: {status}");
        assert!(
            seen.hooks.iter().any(|(body, _)| body.contains("failure")),
            "round {round}: {:?}\n{}",
            seen.hooks,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            seen.hooks
                .iter()
                .all(|(_, auth)| auth == &format!("Bearer {hook_token}")),
            "round {round}"
        );
        for (body, _) in &seen.hooks {
            texts.push(("notification".to_string(), body.clone()));
        }
        for file in files(dir.path()) {
            let bytes = std::fs::read(&file).unwrap();
            let bytes = if file.to_string_lossy().ends_with(".zst") {
                zstd::decode_all(bytes.as_slice()).unwrap()
            } else {
                bytes
            };
            texts.push((
                file.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
        assert!(texts.len() > 12, "round {round}: {} places", texts.len());
        for (place, text) in &texts {
            for form in [key, path_token, hook_token, pg_password]
                .into_iter()
                .flat_map(wire_forms)
            {
                assert!(
                    !text.contains(&form),
                    "round {round}: {form:?} in {place}: {}",
                    &text[..text.len().min(1500)]
                );
            }
        }
        let _ = Command::new("psql")
            .arg(&pg)
            .args([
                "-q",
                "-c",
                &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
            ])
            .output();
    }
}
