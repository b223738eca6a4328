//! The project file's validation: every error at once, each with line and column, and a hint.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::collections::BTreeMap;
use std::path::Path;

use affluent_config::{Environment, LoadError, SourceEnv, load_str, load_str_for};

fn errors(text: &str, env: &[(&str, &str)]) -> Vec<(usize, usize, String)> {
    let env = Environment::from_map(
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    );
    match load_str(Path::new("."), Path::new("affluent.toml"), text, &env) {
        Ok(_) => Vec::new(),
        Err(LoadError::Invalid(e)) => {
            e.0.into_iter()
                .map(|d| (d.line, d.column, d.message))
                .collect()
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn unknown_keys_are_reported_with_position_and_suggestion() {
    let text = r#"timezone = "Europe/Paris"
[sources.wb]
type = "rest"
client.bse_url = "https://api.worldbank.org/v2/"
endpoint.data_selectr = "[1]"
"#;
    let errs = errors(text, &[]);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!((errs[0].0, errs[0].1), (4, 8));
    assert!(
        errs[0]
            .2
            .contains("unknown key `bse_url` in [sources.wb.client]; did you mean `base_url`?"),
        "{}",
        errs[0].2
    );
    assert_eq!((errs[1].0, errs[1].1), (5, 10));
    assert!(
        errs[1].2.contains("did you mean `data_selector`?"),
        "{}",
        errs[1].2
    );
}

#[test]
fn every_error_of_every_source_at_once() {
    let text = r#"timezone = "Europe/Pariss"
[sources.a]
type = "rest"
concurrency = "four"
client.base_url = "not a url"

[sources.b]
type = "csvv"

[sources.c]
type = "csv"
path = "x/*.csv"
delimiter = ";;"
"#;
    let errs = errors(text, &[]);
    let messages: Vec<&str> = errs.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(errs.len(), 5, "{messages:#?}");
    let find = |needle: &str| {
        errs.iter()
            .find(|e| e.2.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {messages:#?}"))
    };
    assert_eq!(find("unknown time zone").0, 1);
    let wrong_type = find("wrong type");
    assert_eq!((wrong_type.0, wrong_type.1), (4, 15));
    assert!(
        wrong_type.2.contains("found string \"four\", expected"),
        "{}",
        wrong_type.2
    );
    assert_eq!(find("invalid base_url").0, 5);
    assert!(
        find("unknown source type \"csvv\"")
            .2
            .contains("did you mean \"csv\"?")
    );
    assert_eq!(find("single ASCII character").0, 13);
}

#[test]
fn missing_variable_is_named_at_its_use() {
    let text = "[sources.tm]\ntype = \"rest\"\nclient.base_url = \"https://app.ticketmaster.com/discovery/v2/\"\nclient.auth = { type = \"api_key\", name = \"apikey\", location = \"query\", api_key = \"${TM_API_KEY}\" }\n";
    let errs = errors(text, &[]);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(
        (errs[0].0, errs[0].1),
        (4, 82),
        "line and column of the value using it"
    );
    assert!(
        errs[0].2.contains("`TM_API_KEY` is not set"),
        "{}",
        errs[0].2
    );
    assert!(errors(text, &[("TM_API_KEY", "k-123456")]).is_empty());
}

#[test]
fn wrong_value_types_say_what_was_expected() {
    let text = "[sources.x]\ntype = \"rest\"\nmax_pages = -3\nchange_detection = \"yes\"\nclient.base_url = \"https://x.org\"\nclient.paginator = { type = \"page_numbr\" }\n";
    let errs = errors(text, &[]);
    let all: Vec<&str> = errs.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(errs.len(), 3, "{all:#?}");
    assert!(
        all.iter()
            .any(|m| m.contains("expected a non-negative integer")),
        "{all:#?}"
    );
    assert!(
        all.iter()
            .any(|m| m.contains("found string \"yes\", expected true or false")),
        "{all:#?}"
    );
    assert!(
        all.iter()
            .any(|m| m.contains("did you mean \"page_number\"?")),
        "{all:#?}"
    );
}

#[test]
fn templates_and_references_are_checked() {
    let text = r#"
[sources.parent]
type = "rest"
client.base_url = "https://x.org"

[sources.child]
type = "rest"
client.base_url = "https://x.org"
endpoint.path = "a/{artist}/{cuntry}"
endpoint.params = { artist = { type = "resolve", resource = "parnt", field = "id" }, since = "{interval.start - 3x}" }
"#;
    let errs = errors(text, &[]);
    let all: Vec<&str> = errs.iter().map(|e| e.2.as_str()).collect();
    assert!(
        all.iter()
            .any(|m| m.contains("unknown source `parnt`; did you mean `parent`?")),
        "{all:#?}"
    );
    assert!(
        all.iter()
            .any(|m| m.contains("unknown template variable {cuntry}")),
        "{all:#?}"
    );
    assert!(
        all.iter().any(|m| m.contains("unknown offset unit \"x\"")),
        "{all:#?}"
    );
}

#[test]
fn syntax_errors_have_positions() {
    let errs = errors("[sources.x\ntype = 1\n", &[]);
    assert!(!errs.is_empty());
    assert_eq!(errs[0].0, 1);
    assert!(errs[0].2.starts_with("invalid TOML"), "{}", errs[0].2);
}

#[test]
fn secrets_are_registered_and_clear_text_secrets_warned() {
    let env = Environment::from_map(BTreeMap::from([(
        "FD_TOKEN".to_string(),
        "fd-secret-999".to_string(),
    )]));
    let text = "[sources.fd]\ntype = \"rest\"\nclient.base_url = \"https://api.football-data.org/v4/\"\nclient.headers = { \"X-Auth-Token\" = \"${FD_TOKEN}\" }\n\n[sources.sp]\ntype = \"rest\"\nclient.base_url = \"https://api.spotify.com/v1/\"\nclient.auth = { type = \"bearer\", token = \"literal-token-abc\" }\n";
    let project = load_str(Path::new("."), Path::new("affluent.toml"), text, &env).unwrap();
    assert_eq!(
        project.redactor.redact("x fd-secret-999 literal-token-abc"),
        "x *** ***"
    );
    assert_eq!(project.warnings.len(), 1);
    assert!(
        project.warnings[0]
            .message
            .contains("written in the project file")
    );
    assert_eq!(project.warnings[0].line, 9);
}

#[test]
fn example_projects_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("affluent.toml").exists() {
            let env = Environment::from_map(BTreeMap::new());
            // As the CLI loads them: a source whose secrets are unset is set aside, with only
            // that as its problem (music-radar's Spotify credentials).
            let project = affluent_config::load_with_env_for(
                &dir,
                &env,
                affluent_config::SourceEnv::Deferred,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for (source, errors) in &project.unavailable {
                let text = errors.to_string();
                assert!(
                    text.lines()
                        .filter(|l| l.contains("error:"))
                        .all(|l| l.contains("environment variable `") && l.contains("` is not set")),
                    "{}: source `{source}`: {text}",
                    dir.display()
                );
            }
            n += 1;
        }
    }
    assert!(n >= 2, "expected example projects under {}", root.display());
}

#[test]
fn dotenv_next_to_the_project_supplies_variables_and_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "# local secrets, not committed\nAFFLUENT_TEST_DOTENV_TOKEN=\"dotenv-secret-123\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("affluent.toml"),
        "[sources.s]\ntype = \"rest\"\nclient.base_url = \"https://x.org\"\nclient.auth = { type = \"bearer\", token = \"${AFFLUENT_TEST_DOTENV_TOKEN}\" }\n",
    )
    .unwrap();
    let project = affluent_config::load(dir.path()).unwrap();
    assert!(project.warnings.is_empty(), "{:?}", project.warnings);
    assert_eq!(
        project.redactor.redact("Bearer dotenv-secret-123"),
        "Bearer ***"
    );
    assert_eq!(project.data_dir, dir.path().join(".affluent"));

    std::fs::write(dir.path().join(".env"), "not a variable line\n").unwrap();
    let err = affluent_config::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains(".env: line 1: expected KEY=VALUE"), "{err}");
}

#[test]
fn tables_and_models_are_checked_with_positions() {
    let text = r#"[sources.events]
type = "rest"
client.base_url = "https://app.ticketmaster.com/discovery/v2/"

[tables.events]
source = "evnts"
write = "merge"
[tables.events.columns]
name = "name"
date = { path = "dates.start.localDate", type = "dat" }

[tables.venues]
source = "events"
write = "merge"
primary_key = ["venue_id"]
order_by = "updated"
[tables.venues.columns]
id = "id"

[models.daily]
"#;
    let errs = errors(text, &[]);
    let find = |needle: &str| {
        errs.iter()
            .find(|e| e.2.contains(needle))
            .unwrap_or_else(|| panic!("no error containing {needle:?} in {errs:#?}"))
            .clone()
    };
    let (line, col, _) = find("reads unknown source `evnts`; did you mean \"events\"?");
    assert_eq!((line, col), (6, 10));
    let (line, _, _) = find("merges on a key: set `primary_key");
    assert_eq!(line, 7);
    let (line, _, msg) = find("`primary_key` names `venue_id`, which is not a column");
    assert_eq!(line, 15, "{msg}");
    let (line, _, _) = find("`order_by` names `updated`");
    assert_eq!(line, 16);
    let (line, _, _) = find("model `daily` needs its query");
    assert_eq!(line, 20);
    // The untyped column's bad `type` is reported where it is.
    assert!(errs.iter().any(|e| e.0 == 10), "{errs:#?}");
}

#[test]
fn an_unset_variable_only_stops_what_calls_its_source() {
    let text = r#"[sources.scores]
type = "rest"
client.base_url = "${SCORES_URL}"
client.headers = { "X-Auth-Token" = "${SCORES_TOKEN}" }

[sources.local]
type = "csv"
path = "data.csv"

[tables.scores]
source = "scores"
"#;
    let env = Environment::from_map(BTreeMap::new());
    let dir = Path::new(".");
    let file = Path::new("affluent.toml");
    // Strict (validate, commands that call every source): the load fails, both variables named.
    let Err(LoadError::Invalid(strict)) = load_str(dir, file, text, &env) else {
        panic!("a strict load needs every variable");
    };
    let missing = |errors: &affluent_config::ConfigErrors| -> Vec<(usize, usize)> {
        errors
            .0
            .iter()
            .filter(|d| d.message.starts_with("environment variable"))
            .map(|d| (d.line, d.column))
            .collect()
    };
    assert_eq!(missing(&strict), vec![(3, 19), (4, 37)], "{strict}");

    // Deferred (query, tables, export, serve...): the project loads; the source is unavailable.
    let project = load_str_for(dir, file, text, &env, SourceEnv::Deferred).unwrap();
    assert!(project.sources.contains_key("scores"));
    assert_eq!(
        project.unavailable.keys().collect::<Vec<_>>(),
        vec!["scores"]
    );
    assert!(project.require_sources(["local"]).is_ok());
    // Calling it reports every problem at once, with line and column.
    let e = project.require_sources(["scores"]).unwrap_err();
    assert_eq!(missing(&e), vec![(3, 19), (4, 37)], "{e}");
    let text_of = e.to_string();
    assert!(
        text_of.contains("SCORES_URL") && text_of.contains("SCORES_TOKEN"),
        "{text_of}"
    );
    assert!(project.require_all_sources().is_err());

    // Other errors of the file still stop a deferred load.
    let broken = text.replace("[tables.scores]", "[tables.scores]\nsourse = \"x\"");
    assert!(matches!(
        load_str_for(dir, file, &broken, &env, SourceEnv::Deferred),
        Err(LoadError::Invalid(_))
    ));
}

#[test]
fn json_paths_are_checked_as_the_file_is_read() {
    let text = r#"[sources.a]
type = "rest"
client.base_url = "https://x.org/"
endpoint.data_selector = "items[x"
endpoint.paginator = { type = "cursor", cursor_path = "next[" }
"#;
    let errs = errors(text, &[]);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!((errs[0].0, errs[0].1), (4, 26), "{errs:#?}");
    assert!(
        errs[0].2.contains("invalid JSON path \"items[x\""),
        "{}",
        errs[0].2
    );
    assert_eq!(errs[1].0, 5, "{errs:#?}");
    assert!(
        errs[1].2.contains("invalid JSON path \"next[\""),
        "{}",
        errs[1].2
    );
}

#[test]
fn sinks_are_checked_and_their_passwords_are_secrets() {
    let base = "[sources.s]\ntype = \"rest\"\nclient.base_url = \"http://127.0.0.1:9/\"\n[tables.points]\nsource = \"s\"\n[tables.points.columns]\nid = \"id\"\n";
    let text = format!(
        "{base}[sinks.dw]\ntype = \"postgres\"\nurl = \"mysql://x@h/db\"\nschema = \"Bad-Schema\"\ntables = [\"pionts\", \"points\", \"points\"]\nkeys = {{ points = [\"idd\"], other = [\"a\"] }}\n[sinks.two]\ntype = \"postgress\"\n"
    );
    let got = errors(&text, &[]);
    let messages: Vec<&str> = got.iter().map(|(_, _, m)| m.as_str()).collect();
    for wanted in [
        "sink `dw` writes `pionts`, which is not a table or model of the project; did you mean `points`?",
        "sink `dw` lists `points` twice",
        "a postgres url starts with `postgres://`, not `mysql://`",
        "invalid schema `Bad-Schema`",
        "`idd` is not a column of `points` (its columns: id)",
        "sink `dw` has a key for `other`, which it does not write",
        "unknown value \"postgress\" in [sinks.two]; did you mean \"postgres\"?",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(wanted)),
            "no error containing {wanted:?} in {got:#?}"
        );
    }
    assert!(got.iter().all(|(line, _, _)| *line > 7), "{got:?}");

    // A url from the environment: its password is a secret; an empty one turns the sink off.
    let text = format!(
        "{base}[sinks.dw]\ntype = \"postgres\"\nurl = \"${{DW_URL:-}}\"\ntables = [\"points\"]\n"
    );
    let env = Environment::from_map(BTreeMap::from([(
        "DW_URL".to_string(),
        "postgres://loader:p%40ss-w0rd-777@db.internal:5432/dw".to_string(),
    )]));
    let project = load_str(Path::new("."), Path::new("affluent.toml"), &text, &env).unwrap();
    assert_eq!(
        project.redactor.redact("x p%40ss-w0rd-777 p@ss-w0rd-777"),
        "x *** ***"
    );
    assert!(project.sinks["dw"].off().is_none());
    let off = load_str(
        Path::new("."),
        Path::new("affluent.toml"),
        &text,
        &Environment::default(),
    )
    .unwrap();
    assert!(off.sinks["dw"].off().unwrap().contains("`url` is empty"));
}

#[test]
fn response_values_and_panel_colours_are_checked() {
    let text = r##"
[sources.s]
type = "rest"
client.base_url = "http://127.0.0.1:9/"
[tables.points]
source = "s"
[tables.points.columns]
observed = "@interval_ends"
member = "@key"
fetched = { path = "@fetched_at", type = "timestamp" }
id = "@id"
kind = '["@type"]'
when = { path = "@interval_end", type = "int", format = "%Y" }
[pages.p.panels.m]
kind = "map"
sql = "SELECT 1 AS lon, 2 AS lat"
colors = { ok = "#2e7d32", bad = "red", worse = "#12345" }
[pages.p.panels.k]
kind = "kpi"
sql = "SELECT 1"
y2 = ["x"]
colors = { x = "#fff" }
[pages.p.panels.l]
kind = "line"
sql = "SELECT 1 AS d, 'a' AS s, 2 AS v"
series = "s"
y2 = ["v"]
"##;
    let got = errors(text, &[]);
    let messages: Vec<&str> = got.iter().map(|(_, _, m)| m.as_str()).collect();
    for wanted in [
        "column `observed`: unknown response value \"@interval_ends\"; did you mean \"@interval_end\"? (a record field named \"@interval_ends\" is read with `[\"@interval_ends\"]`)",
        "`format` of column `when` needs `type = \"date\"` or `\"timestamp\"`",
        "column `member`: `@key` is the member name of an `explode` over an object of objects, and table `points` has no `explode`",
        "colour \"red\" of `bad` is not `#rgb` or `#rrggbb`",
        "colour \"#12345\" of `worse` is not `#rgb` or `#rrggbb`",
        "`y2` (a second axis) is for line, area and bar panels",
        "`colors` is for line, area, bar and map panels",
        "`y2` names columns, and with `series` the series are the values of a column",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(wanted)),
            "no error containing {wanted:?} in {got:#?}"
        );
    }
    assert_eq!(got.len(), 8, "{got:#?}");
}

#[test]
fn table_locations_are_folders_or_s3_and_credentials_stay_secret() {
    let text = r#"data_dir = "s3://lake/project"
tables_location = "gs://lake/tables"
[sources.s]
type = "csv"
path = "*.csv"
[tables.a]
source = "s"
location = "s3://lake/shared"
[tables.b]
source = "s"
location = "s3://lake/shared/"
[models.m]
sql = "SELECT 1"
location = "s3:///nobucket"
"#;
    let errs = errors(text, &[]);
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert_eq!(errs[0].0, 1);
    assert!(
        errs[0]
            .2
            .contains("tables_location = \"s3://lake/project\"")
    );
    assert_eq!(errs[1].0, 2);
    assert!(errs[1].2.contains("s3://bucket/prefix"));
    assert!(errs.iter().any(|e| e.0 == 11 && e.2.contains("overlap")));
    assert!(errs.iter().any(|e| e.0 == 14 && e.2.contains("no bucket")));

    let text = "tables_location = \"s3://lake/p\"\n[sources.s]\ntype = \"csv\"\npath = \"*.csv\"\n[tables.t]\nsource = \"s\"\n";
    let env = Environment::from_map(BTreeMap::from([
        ("AWS_ACCESS_KEY_ID".to_string(), "id".to_string()),
        (
            "AWS_SECRET_ACCESS_KEY".to_string(),
            "s3cr3t-value".to_string(),
        ),
        ("HOME".to_string(), "/root".to_string()),
    ]));
    let project = load_str(Path::new("/p"), Path::new("affluent.toml"), text, &env).unwrap();
    assert_eq!(project.storage.location("t").to_string(), "s3://lake/p/t/");
    let keys: Vec<&String> = project.storage.s3.0.keys().collect();
    assert_eq!(keys, ["aws_access_key_id", "aws_secret_access_key"]);
    assert!(!format!("{project:?}").contains("s3cr3t-value"));
    assert_eq!(project.redactor.redact("x s3cr3t-value"), "x ***");
}

#[test]
fn streams_are_checked_with_positions() {
    let text = r#"[sources.velib]
type = "rest"
client.base_url = "https://opendata.paris.fr/"

[tables.station_status]
source = "velib"
[tables.station_status.columns]
stationcode = "stationcode"
duedate = { path = "duedate", type = "timestamp" }
mechanical = "mechanical"

[tables.stations]
source = "velib"
write = "merge"
primary_key = ["stationcode"]
[tables.stations.columns]
stationcode = "stationcode"

[streams.station_3min]
input = "station_status"
key = "stationcode"
time = "duedate"
size = "3m"
delay = "2m"
lateness = "10m"
[streams.station_3min.aggregates]
mechanical = "avg(mechanical)"
docks = "avg(numdocks)"
events = "count(mechanical)"

[streams.per_zone]
input = "stations"
key = "stationcode"
time = "duedate"
window = "hopping"
size = "1m"
slide = "5m"
gap = "1m"
[streams.per_zone.aggregates]
bikes = "median(mechanical)"

[streams.nowhere]
input = "station_stat"
key = "stationcode"
time = "duedate"
window = "session"
aggregates = {}
"#;
    let errs = errors(text, &[]);
    let find = |needle: &str| {
        errs.iter()
            .find(|e| e.2.contains(needle))
            .unwrap_or_else(|| panic!("no error containing {needle:?} in {errs:#?}"))
            .clone()
    };
    let (line, _, _) =
        find("reads column `numdocks`, which table `station_status` does not declare");
    assert_eq!(line, 28);
    let (line, _, _) = find("aggregate `events` of stream `station_3min` clashes");
    assert_eq!(line, 29);
    let (line, _, _) = find("\"median(mechanical)\" is not an aggregate");
    assert_eq!(line, 40);
    let (line, _, _) = find(
        "reads `station_stat`, which is not a table of the project (a stream's input is a `[tables.NAME]`); did you mean \"station_status\"?",
    );
    assert_eq!(line, 43);
    find("stream `nowhere` (session windows) needs `gap`");
    find("stream `nowhere` has no aggregates");
    let (line, _, _) =
        find("stream `per_zone` reads table `stations`, which is not an `append` table");
    assert_eq!(line, 32);
    let (line, _, _) = find("`gap` does not apply to the windows of stream `per_zone`");
    assert_eq!(line, 38);
    let (line, _, _) = find("a hopping window's `slide` (5m) must not exceed its `size` (1m)");
    assert_eq!(line, 37);
}

#[test]
fn a_stream_reads_an_append_table_and_its_windows_can_run() {
    let base = r#"[sources.velib]
type = "rest"
client.base_url = "https://opendata.paris.fr/"

[tables.stations]
source = "velib"
write = "merge"
primary_key = ["stationcode"]

[tables.status]
source = "velib"
"#;
    // `[streams.s]` over table `input`, after `extra` lines of tables.
    let stream = |extra: &str, input: &str, window: &str, aggregates: &str| {
        errors(
            &format!(
                "{base}{extra}\n[streams.s]\ninput = \"{input}\"\nkey = \"stationcode\"\ntime = \"duedate\"\n{window}\naggregates = {{ {aggregates} }}\n"
            ),
            &[],
        )
    };
    let errs = stream("", "stations", "size = \"3m\"", "bikes = \"avg(b)\"");
    assert!(
        errs.iter().any(|e| e.2.contains("not an `append` table")),
        "{errs:#?}"
    );
    let errs = stream(
        "",
        "status",
        "window = \"hopping\"\nsize = \"1m\"\nslide = \"5m\"",
        "bikes = \"avg(b)\"",
    );
    assert!(
        errs.iter()
            .any(|e| e.2.contains("`slide` (5m) must not exceed its `size` (1m)")),
        "{errs:#?}"
    );
    let errs = stream(
        "\n[tables.s_open]\nsource = \"velib\"",
        "status",
        "size = \"3m\"",
        "bikes = \"last(b)\"",
    );
    assert!(
        errs.iter()
            .any(|e| e.2.contains("`s_open` is already a table")),
        "{errs:#?}"
    );
    let ok = stream(
        "",
        "status",
        "window = \"session\"\ngap = \"5m\"",
        "bikes = \"last(b)\", n = \"count(b)\"",
    );
    assert!(ok.is_empty(), "{ok:#?}");
}

#[test]
fn a_bus_says_which_key_is_wrong_and_what_it_takes() {
    let embedded = errors("[bus]\npartitions = 4\n", &[]);
    assert_eq!(embedded.len(), 1, "{embedded:#?}");
    assert_eq!((embedded[0].0, embedded[0].1), (2, 14));
    assert!(
        embedded[0]
            .2
            .contains("`partitions` is for `[bus] kind = \"nats\"`"),
        "{}",
        embedded[0].2
    );
    let nats = errors(
        "[bus]\nkind = \"nats\"\nurl = \"http://127.0.0.1:4222\"\npartitions = 0\nack_wait = \"0s\"\n",
        &[],
    );
    let messages: Vec<&str> = nats.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(nats.len(), 3, "{nats:#?}");
    assert!(
        messages[0].contains("must be a NATS server"),
        "{messages:?}"
    );
    assert_eq!(nats[0].0, 3);
    assert!(messages[1].contains("between 1 and 256"), "{messages:?}");
    assert!(messages[2].contains("at least 1s"), "{messages:?}");
    let typo = errors("[bus]\nkind = \"kafka\"\n", &[]);
    assert!(
        typo.iter()
            .any(|e| e.2.contains("embedded") && e.2.contains("nats")),
        "{typo:#?}"
    );
    assert!(
        errors(
            "[bus]\nkind = \"nats\"\nurl = \"${NATS_URL:-nats://127.0.0.1:4222}\"\n",
            &[]
        )
        .is_empty()
    );
}
