//! Alerts over real Delta tables: each rule kind fires, does not fire, does not repeat, clears
//! and fires again, day by day; messages in the project's locale; firings exactly once in the
//! `alert_firings` table.

#![allow(clippy::unwrap_used)] // tests fail loudly

use std::collections::BTreeMap;
use std::sync::Arc;

use affluent_alerts::{AlertError, Alerts, Mode};
use affluent_config::Environment;
use affluent_landing::NewEntry;
use affluent_sources::Connectors;
use affluent_tables::query::{OutputFormat, render};
use affluent_tables::{LoadScope, Warehouse};
use jiff::{Timestamp, ToSpan};

struct Project {
    _dir: tempfile::TempDir,
    warehouse: Warehouse,
    alerts: Alerts,
    day: usize,
}

const BASE: &str = r#"
[dashboard]
locale = "fr-FR"

[sources.obs]
type = "rest"
client.base_url = "http://127.0.0.1:9/"

[tables.history]
source = "obs"
[tables.history.columns]
entity = { path = "entity", type = "string" }
day = { path = "day", type = "string" }
followers = { path = "followers", type = "float" }
score = { path = "score", type = "float" }
"#;

impl Project {
    fn new(alerts: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("affluent.toml"),
            format!("{BASE}\n{alerts}"),
        )
        .unwrap();
        let project =
            affluent_config::load_with_env(dir.path(), &Environment::from_map(Default::default()))
                .unwrap_or_else(|e| panic!("{e}"));
        let warehouse = Warehouse::new(Arc::new(Connectors::new(project).unwrap()));
        Self {
            _dir: dir,
            alerts: Alerts::new(warehouse.clone()),
            warehouse,
            day: 0,
        }
    }

    fn now(&self) -> Timestamp {
        let base: Timestamp = "2024-01-01T08:00:00Z".parse().unwrap();
        base + (12 * self.day as i64).hours()
    }

    /// Lands and loads one day of observations `(entity, followers, score)`.
    async fn observe(&mut self, rows: &[(&str, f64, f64)]) {
        self.day += 1;
        let day = format!("2024-01-{:02}", self.day);
        let records: Vec<serde_json::Value> = rows
            .iter()
            .map(|(e, f, s)| serde_json::json!({"entity": e, "day": day, "followers": f, "score": s}))
            .collect();
        self.land(&records).await;
    }

    /// Lands and loads observations `(entity, day, followers)` of any days at once.
    async fn observe_days(&mut self, rows: &[(&str, String, f64)]) {
        self.day += 1;
        let records: Vec<serde_json::Value> = rows
            .iter()
            .map(|(e, d, f)| serde_json::json!({"entity": e, "day": d, "followers": f, "score": 0}))
            .collect();
        self.land(&records).await;
    }

    async fn land(&mut self, records: &[serde_json::Value]) {
        self.warehouse
            .landing()
            .write(
                NewEntry {
                    source: "obs".into(),
                    run_id: format!("r{}", self.day),
                    kind: "http".into(),
                    url: "http://127.0.0.1:9/obs".into(),
                    method: Some("GET".into()),
                    request_body: None,
                    vars: BTreeMap::new(),
                    page: 0,
                    status: 200,
                    headers: BTreeMap::new(),
                    fetched_at: Timestamp::now(),
                    interval: None,
                },
                serde_json::to_vec(records).unwrap().as_slice(),
            )
            .unwrap();
        self.warehouse
            .load_table("history", &LoadScope::Pending)
            .await
            .unwrap();
    }

    /// Evaluates the alert and returns the entities that fired, sorted.
    async fn fired(&self, alert: &str) -> Vec<String> {
        let e = self
            .alerts
            .evaluate(alert, Mode::Record, self.now())
            .await
            .unwrap();
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        let mut out: Vec<String> = e
            .fired
            .iter()
            .map(|f| {
                let v: serde_json::Value = serde_json::from_str(&f.entity).unwrap();
                v["entity"].as_str().unwrap().to_string()
            })
            .collect();
        out.sort();
        out
    }

    async fn csv(&self, sql: &str) -> String {
        let batches = self.warehouse.query(sql).await.unwrap();
        render(&batches, OutputFormat::Csv).unwrap()
    }
}

fn alert(name: &str, when: &str, extra: &str) -> String {
    format!(
        r#"
[alerts.{name}]
sql = "SELECT entity, day, followers, score FROM history"
entity = ["entity"]
time = "day"
message = "{{entity}}: {{value:int}} ({{change:pct}})"
when = {when}
{extra}
"#
    )
}

/// Day by day: the observations, then the entities expected to fire after loading them.
type Days<'a> = &'a [(&'a [(&'a str, f64, f64)], &'a [&'a str])];

async fn run_case(name: &str, when: &str, extra: &str, days: Days<'_>) {
    let mut p = Project::new(&alert(name, when, extra));
    for (i, (rows, expected)) in days.iter().enumerate() {
        p.observe(rows).await;
        let fired = p.fired(name).await;
        assert_eq!(
            fired,
            expected.to_vec(),
            "alert `{name}` ({when}), day {}",
            i + 1
        );
    }
    // Every firing is in the table once.
    let total: usize = days.iter().map(|(_, f)| f.len()).sum();
    let counted = p
        .csv(&format!(
            "SELECT count(*) AS n FROM alert_firings WHERE alert = '{name}'"
        ))
        .await;
    assert_eq!(counted.lines().nth(1), Some(total.to_string().as_str()));
}

#[tokio::test]
async fn threshold_fires_once_while_it_holds_and_again_after_it_cleared() {
    run_case(
        "big",
        "{ value = \"followers\", above = 100 }",
        "",
        &[
            (&[("a", 50.0, 0.0), ("b", 150.0, 0.0)], &["b"]),
            (&[("a", 150.0, 0.0), ("b", 160.0, 0.0)], &["a"]),
            (&[("a", 90.0, 0.0), ("b", 170.0, 0.0)], &[]),
            (&[("a", 120.0, 0.0), ("b", 171.0, 0.0)], &["a"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn growth_against_the_previous_observation() {
    run_case(
        "growth",
        "{ value = \"followers\", change_above = 0.05 }",
        "",
        &[
            // No previous observation: no change, nothing fires.
            (&[("a", 100.0, 0.0)], &[]),
            (&[("a", 110.0, 0.0)], &["a"]),
            (&[("a", 120.0, 0.0)], &[]),
            (&[("a", 121.0, 0.0)], &[]),
            (&[("a", 130.0, 0.0)], &["a"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn drop_against_the_previous_observation() {
    run_case(
        "drop",
        "{ value = \"followers\", change_below = -0.05 }",
        "",
        &[
            (&[("a", 100.0, 0.0), ("b", 100.0, 0.0)], &[]),
            (&[("a", 90.0, 0.0), ("b", 99.0, 0.0)], &["a"]),
            (&[("a", 80.0, 0.0), ("b", 90.0, 0.0)], &["b"]),
            (&[("a", 80.0, 0.0), ("b", 90.0, 0.0)], &[]),
            (&[("a", 70.0, 0.0), ("b", 90.0, 0.0)], &["a"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn crossing_a_level_between_two_observations() {
    run_case(
        "hundred_k",
        "{ value = \"followers\", crosses_above = 100000 }",
        "",
        &[
            (&[("a", 99_000.0, 0.0)], &[]),
            (&[("a", 100_500.0, 0.0)], &["a"]),
            // Still above: it does not cross again.
            (&[("a", 101_000.0, 0.0)], &[]),
            (&[("a", 99_000.0, 0.0)], &[]),
            (&[("a", 100_000.0, 0.0)], &["a"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn compound_trending_needs_growth_and_score() {
    run_case(
        "trending",
        "{ all = [{ value = \"followers\", change_above = 0.15 }, { value = \"score\", above = 60 }] }",
        "",
        &[
            (&[("a", 100.0, 70.0), ("b", 100.0, 90.0)], &[]),
            (&[("a", 120.0, 70.0), ("b", 105.0, 90.0)], &["a"]),
            // Growth without the score: cleared.
            (&[("a", 150.0, 50.0), ("b", 106.0, 90.0)], &[]),
            (&[("a", 180.0, 65.0), ("b", 130.0, 91.0)], &["a", "b"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn cooldown_fires_again_while_the_condition_holds() {
    // Evaluations are 12 hours apart: with a 1-day cooldown, every other one fires again.
    run_case(
        "hot",
        "{ value = \"followers\", above = 100 }",
        "cooldown = \"1d\"",
        &[
            (&[("a", 150.0, 0.0)], &["a"]),
            (&[("a", 150.0, 0.0)], &[]),
            (&[("a", 150.0, 0.0)], &["a"]),
            (&[("a", 150.0, 0.0)], &[]),
        ],
    )
    .await;
}

#[tokio::test]
async fn messages_are_written_in_the_project_locale() {
    let mut p = Project::new(
        r#"
[alerts.growth]
sql = "SELECT entity, day, followers FROM history"
entity = ["entity"]
time = "day"
severity = "info"
message = "Croissance de {change:pct} des followers ({previous:int} → {value:int})"
when = { value = "followers", change_above = 0.05 }
"#,
    );
    p.observe(&[("a", 50_000.0, 0.0)]).await;
    p.observe(&[("a", 56_422.0, 0.0)]).await;
    let e = p
        .alerts
        .evaluate("growth", Mode::Record, p.now())
        .await
        .unwrap();
    assert_eq!(e.fired.len(), 1);
    let f = &e.fired[0];
    assert_eq!(
        f.message,
        "Croissance de 12,8 % des followers (50 000 → 56 422)"
    );
    assert_eq!(f.severity, "info");
    assert_eq!(f.observed_at.as_deref(), Some("2024-01-02"));
    assert_eq!(f.previous, Some(50_000.0));
    let csv = p
        .csv("SELECT alert, entity, message, value FROM alert_firings")
        .await;
    assert!(
        csv.contains("growth,\"{\"\"entity\"\":\"\"a\"\"}\",Croissance de 12,8 %")
            || csv.contains("Croissance de 12,8 % des followers (50 000 → 56 422)"),
        "{csv}"
    );
}

#[tokio::test]
async fn a_dry_run_records_nothing() {
    let mut p = Project::new(&alert("big", "{ value = \"followers\", above = 100 }", ""));
    p.observe(&[("a", 150.0, 0.0)]).await;
    for _ in 0..2 {
        let e = p
            .alerts
            .evaluate("big", Mode::DryRun, p.now())
            .await
            .unwrap();
        assert_eq!(e.fired.len(), 1, "a dry run does not remember it fired");
    }
    assert!(p.warehouse.open("alert_firings").await.unwrap().is_none());
    assert_eq!(p.alerts.list().unwrap()[0].evaluations, 0);
    assert_eq!(p.fired("big").await, vec!["a"]);
    let listed = p.alerts.list().unwrap();
    assert_eq!((listed[0].evaluations, listed[0].active), (1, 1));
}

#[tokio::test]
async fn a_crash_between_the_state_and_the_table_is_healed_once() {
    let mut p = Project::new(&alert("big", "{ value = \"followers\", above = 100 }", ""));
    p.observe(&[("a", 150.0, 0.0), ("b", 200.0, 0.0)]).await;
    // What a process killed after writing the state of evaluation 1, before appending its
    // firings, leaves: the state with the firings pending, and no table.
    let dry = p
        .alerts
        .evaluate("big", Mode::DryRun, p.now())
        .await
        .unwrap();
    let state_dir = p.warehouse.project().data_dir.join("state/alerts");
    std::fs::create_dir_all(&state_dir).unwrap();
    let mut fired = dry.fired.clone();
    for f in &mut fired {
        f.evaluation = 1;
    }
    let state = serde_json::json!({
        "evaluation": 1,
        "evaluated_at": p.now(),
        "entities": {
            "{\"entity\":\"a\"}": {"active": true, "fired_at": p.now()},
            "{\"entity\":\"b\"}": {"active": true, "fired_at": p.now()},
        },
        "pending": fired,
    });
    std::fs::write(state_dir.join("big.json"), state.to_string()).unwrap();
    let e = p
        .alerts
        .evaluate("big", Mode::Record, p.now())
        .await
        .unwrap();
    assert_eq!((e.recovered.len(), e.fired.len()), (2, 0));
    // Again: the table holds evaluation 1 now, nothing is appended twice.
    let e = p
        .alerts
        .evaluate("big", Mode::Record, p.now())
        .await
        .unwrap();
    assert_eq!((e.recovered.len(), e.fired.len()), (0, 0));
    let csv = p
        .csv("SELECT evaluation, count(*) AS n FROM alert_firings GROUP BY evaluation")
        .await;
    assert_eq!(csv.trim(), "evaluation,n\n1,2");
}

#[tokio::test]
async fn bad_names_and_columns_say_what_to_do() {
    let mut p = Project::new(
        r#"
[alerts.typo]
sql = "SELECT entity, day, followers FROM history"
entity = ["entity"]
time = "day"
message = "{entity} {folowers}"
when = { value = "followers", above = 1 }
"#,
    );
    p.observe(&[("a", 150.0, 0.0)]).await;
    let err = p
        .alerts
        .evaluate("typo", Mode::Record, p.now())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("message's placeholder `folowers` is not a column of its query"),
        "{err}"
    );
    let err = p
        .alerts
        .evaluate("tpyo", Mode::DryRun, p.now())
        .await
        .unwrap_err();
    assert!(matches!(err, AlertError::Unknown { .. }));
    assert!(err.to_string().contains("did you mean `typo`"), "{err}");
}

#[test]
fn the_project_file_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("affluent.toml"),
        format!(
            "{BASE}\n{}",
            r#"
[alerts.growth]
sql = "SELECT * FROM history"
message = "{change:money}"
when = { value = "followers", change_above = 0.05 }
"#
        ),
    )
    .unwrap();
    let err =
        affluent_config::load_with_env(dir.path(), &Environment::from_map(Default::default()))
            .unwrap_err()
            .to_string();
    assert!(err.contains("set `time`"), "{err}");
    assert!(err.contains("unknown format `money`"), "{err}");

    std::fs::write(
        dir.path().join("affluent.toml"),
        format!(
            "{BASE}\n{}\nnotify = [\"email\"]\n",
            alert("a", "{ value = \"followers\", above = 1 }", "")
        ),
    )
    .unwrap();
    let err =
        affluent_config::load_with_env(dir.path(), &Environment::from_map(Default::default()))
            .unwrap_err()
            .to_string();
    assert!(
        err.contains("notifies by email but the project has no [notify.email]"),
        "{err}"
    );
}

#[tokio::test]
async fn firings_reach_the_webhook_and_the_mailbox_once_per_pass() {
    use affluent_notify::testing::{smtp_sink, webhook_receiver_failing};
    // The webhook fails twice before it accepts: the document is retried, not lost.
    let (hook, bodies) = webhook_receiver_failing(2).await;
    let (smtp, mails) = smtp_sink().await;
    let mut p = Project::new(&format!(
        r#"
[notify.webhook]
url = "{hook}"
[notify.email]
smtp_url = "{smtp}"
from = "affluent@example.org"
to = ["label@example.org"]
{}
notify = ["email", "webhook"]
{}
notify = ["email"]
"#,
        alert("big", "{ value = \"followers\", above = 100 }", ""),
        alert("small", "{ value = \"followers\", below = 10 }", ""),
    ));
    p.observe(&[("a", 150.0, 0.0), ("b", 5.0, 0.0), ("c", 500.0, 0.0)])
        .await;
    let pass = p.alerts.evaluate_many(&[], p.now()).await;
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    let evaluations = pass.evaluations;
    assert_eq!(evaluations.len(), 2);
    let sent = p.alerts.notify(&evaluations).await;
    assert!(sent.errors.is_empty(), "{:?}", sent.errors);
    assert_eq!((sent.posted, sent.emailed), (2, 3));
    let bodies = bodies.lock().unwrap().clone();
    // Two refused attempts and the accepted one, each the same document.
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    let doc = &bodies[2];
    assert_eq!(doc["event"], "alerts");
    let entities: Vec<&str> = doc["firings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["entity"].as_str().unwrap())
        .collect();
    assert_eq!(entities, vec!["{\"entity\":\"a\"}", "{\"entity\":\"c\"}"]);
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1, "one email for the pass: {mails:?}");
    assert!(mails[0].contains("3 alerts"), "{}", mails[0]);
    assert!(
        mails[0].contains("[warning] small {\"entity\":\"b\"}: b: 5"),
        "{}",
        mails[0]
    );

    // Nothing new fires: nothing is sent.
    let evaluations = p.alerts.evaluate_many(&[], p.now()).await.evaluations;
    let sent = p.alerts.notify(&evaluations).await;
    assert_eq!((sent.posted, sent.emailed), (0, 0));
}

#[tokio::test]
async fn a_webhook_that_keeps_failing_is_reported_and_the_firing_kept() {
    use affluent_notify::testing::webhook_receiver_failing;
    let (hook, bodies) = webhook_receiver_failing(usize::MAX).await;
    let mut p = Project::new(&format!(
        "[notify.webhook]\nurl = \"{hook}\"\n{}\nnotify = [\"webhook\"]\n",
        alert("big", "{ value = \"followers\", above = 100 }", "")
    ));
    p.observe(&[("a", 150.0, 0.0)]).await;
    let evaluations = p.alerts.evaluate_many(&[], p.now()).await.evaluations;
    let sent = p.alerts.notify(&evaluations).await;
    assert_eq!(sent.posted, 0);
    assert_eq!(sent.errors.len(), 1);
    assert!(
        sent.errors[0].to_string().contains("503"),
        "{}",
        sent.errors[0]
    );
    assert_eq!(bodies.lock().unwrap().len(), 3, "three attempts");
    let csv = p.csv("SELECT count(*) AS n FROM alert_firings").await;
    assert_eq!(csv.lines().nth(1), Some("1"));
}

#[tokio::test]
async fn a_firing_not_yet_delivered_is_sent_with_the_next_pass_and_then_no_more() {
    use affluent_notify::testing::webhook_receiver_failing;
    // The webhook refuses the first pass entirely (3 attempts), then accepts.
    let (hook, received) = webhook_receiver_failing(3).await;
    let mut p = Project::new(&format!(
        "[notify.webhook]\nurl = \"{hook}\"\n{}\nnotify = [\"webhook\"]\n",
        alert("big", "{ value = \"followers\", above = 100 }", "")
    ));
    p.observe(&[("a", 150.0, 0.0)]).await;
    let evaluations = p.alerts.evaluate_many(&[], p.now()).await.evaluations;
    let sent = p.alerts.notify(&evaluations).await;
    assert_eq!((sent.posted, sent.errors.len()), (0, 1));

    // A second firing, then the process "crashes" between recording it and sending it: a new
    // Alerts (another process) records nothing new, and its pass sends both, once.
    p.observe(&[("a", 150.0, 0.0), ("b", 300.0, 0.0)]).await;
    let recorded = p.alerts.evaluate_many(&[], p.now()).await.evaluations;
    assert_eq!(recorded[0].fired.len(), 1);
    let other = Alerts::new(p.warehouse.clone());
    p.observe(&[("a", 150.0, 0.0), ("b", 300.0, 0.0)]).await;
    let evaluations = other.evaluate_many(&[], p.now()).await.evaluations;
    assert!(evaluations[0].fired.is_empty(), "nothing new fires");
    let sent = other.notify(&evaluations).await;
    assert!(sent.errors.is_empty(), "{:?}", sent.errors);
    assert_eq!(sent.posted, 2);
    let bodies = received.lock().unwrap().clone();
    let last = bodies.last().unwrap();
    let entities: Vec<&str> = last["firings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["entity"].as_str().unwrap())
        .collect();
    assert_eq!(entities, vec!["{\"entity\":\"a\"}", "{\"entity\":\"b\"}"]);

    // Delivered: the next pass sends nothing.
    p.observe(&[("a", 150.0, 0.0), ("b", 300.0, 0.0)]).await;
    let evaluations = p.alerts.evaluate_many(&[], p.now()).await.evaluations;
    assert!(evaluations[0].outbox.is_empty());
    let sent = p.alerts.notify(&evaluations).await;
    assert_eq!(sent.posted, 0);
    assert_eq!(
        received.lock().unwrap().len(),
        4,
        "3 refused attempts and one accepted document, nothing since"
    );
}

/// `2024-01-01` + n days (2024-01-01 is a Monday).
fn day(n: i64) -> String {
    let d: jiff::civil::Date = "2024-01-01".parse().unwrap();
    (d + n.days()).to_string()
}

#[tokio::test]
async fn baseline_of_the_same_weekdays() {
    let mut p = Project::new(&alert(
        "busy_monday",
        "{ value = \"followers\", baseline_above = 0.2, baseline = \"4 same weekdays\" }",
        "",
    ));
    // Four weeks: Mondays 100, other days 50.
    let weeks: Vec<(&str, String, f64)> = (0..28)
        .map(|n| ("a", day(n), if n % 7 == 0 { 100.0 } else { 50.0 }))
        .collect();
    p.observe_days(&weeks).await;
    // The fifth Monday is 130: 30 % above its baseline (the four Mondays' mean, 100), though
    // far below no other day's value is it compared with.
    assert!(
        p.fired("busy_monday").await.is_empty(),
        "a Sunday at 50 vs 50"
    );
    p.observe_days(&[("a", day(28), 130.0)]).await;
    let e = p
        .alerts
        .evaluate("busy_monday", Mode::DryRun, p.now())
        .await
        .unwrap();
    assert_eq!(e.fired.len(), 1);
    assert_eq!(e.fired[0].previous, Some(100.0));
    assert!((e.fired[0].change.unwrap() - 0.3).abs() < 1e-12);
    assert_eq!(p.fired("busy_monday").await, vec!["a"]);
    // A Monday at 110 is within 20 % of its baseline (now 107.5 with the 130): cleared.
    p.observe_days(&[("a", day(35), 110.0)]).await;
    assert!(p.fired("busy_monday").await.is_empty());
    p.observe_days(&[("a", day(42), 200.0)]).await;
    assert_eq!(p.fired("busy_monday").await, vec!["a"]);
}

#[tokio::test]
async fn robust_z_score_anomaly_over_a_window() {
    let mut p = Project::new(&alert(
        "odd",
        "{ value = \"followers\", anomaly = 3.5, window = 14 }",
        "",
    ));
    let normal = [
        100.0, 101.0, 99.0, 102.0, 98.0, 100.0, 101.0, 99.0, 100.0, 102.0, 98.0, 101.0, 99.0, 100.0,
    ];
    let rows: Vec<(&str, String, f64)> = normal
        .iter()
        .enumerate()
        .map(|(n, v)| ("a", day(n as i64), *v))
        .collect();
    p.observe_days(&rows).await;
    assert!(p.fired("odd").await.is_empty());
    // Within the spread of the window: no anomaly.
    p.observe_days(&[("a", day(14), 103.0)]).await;
    assert!(p.fired("odd").await.is_empty());
    p.observe_days(&[("a", day(15), 150.0)]).await;
    let e = p
        .alerts
        .evaluate("odd", Mode::DryRun, p.now())
        .await
        .unwrap();
    let score = e.fired[0].score.unwrap();
    assert!(score > 3.5, "{score}");
    assert_eq!(e.fired[0].previous, Some(100.0), "the window's median");
    assert_eq!(p.fired("odd").await, vec!["a"]);
    // A drop is an anomaly too, after the spike cleared.
    p.observe_days(&[("a", day(16), 100.0)]).await;
    assert!(p.fired("odd").await.is_empty());
    p.observe_days(&[("a", day(17), 40.0)]).await;
    assert_eq!(p.fired("odd").await, vec!["a"]);
}

/// Ten days of followers for three entities: steady, a jump on day 3 then again on day 7 after
/// a flat day, and a drop on day 5.
fn ten_days() -> Vec<(&'static str, String, f64)> {
    let mut rows = Vec::new();
    let series: [(&str, [f64; 10]); 3] = [
        (
            "steady",
            [
                100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 106.0, 107.0, 108.0, 109.0,
            ],
        ),
        (
            "jumpy",
            [
                100.0, 100.0, 120.0, 121.0, 121.0, 121.0, 150.0, 151.0, 180.0, 181.0,
            ],
        ),
        (
            "falling",
            [
                100.0, 100.0, 100.0, 100.0, 80.0, 81.0, 82.0, 60.0, 61.0, 62.0,
            ],
        ),
    ];
    for (entity, values) in series {
        for (n, v) in values.iter().enumerate() {
            rows.push((entity, day(n as i64), *v));
        }
    }
    rows
}

#[tokio::test]
async fn loading_many_days_at_once_fires_what_daily_evaluations_would() {
    let growth = alert(
        "growth",
        "{ value = \"followers\", change_above = 0.05 }",
        "",
    );
    let rows = ten_days();
    // Day by day.
    let mut daily = Project::new(&growth);
    let mut expected = Vec::new();
    for n in 0..10 {
        let today: Vec<_> = rows
            .iter()
            .filter(|(_, d, _)| *d == day(n))
            .cloned()
            .collect();
        daily.observe_days(&today).await;
        let e = daily
            .alerts
            .evaluate("growth", Mode::Record, daily.now())
            .await
            .unwrap();
        expected.extend(
            e.fired
                .into_iter()
                .map(|f| (f.entity, f.observed_at, f.message)),
        );
    }
    // The jumps of days 3, 7 and 9 (day 9 while the day-7 one had cleared on day 8).
    assert_eq!(expected.len(), 3, "{expected:?}");
    // All ten days in one load, evaluated once: the same firings, with their days.
    let mut once = Project::new(&growth);
    once.observe_days(&rows).await;
    let e = once
        .alerts
        .evaluate("growth", Mode::Record, once.now())
        .await
        .unwrap();
    let mut got: Vec<_> = e
        .fired
        .into_iter()
        .map(|f| (f.entity, f.observed_at, f.message))
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert_eq!(e.holding, 0, "day 10 grew 0.6 %");
    // Evaluated again with nothing new: the latest is checked again, and nothing fires.
    assert!(once.fired("growth").await.is_empty());
    // One more day: only it is walked.
    once.observe_days(&[("steady", day(10), 130.0)]).await;
    assert_eq!(once.fired("growth").await, vec!["steady"]);
}
