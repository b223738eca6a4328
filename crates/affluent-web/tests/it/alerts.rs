//! The alerts panel and the per-user seen state: firings come from a real evaluation of the
//! alerts engine over the fixture's table.

use super::*;

/// The fixture with an alert and a page listing its firings. Visits are day index + 10 ×
/// counter: each of the five (agency, counter) entities goes above 50 once and stays there
/// (counter 0 on 2024-04-21, counter 1 on 2024-04-11), so the first evaluation, walking every
/// day, fires each once, on that day.
async fn alerts_fixture() -> Fixture {
    let project = format!(
        "{PROJECT}\n{}",
        r#"
[alerts.busy]
sql = "SELECT agency, counter, day, visits FROM counts"
entity = ["agency", "counter"]
time = "day"
severity = "critical"
message = "{agency}/{counter} : {value:int} visites le {day}"
when = { value = "visits", above = 50 }

[pages.alerts]
[pages.alerts.panels.firings]
kind = "alerts"
limit = 3
"#
    );
    fixture_from(&project).await
}

async fn evaluate(f: &Fixture) {
    let pass = affluent_alerts::Alerts::new(f.warehouse.clone())
        .evaluate_many(&[], jiff::Timestamp::now())
        .await;
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    assert_eq!(pass.evaluations[0].fired.len(), 5);
    f.state.live.check().await.unwrap().expect("a new commit");
}

fn unseen_of(v: &Value) -> Vec<(String, bool)> {
    v["firings"]["firings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["entity"].as_str().unwrap().to_string(),
                f["seen"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn before_any_firing_the_panel_is_empty_and_nothing_can_be_marked() {
    let f = alerts_fixture().await;
    let mut c = Client::default();
    c.login(&f.app, "vic", "viewer pass").await;
    let r = c.send(&f.app, "GET", "/api/alerts/unseen", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["total"], 0);
    let panel = c
        .send(&f.app, "GET", "/api/pages/alerts/panels/firings", None)
        .await;
    assert_eq!(panel.status, StatusCode::OK, "{}", panel.text());
    assert_eq!(panel.json()["firings"]["firings"], json!([]));
    let csv = c
        .send(&f.app, "GET", "/api/pages/alerts/panels/firings/csv", None)
        .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.text());
    assert_eq!(csv.text().lines().count(), 1, "a header, no row");
    let r = c
        .send(
            &f.app,
            "POST",
            "/api/alerts/seen",
            Some(json!({"firings": [{"alert": "busy", "evaluation": 1, "entity": "{}"}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
}

#[tokio::test]
async fn each_user_marks_firings_seen_for_themselves() {
    let f = alerts_fixture().await;
    evaluate(&f).await;
    let mut vic = Client::default();
    vic.login(&f.app, "vic", "viewer pass").await;
    let mut ada = Client::default();
    ada.login(&f.app, "ada", "correct horse").await;

    let pages = vic.session(&f.app).await["pages"].clone();
    let alerts_page = pages
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "alerts")
        .unwrap();
    assert_eq!(alerts_page["panels"][0]["alerts"], json!(["busy"]));
    assert_eq!(alerts_page["panels"][0]["tables"], json!(["alert_firings"]));

    let unseen = vic
        .send(&f.app, "GET", "/api/alerts/unseen", None)
        .await
        .json();
    assert_eq!(unseen, json!({"total": 5, "alerts": {"busy": 5}}));
    let panel = vic
        .send(&f.app, "GET", "/api/pages/alerts/panels/firings", None)
        .await
        .json();
    assert_eq!(panel["firings"]["total"], 5);
    assert_eq!(panel["firings"]["unseen"], 5);
    let listed = panel["firings"]["firings"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "the panel's limit");
    let first = &listed[0];
    assert_eq!(first["severity"], "critical");
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .contains(" visites le 2024-04-21"),
        "{first}"
    );

    // vic marks the first one seen: it goes to the end, vic's count drops, ada's does not.
    let key =
        json!({"alert": "busy", "evaluation": first["evaluation"], "entity": first["entity"]});
    let r = vic
        .send(
            &f.app,
            "POST",
            "/api/alerts/seen",
            Some(json!({"firings": [key]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["marked"], 1);
    let again = vic
        .send(
            &f.app,
            "POST",
            "/api/alerts/seen",
            Some(json!({"firings": [key]})),
        )
        .await;
    assert_eq!(again.json()["marked"], 0, "marking twice changes nothing");
    let unseen = vic
        .send(&f.app, "GET", "/api/alerts/unseen", None)
        .await
        .json();
    assert_eq!(unseen["total"], 4);
    let after = vic
        .send(&f.app, "GET", "/api/pages/alerts/panels/firings", None)
        .await
        .json();
    assert_eq!(after["firings"]["unseen"], 4);
    let order = unseen_of(&after);
    assert_eq!(order.len(), 3);
    assert!(
        order
            .iter()
            .all(|(e, seen)| !seen && e != first["entity"].as_str().unwrap()),
        "unseen first: {order:?}"
    );
    let ada_unseen = ada
        .send(&f.app, "GET", "/api/alerts/unseen", None)
        .await
        .json();
    assert_eq!(ada_unseen["total"], 5, "ada has seen nothing");
    let ada_panel = ada
        .send(&f.app, "GET", "/api/pages/alerts/panels/firings", None)
        .await
        .json();
    assert_eq!(
        unseen_of(&ada_panel)[0],
        (first["entity"].as_str().unwrap().to_string(), false)
    );

    // Mark all: the other four; then only seen ones are left, newest first.
    let r = vic
        .send(
            &f.app,
            "POST",
            "/api/alerts/seen/all",
            Some(json!({"until": panel["firings"]["newest"]})),
        )
        .await;
    assert_eq!(r.json()["marked"], 4, "{}", r.text());
    let unseen = vic
        .send(&f.app, "GET", "/api/alerts/unseen", None)
        .await
        .json();
    assert_eq!(unseen["total"], 0);
    let all_seen = vic
        .send(&f.app, "GET", "/api/pages/alerts/panels/firings", None)
        .await
        .json();
    assert!(unseen_of(&all_seen).iter().all(|(_, seen)| *seen));

    // The CSV export has every firing.
    let csv = vic
        .send(&f.app, "GET", "/api/pages/alerts/panels/firings/csv", None)
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.text().lines().count(), 6, "{}", csv.text());

    // Removing a user forgets what they saw.
    let r = ada.send(&f.app, "DELETE", "/api/users/vic", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    f.state
        .users
        .add("vic", "viewer pass", Role::Viewer)
        .await
        .unwrap();
    let mut vic = Client::default();
    vic.login(&f.app, "vic", "viewer pass").await;
    let unseen = vic
        .send(&f.app, "GET", "/api/alerts/unseen", None)
        .await
        .json();
    assert_eq!(unseen["total"], 5);
}

#[tokio::test]
async fn bad_mark_requests_say_what_is_wrong_and_mark_nothing() {
    let f = alerts_fixture().await;
    evaluate(&f).await;
    let mut c = Client::default();
    c.login(&f.app, "vic", "viewer pass").await;
    let cases = [
        (
            "/api/alerts/seen/all",
            json!({"alerts": ["bussy"]}),
            StatusCode::NOT_FOUND,
            "no alert named `bussy`",
        ),
        (
            "/api/alerts/seen",
            json!({"firings": []}),
            StatusCode::BAD_REQUEST,
            "name at least one firing",
        ),
        (
            "/api/alerts/seen",
            json!({"firings": [{"alert": "busy", "evaluation": 1, "entity": "{}"}], "all": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
        ),
        (
            "/api/alerts/seen",
            json!({"firings": [{"alert": "busy", "evaluation": 1, "entity": "{\"agency\":\"z\"}"}]}),
            StatusCode::NOT_FOUND,
            "has no firing for entity",
        ),
        (
            "/api/alerts/seen",
            json!({"firings": [{"alert": "busy", "evaluation": "one", "entity": "{}"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
        ),
    ];
    for (path, body, status, text) in cases {
        let r = c.send(&f.app, "POST", path, Some(body.clone())).await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert!(
            r.json()["error"].as_str().unwrap().contains(text),
            "{body}: {}",
            r.text()
        );
    }
    // `until` before every firing marks none.
    let r = c
        .send(
            &f.app,
            "POST",
            "/api/alerts/seen/all",
            Some(json!({"until": "2000-01-01T00:00:00"})),
        )
        .await;
    assert_eq!(r.json()["marked"], 0, "{}", r.text());
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"alert": "busy", "evaluation": i, "entity": "{}"}))
        .collect();
    let r = c
        .send(
            &f.app,
            "POST",
            "/api/alerts/seen",
            Some(json!({"firings": many})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    // Without the CSRF token: refused.
    let mut no_token = c.clone();
    no_token.csrf.clear();
    let r = no_token
        .send(&f.app, "POST", "/api/alerts/seen/all", Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let unseen = c
        .send(&f.app, "GET", "/api/alerts/unseen", None)
        .await
        .json();
    assert_eq!(unseen["total"], 5, "nothing was marked");
}

#[test]
fn an_alerts_panel_naming_an_unknown_alert_is_a_config_error() {
    let text = format!(
        "{PROJECT}\n{}",
        r#"
[alerts.busy]
sql = "SELECT agency, visits FROM counts"
message = "x"
when = { value = "visits", above = 50 }

[pages.alerts.panels.firings]
kind = "alerts"
alerts = ["bussy"]
sql = "SELECT 1"
"#
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("affluent.toml"), text).unwrap();
    std::fs::write(dir.path().join("counts.csv"), counts_csv()).unwrap();
    std::fs::write(dir.path().join("zones.geojson"), "{}").unwrap();
    let err = affluent_config::load_with_env(dir.path(), &Environment::from_map(BTreeMap::new()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`bussy` is not an alert of this project; did you mean `busy`?"),
        "{err}"
    );
    assert!(
        err.contains("reads the firings of `alerts`, not `sql`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_chart_baseline_is_the_mean_of_the_same_weekdays_before_even_the_period() {
    let project = PROJECT.replace(
        "[pages.visits.panels.rows]",
        r#"[pages.visits.panels.against_usual]
kind = "line"
baseline = "4 same weekdays"
sql = "SELECT day, sum(visits) AS visits FROM counts WHERE agency = $agency AND day >= $period_start AND day < $period_end GROUP BY day ORDER BY day"

[pages.visits.panels.rows]"#,
    );
    let f = fixture_from(&project).await;
    let mut c = Client::default();
    c.login(&f.app, "vic", "viewer pass").await;
    // Day i (from 2024-03-01) has visits 2i + 10 for agency a (counters 0 and 1): the mean of
    // days i-7, i-14, i-21, i-28 is 2i - 25. The period starts on day 30.
    let r = c
        .send(
            &f.app,
            "GET",
            "/api/pages/visits/panels/against_usual?agency=a&period=2024-03-31..2024-04-29",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    let names: Vec<&str> = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["day", "visits", "visits (baseline)"]);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 30);
    for (k, row) in rows.iter().enumerate() {
        let i = 30 + k as i64;
        assert_eq!(row[1], json!(2 * i + 10), "{row}");
        assert_eq!(
            row[2].as_f64().unwrap(),
            (2 * i - 25) as f64,
            "day {i}: {row}"
        );
    }
    // Early in the data, the baseline has only the weeks there are: day 10 has days 3 only.
    let early = c
        .send(
            &f.app,
            "GET",
            "/api/pages/visits/panels/against_usual?agency=a&period=2024-03-01..2024-03-11",
            None,
        )
        .await
        .json();
    let rows = early["rows"].as_array().unwrap();
    assert_eq!(rows[0][2], Value::Null, "day 0 has no earlier week");
    assert_eq!(
        rows[10][2].as_f64().unwrap(),
        16.0,
        "day 10: day 3 only (2×3+10)"
    );
}
