//! The layers of ARCHITECTURE.md, as the manifests declare them: each rule is an absence (a crate
//! that must not depend on another, a dependency only one crate may have), so that a change
//! crossing a boundary fails here rather than in review. Only `[dependencies]` count: tests may
//! reach across (the dashboard's tests ingest with affluent-sources).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each workspace crate's normal dependencies, by crate name.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let doc: toml::Table = text.parse().unwrap();
        let name = doc["package"]["name"].as_str().unwrap().to_string();
        let deps = doc
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        out.insert(name, deps);
    }
    out
}

#[test]
fn no_layer_reaches_back_up_the_flow() {
    let deps = dependencies();
    assert!(deps.len() >= 10, "read the workspace's crates: {deps:?}");
    // crate → the workspace crates it must never depend on.
    let forbidden: &[(&str, &[&str])] = &[
        ("affluent-core", &["affluent-"]),
        (
            "affluent-config",
            &[
                "affluent-landing",
                "affluent-sources",
                "affluent-tables",
                "affluent-state",
                "affluent-scheduler",
                "affluent-pipeline",
                "affluent-alerts",
                "affluent-ml",
                "affluent-sinks",
                "affluent-web",
            ],
        ),
        (
            "affluent-landing",
            &[
                "affluent-config",
                "affluent-sources",
                "affluent-tables",
                "affluent-state",
                "affluent-scheduler",
                "affluent-pipeline",
                "affluent-alerts",
                "affluent-ml",
                "affluent-web",
            ],
        ),
        (
            "affluent-sources",
            &[
                "affluent-tables",
                "affluent-state",
                "affluent-scheduler",
                "affluent-pipeline",
                "affluent-alerts",
                "affluent-ml",
                "affluent-web",
                "affluent-sinks",
            ],
        ),
        (
            "affluent-tables",
            &[
                "affluent-state",
                "affluent-scheduler",
                "affluent-pipeline",
                "affluent-alerts",
                "affluent-ml",
                "affluent-web",
                "affluent-sinks",
            ],
        ),
        (
            "affluent-state",
            &[
                "affluent-landing",
                "affluent-sources",
                "affluent-tables",
                "affluent-scheduler",
                "affluent-pipeline",
                "affluent-alerts",
                "affluent-ml",
                "affluent-web",
                "affluent-sinks",
            ],
        ),
        (
            "affluent-scheduler",
            &[
                "affluent-landing",
                "affluent-sources",
                "affluent-tables",
                "affluent-pipeline",
                "affluent-alerts",
                "affluent-ml",
                "affluent-web",
                "affluent-sinks",
            ],
        ),
        // Alerts read tables and models; they never fetch, schedule or serve.
        (
            "affluent-alerts",
            &[
                "affluent-sources",
                "affluent-scheduler",
                "affluent-pipeline",
                "affluent-web",
                "affluent-sinks",
            ],
        ),
        // ML models read tables and models and write their predictions; they never fetch,
        // schedule, serve or alert.
        (
            "affluent-ml",
            &[
                "affluent-sources",
                "affluent-scheduler",
                "affluent-pipeline",
                "affluent-alerts",
                "affluent-ml",
                "affluent-web",
                "affluent-sinks",
            ],
        ),
        // Sinks read tables and models and write them elsewhere; they never fetch, read
        // landing, schedule, serve, alert or train.
        (
            "affluent-sinks",
            &[
                "affluent-landing",
                "affluent-sources",
                "affluent-state",
                "affluent-scheduler",
                "affluent-pipeline",
                "affluent-alerts",
                "affluent-ml",
                "affluent-web",
            ],
        ),
        ("affluent-pipeline", &["affluent-web"]),
        // The dashboard reads tables and the state store and never fetches: the one thing it
        // runs is a backfill an admin asks for, through the pipeline and the scheduler's claims.
        ("affluent-web", &["affluent-sources", "affluent-landing"]),
        ("affluent-simulate", &["affluent-"]),
        // The window engine and the zones are pure: no other affluent crate.
        ("affluent-streams", &["affluent-"]),
        ("affluent-geo", &["affluent-"]),
    ];
    for (krate, never) in forbidden {
        let Some(have) = deps.get(*krate) else {
            panic!("no crate {krate}");
        };
        for dep in have {
            assert!(
                !never.iter().any(|n| dep.starts_with(n)),
                "{krate} depends on {dep}: that crosses a layer of ARCHITECTURE.md"
            );
        }
    }
}

#[test]
fn heavy_and_terminal_dependencies_stay_in_their_crate() {
    let deps = dependencies();
    // dependency → the only crates that may have it.
    let only: &[(&str, &[&str])] = &[
        // DataFusion and deltalake take most of the build: one crate knows them.
        ("datafusion", &["affluent-tables"]),
        ("deltalake", &["affluent-tables"]),
        // Libraries draw no terminal UI and return typed errors.
        ("indicatif", &["affluent-cli"]),
        ("anyhow", &["affluent-cli"]),
        ("rpassword", &["affluent-cli"]),
        // The state store's driver: the state crate and the components with their own tables.
        (
            "sqlx",
            &["affluent-state", "affluent-web", "affluent-sinks"],
        ),
        // The solvers: one crate does numerics.
        ("argmin", &["affluent-ml"]),
    ];
    for (dep, allowed) in only {
        for (krate, have) in &deps {
            if have.contains(*dep) {
                assert!(
                    allowed.contains(&krate.as_str()),
                    "{krate} depends on {dep}, which only {allowed:?} may"
                );
            }
        }
    }
}
