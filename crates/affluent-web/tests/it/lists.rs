//! Per-user lists (`[dashboard.lists]`), ticked through the API and read by panels as `$NAME`;
//! public pages; the project's theme and image origins.

use super::*;

/// The fixture with a list, a page whose cards tick it and a profile reading it, a public
/// page, a theme and an image origin.
async fn lists_fixture() -> Fixture {
    let project = PROJECT
        .replace(
            "locale = \"fr-FR\"\n",
            "locale = \"fr-FR\"\nimage_origins = [\"https://i.scdn.co\"]\ntheme = { primary = \"#FF1B8D\", background = \"#070707\", text = \"#B18E57\" }\n[dashboard.lists.following]\nlabel = \"Suivi\"\n",
        )
        + r#"
[pages.agencies]
[pages.agencies.panels.cards]
kind = "cards"
formats = { picture = "image", more = "link" }
toggle = { list = "following", key = "agency" }
sql = "SELECT agency, 'https://i.scdn.co/image/' || agency AS picture, '/pages/visits?agency=' || agency AS more, sum(visits) AS visits FROM counts GROUP BY agency ORDER BY agency"

[pages.mine]
[pages.mine.panels.followed]
kind = "table"
sql = "SELECT agency, sum(visits) AS visits FROM counts WHERE array_has($following, agency) GROUP BY agency ORDER BY agency"

[pages.about]
public = true
[pages.about.panels.text]
kind = "text"
text = "Public."
[pages.about.panels.agencies]
kind = "kpi"
sql = "SELECT count(DISTINCT agency) + cardinality($following) FROM counts"
"#;
    fixture_from(&project).await
}

fn agencies(r: &Reply) -> Vec<String> {
    r.json()["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn lists_are_per_user_and_public_pages_need_no_login() {
    let f = lists_fixture().await;
    let mut ada = Client::default();
    ada.login(&f.app, "ada", "correct horse").await;
    let mut vic = Client::default();
    vic.login(&f.app, "vic", "viewer pass").await;

    // The session says what the front-end needs.
    let s = ada.send(&f.app, "GET", "/api/session", None).await.json();
    assert_eq!(s["theme"]["primary"], "#FF1B8D");
    assert_eq!(s["lists"], json!([{"name": "following", "label": "Suivi"}]));
    let cards = s["pages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "agencies")
        .unwrap()["panels"][0]
        .clone();
    assert_eq!(cards["kind"], "cards");
    assert_eq!(
        cards["toggle"],
        json!({"list": "following", "key": "agency"})
    );
    assert_eq!(cards["formats"]["picture"], "image");
    let mine = &s["pages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "mine")
        .unwrap()["panels"][0];
    assert_eq!(mine["lists"], json!(["following"]));

    // Nothing followed yet: the profile is empty.
    let r = ada
        .send(&f.app, "GET", "/api/pages/mine/panels/followed", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(agencies(&r).is_empty());

    // Ada follows a and c (twice: kept once), Vic follows b.
    for item in ["a", "c", "c"] {
        let r = ada
            .send(
                &f.app,
                "POST",
                "/api/lists/following/items",
                Some(json!({ "item": item })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let r = vic
        .send(
            &f.app,
            "POST",
            "/api/lists/following/items",
            Some(json!({ "item": "b" })),
        )
        .await;
    assert_eq!(r.json(), json!({"following": ["b"]}));
    let r = ada.send(&f.app, "GET", "/api/lists", None).await;
    assert_eq!(r.json(), json!({"following": ["a", "c"]}));
    let r = ada
        .send(&f.app, "GET", "/api/pages/mine/panels/followed", None)
        .await;
    assert_eq!(agencies(&r), ["a", "c"]);
    let r = vic
        .send(&f.app, "GET", "/api/pages/mine/panels/followed", None)
        .await;
    assert_eq!(agencies(&r), ["b"]);

    // Unfollowing removes it; removing what is not there is a 404.
    let r = ada
        .send(&f.app, "DELETE", "/api/lists/following/items/a", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = ada
        .send(&f.app, "DELETE", "/api/lists/following/items/a", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let r = ada
        .send(&f.app, "GET", "/api/pages/mine/panels/followed", None)
        .await;
    assert_eq!(agencies(&r), ["c"]);

    // Bad input: no such list, an empty value, no CSRF token, not logged in.
    let r = ada
        .send(
            &f.app,
            "POST",
            "/api/lists/folowing/items",
            Some(json!({ "item": "a" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("lists: following"),
        "{}",
        r.text()
    );
    let r = ada
        .send(
            &f.app,
            "POST",
            "/api/lists/following/items",
            Some(json!({ "item": "" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let mut no_csrf = ada.clone();
    no_csrf.csrf = String::new();
    let r = no_csrf
        .send(
            &f.app,
            "POST",
            "/api/lists/following/items",
            Some(json!({ "item": "b" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let mut anonymous = Client::default();
    let r = anonymous.send(&f.app, "GET", "/api/lists", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = anonymous
        .send(&f.app, "GET", "/api/pages/mine/panels/followed", None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // The public page: listed, served and queried without a login, lists empty.
    let s = anonymous
        .send(&f.app, "GET", "/api/session", None)
        .await
        .json();
    let names: Vec<&str> = s["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["about"]);
    let r = anonymous.send(&f.app, "GET", "/pages/about", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = anonymous.send(&f.app, "GET", "/pages/mine", None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = anonymous
        .send(&f.app, "GET", "/api/pages/about/panels/agencies", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["rows"], json!([[3]]));
    // Logged in, the same panel reads the user's list.
    let r = ada
        .send(&f.app, "GET", "/api/pages/about/panels/agencies", None)
        .await;
    assert_eq!(r.json()["rows"], json!([[4]]));

    // Images come from the dashboard and the origins listed, nowhere else.
    let csp = r.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("img-src 'self' data: https://i.scdn.co;"),
        "{csp}"
    );

    // Removing a user removes their lists.
    f.state.users.remove("vic").await.unwrap();
    f.state
        .users
        .add("vic", "viewer pass", Role::Viewer)
        .await
        .unwrap();
    let mut vic = Client::default();
    vic.login(&f.app, "vic", "viewer pass").await;
    let r = vic.send(&f.app, "GET", "/api/lists", None).await;
    assert_eq!(r.json(), json!({"following": []}));
}

#[test]
fn lists_toggles_themes_and_origins_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let project = PROJECT.replace(
        "locale = \"fr-FR\"\n",
        "locale = \"fr-FR\"\nimage_origins = [\"https://i.scdn.co/images\"]\ntheme = { primary = \"pink\" }\n[dashboard.lists.agency]\n",
    ) + r#"
[pages.more]
[pages.more.panels.cards]
kind = "line"
toggle = { list = "folowing", key = "agency" }
formats = { x = "image" }
sql = "SELECT 1"
"#;
    std::fs::write(dir.path().join("affluent.toml"), project).unwrap();
    std::fs::write(dir.path().join("counts.csv"), counts_csv()).unwrap();
    std::fs::write(
        dir.path().join("zones.geojson"),
        r#"{"type":"FeatureCollection","features":[]}"#,
    )
    .unwrap();
    let err = affluent_config::load_with_env(dir.path(), &Environment::from_map(BTreeMap::new()))
        .unwrap_err()
        .to_string();
    for expected in [
        "is not an origin",
        "theme colour `primary` = \"pink\"",
        "filter `agency` has the name of `[dashboard.lists.agency]`",
        "`toggle` is for table and cards panels",
        "`toggle` names list `folowing`",
        "`formats` is for table and cards panels",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}
