//! `affluent alerts`: test shows what would fire and records nothing; run records the firings
//! in `alert_firings` once; list shows the state; a load evaluates the alerts reading what it
//! changed.

use super::{affluent, text};

#[test]
fn alerts_test_run_and_list() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("levels.csv"),
        "station,day,bikes\ns1,2024-01-01,3\ns1,2024-01-02,0\ns2,2024-01-01,9\ns2,2024-01-02,8\n",
    )
    .unwrap();
    let tables = r#"
[sources.levels]
type = "csv"
path = "levels.csv"

[tables.levels]
source = "levels"
"#;
    // Loaded before the alert exists: nothing evaluates it yet.
    std::fs::write(dir.path().join("affluent.toml"), tables).unwrap();
    let o = affluent(dir.path(), &["ingest", "levels"]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(
        dir.path().join("affluent.toml"),
        tables.to_string()
            + r#"
[alerts.empty_station]
sql = "SELECT station, day, bikes FROM levels"
entity = ["station"]
time = "day"
severity = "critical"
message = "{station} is empty on {day} ({previous:int} bikes before)"
when = { value = "bikes", below = 1 }
"#,
    )
    .unwrap();

    let o = affluent(dir.path(), &["alerts", "test", "empty_station"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("2 entities, condition holds on 1, 1 would fire"),
        "{t}"
    );
    assert!(
        t.contains("[critical] {\"station\":\"s1\"} s1 is empty on 2024-01-02 (3 bikes before)"),
        "{t}"
    );
    let o = affluent(dir.path(), &["alerts", "list"]);
    assert!(
        text(&o).contains("0 evaluations, never evaluated"),
        "{}",
        text(&o)
    );

    for expected in ["1 fired", "0 fired"] {
        let o = affluent(dir.path(), &["alerts", "run"]);
        assert!(text(&o).contains(expected), "{}", text(&o));
    }
    let o = affluent(
        dir.path(),
        &[
            "query",
            "SELECT alert, severity, message FROM alert_firings",
        ],
    );
    let t = text(&o);
    assert_eq!(t.matches("empty_station").count(), 1, "{t}");
    let o = affluent(dir.path(), &["alerts", "list"]);
    assert!(
        text(&o).contains("empty_station [critical]: 2 evaluations"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("active on 1 of 2 entities"),
        "{}",
        text(&o)
    );

    let o = affluent(dir.path(), &["alerts", "test", "empty"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("did you mean `empty_station`?"),
        "{}",
        text(&o)
    );

    // New rows: the load evaluates the alert, s2 fires, s1 (still empty) does not again.
    std::fs::write(
        dir.path().join("levels.csv"),
        "station,day,bikes\ns1,2024-01-03,0\ns2,2024-01-03,0\n",
    )
    .unwrap();
    let o = affluent(dir.path(), &["ingest", "levels"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("empty_station: 2 entities, condition holds on 2, 1 fired"),
        "{t}"
    );
    assert!(
        t.contains("s2 is empty on 2024-01-03 (8 bikes before)"),
        "{t}"
    );
}
