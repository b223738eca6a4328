//! Login, sessions and the dashboard's other defences, tried as an attacker would: storms of
//! concurrent logins, sprays across accounts and addresses, a spoofed `X-Forwarded-For`, a
//! stolen state store, a rebinding `Host`.

use super::*;
use affluent_web::auth::{Hasher, Users};
use futures::future::join_all;

/// Sends `body` as a login from `ip` (no session needed: the CSRF token of a fresh session).
async fn login_from(app: &Router, ip: impl Into<String>, name: &str, password: &str) -> Reply {
    let mut c = Client {
        ip: ip.into(),
        ..Client::default()
    };
    c.login(app, name, password).await
}

fn statuses(replies: &[Reply]) -> BTreeMap<u16, usize> {
    let mut out = BTreeMap::new();
    for r in replies {
        *out.entry(r.status.as_u16()).or_default() += 1;
    }
    out
}

#[tokio::test]
async fn failures_throttle_the_account_from_that_address_not_its_owner_elsewhere() {
    let f = fixture().await;
    let mut c = Client::default();
    for i in 0..5 {
        let r = c.login(&f.app, "ada", "wrong password").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
        assert_eq!(r.json()["error"], "wrong user name or password");
    }
    // The sixth, even with the right password, is refused without checking, for 30 s.
    let r = c.login(&f.app, "ada", "correct horse").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((29..=30).contains(&wait), "{wait}");
    assert!(r.json()["error"].as_str().unwrap().contains("try again in"));
    // The owner, from their own address, is not locked out by someone else's guesses.
    let r = login_from(&f.app, "192.168.7.7", "ada", "correct horse").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Nor is another account from the guessing address (its network has 15 free attempts left).
    let r = c.login(&f.app, "vic", "viewer pass").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // An unknown name gets the same answer as a wrong password.
    let r = login_from(&f.app, "10.0.0.3", "nobody", "whatever1").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "wrong user name or password");
}

#[tokio::test]
async fn waits_double_with_each_failure_past_the_free_ones() {
    let f = fixture().await;
    let pool = f.state.store.pool().clone();
    for _ in 0..5 {
        login_from(&f.app, "10.0.0.1", "ada", "wrong password").await;
    }
    // Pretend the 30 s passed: the next failure then waits 60 s.
    sqlx::query("UPDATE affluent_login_throttle SET next_ms = 0 WHERE key LIKE 'pair%'")
        .execute(&pool)
        .await
        .unwrap();
    let r = login_from(&f.app, "10.0.0.1", "ada", "wrong password").await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "checked again after the wait"
    );
    let r = login_from(&f.app, "10.0.0.1", "ada", "correct horse").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((59..=60).contains(&wait), "{wait}");
    // After that wait, the right password works and the pair starts over.
    sqlx::query("UPDATE affluent_login_throttle SET next_ms = 0 WHERE key LIKE 'pair%'")
        .execute(&pool)
        .await
        .unwrap();
    let r = login_from(&f.app, "10.0.0.1", "ada", "correct horse").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = login_from(&f.app, "10.0.0.1", "ada", "wrong password").await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a fresh start after a success"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_passwords_get_no_more_checks_than_the_limit() {
    let f = fixture().await;
    let replies =
        join_all((0..40).map(|_| login_from(&f.app, "10.0.0.1", "ada", "wrong password"))).await;
    let counts = statuses(&replies);
    assert_eq!(
        counts.get(&401).copied(),
        Some(5),
        "exactly 5 passwords checked: {counts:?}"
    );
    assert_eq!(counts.get(&429).copied(), Some(35), "{counts:?}");
}

#[tokio::test]
async fn a_network_spraying_many_accounts_waits_and_other_networks_do_not() {
    let f = fixture().await;
    // 20 names, one guess each, from 20 addresses of one /24.
    for i in 0..20 {
        let r = login_from(
            &f.app,
            &format!("10.0.0.{}", i + 10),
            &format!("user{i}"),
            "guess123",
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "guess {i}");
    }
    // The network is held, even for a right password from a new address in it...
    let r = login_from(&f.app, "10.0.0.99", "vic", "viewer pass").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    // ...and the next network is not.
    let r = login_from(&f.app, "10.0.1.5", "vic", "viewer pass").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn many_addresses_against_one_account_slow_strangers_not_the_owner_at_home() {
    let f = fixture().await;
    // The owner logs in from home once: that address is known for the account.
    let r = login_from(&f.app, "192.168.1.20", "ada", "correct horse").await;
    assert_eq!(r.status, StatusCode::OK);
    // 50 guesses from 50 networks: each network and pair is under its limit.
    for i in 0..50 {
        let r = login_from(&f.app, &format!("172.16.{i}.1"), "ada", "guess1234").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let r = login_from(&f.app, "172.20.0.1", "ada", "correct horse").await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "a new address waits: {}",
        r.text()
    );
    let r = login_from(&f.app, "192.168.1.20", "ada", "correct horse").await;
    assert_eq!(r.status, StatusCode::OK, "home is known: {}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_of_logins_is_shed_with_503_and_costs_no_attempt() {
    let f = fixture().await;
    // One hashing thread, one waiting job: a storm of 30 concurrent checks is mostly shed.
    let mut state = f.state.clone();
    state.users = Users::with_hasher(f.state.store.pool().clone(), Hasher::new(1, 1));
    let app = affluent_web::api::router(
        state.clone(),
        affluent_web::sessions::SqlSessions::new(state.store.pool().clone()),
    );
    let replies =
        join_all((0..30).map(|i| login_from(&app, format!("10.{i}.0.1"), "vic", "wrong password")))
            .await;
    let counts = statuses(&replies);
    assert!(counts.get(&503).copied().unwrap_or(0) > 0, "{counts:?}");
    assert!(counts.get(&401).copied().unwrap_or(0) >= 2, "{counts:?}");
    assert_eq!(
        counts.keys().filter(|s| ![401, 503].contains(*s)).count(),
        0,
        "{counts:?}"
    );
    let shed = replies.iter().find(|r| r.status == 503).unwrap();
    assert_eq!(shed.headers["retry-after"], "1");
    // A shed attempt was not checked, so it does not count: that address may try 5 times.
    let shed_ip = replies
        .iter()
        .enumerate()
        .find(|(_, r)| r.status == 503)
        .map(|(i, _)| format!("10.{i}.0.1"))
        .unwrap();
    for _ in 0..4 {
        let r = login_from(&app, &shed_ip, "vic", "wrong password").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = login_from(&app, &shed_ip, "vic", "viewer pass").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
    let f = fixture_with("trusted_proxies = [\"10.0.0.1\"]\n").await;
    let via_proxy =
        |client: &str| {
            let client = client.to_string();
            let app = f.app.clone();
            async move {
                let mut c = Client::default();
                c.session(&app).await;
                let req = Request::builder()
                    .method("POST")
                    .uri("/api/login")
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(
                        header::COOKIE,
                        c.cookies
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join("; "),
                    )
                    .header("x-csrf-token", &c.csrf)
                    // What the client wrote first is not believed; the proxy appended the client.
                    .header("x-forwarded-for", format!("6.6.6.6, {client}"))
                    .body(Body::from(
                        json!({"name": "ada", "password": "wrong password"}).to_string(),
                    ))
                    .unwrap();
                let mut req = req;
                req.extensions_mut().insert(axum::extract::ConnectInfo(
                    std::net::SocketAddr::from(([10, 0, 0, 1], 40000)),
                ));
                app.oneshot(req).await.unwrap().status()
            }
        };
    for _ in 0..5 {
        assert_eq!(via_proxy("203.0.113.5").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        via_proxy("203.0.113.5").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy is another address.
    assert_eq!(via_proxy("198.51.100.7").await, StatusCode::UNAUTHORIZED);

    // Unit cases: untrusted peers are themselves; trusted hops are skipped from the right.
    let trusted: Vec<affluent_config::schema::IpNetwork> =
        vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
    let ip = |peer: &str, xff: &str| {
        let mut headers = axum::http::HeaderMap::new();
        if !xff.is_empty() {
            headers.insert("x-forwarded-for", xff.parse().unwrap());
        }
        let mut ext = axum::http::Extensions::new();
        ext.insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
            peer.parse().unwrap(),
            1,
        )));
        affluent_web::api::client_ip(&headers, &ext, &trusted).to_string()
    };
    assert_eq!(ip("203.0.113.9", "1.2.3.4"), "203.0.113.9");
    assert_eq!(ip("10.1.1.1", "1.2.3.4, 10.2.2.2"), "1.2.3.4");
    assert_eq!(ip("::1", "garbage, 1.2.3.4"), "1.2.3.4");
    assert_eq!(ip("10.1.1.1", ""), "10.1.1.1");
}

#[tokio::test]
async fn a_huge_user_name_is_neither_stored_nor_logged_whole() {
    let f = fixture().await;
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    let name = "x".repeat(40_000);
    let r = login_from(&f.app, "10.0.0.1", &name, "whatever1").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let keys: Vec<(String,)> = sqlx::query_as("SELECT key FROM affluent_login_throttle")
        .fetch_all(f.state.store.pool())
        .await
        .unwrap();
    let longest = keys.iter().map(|k| k.0.len()).max().unwrap();
    assert!(longest < 200, "a key of {longest} bytes");
    assert!(
        !logs.text().contains(&"x".repeat(100)),
        "{}",
        logs.text().len()
    );
}

#[tokio::test]
async fn session_ids_are_stored_hashed_and_a_new_password_ends_sessions() {
    let f = fixture().await;
    let mut vic = Client::default();
    assert_eq!(
        vic.login(&f.app, "vic", "viewer pass").await.status,
        StatusCode::OK
    );
    let cookie = vic.cookies["affluent_session"].clone();
    let ids: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT id, user_name FROM affluent_sessions")
            .fetch_all(f.state.store.pool())
            .await
            .unwrap();
    assert!(!ids.is_empty());
    assert!(
        ids.iter()
            .all(|(id, _)| !id.contains(&cookie) && id.len() == 64),
        "{ids:?} / {cookie}"
    );
    assert!(ids.iter().any(|(_, user)| user.as_deref() == Some("vic")));
    // The row's id is no cookie: sent as one, it logs nobody in.
    let mut thief = Client::default();
    thief
        .cookies
        .insert("affluent_session".to_string(), ids[0].0.clone());
    assert_eq!(
        thief.send(&f.app, "GET", "/api/pages", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        vic.send(&f.app, "GET", "/api/pages", None).await.status,
        StatusCode::OK
    );
    // `affluent user passwd vic` (the same call): the old session is out.
    f.state
        .users
        .set_password("vic", "a new password")
        .await
        .unwrap();
    assert_eq!(
        vic.send(&f.app, "GET", "/api/pages", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        vic.login(&f.app, "vic", "a new password").await.status,
        StatusCode::OK
    );
}

/// Reads an event stream's body until it ends, or gives up after `limit`.
async fn stream_ends_within(body: Body, limit: std::time::Duration) -> bool {
    use futures::StreamExt;
    let mut data = body.into_data_stream();
    tokio::time::timeout(limit, async {
        while let Some(chunk) = data.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn the_event_stream_ends_with_the_session() {
    let f = fixture().await;
    let mut state = f.state.clone();
    state.session_check = std::time::Duration::from_millis(50);
    let app = affluent_web::api::router(
        state.clone(),
        affluent_web::sessions::SqlSessions::new(state.store.pool().clone()),
    );
    for end in ["logout", "passwd"] {
        let mut c = Client::default();
        assert_eq!(
            c.login(&app, "vic", "viewer pass").await.status,
            StatusCode::OK
        );
        let cookie = c
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = Request::builder()
            .uri("/api/events")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.into_body();
        // While the session lives, the stream stays open.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reader = tokio::spawn(async move {
            let ended = stream_ends_within(body, std::time::Duration::from_secs(10)).await;
            let _ = tx.send(());
            ended
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!reader.is_finished(), "{end}: the stream ended on its own");
        match end {
            "logout" => {
                let r = c.send(&app, "POST", "/api/logout", None).await;
                assert_eq!(r.status, StatusCode::NO_CONTENT);
            }
            _ => state
                .users
                .set_password("vic", "viewer pass")
                .await
                .unwrap(),
        }
        let _ = rx.await;
        assert!(reader.await.unwrap(), "{end}: the stream did not end");
    }
}

#[tokio::test]
async fn the_setup_link_expires() {
    let f = fixture().await;
    for name in ["ada", "vic"] {
        f.state.users.remove(name).await.unwrap();
    }
    let token = f.state.setup_token().await.unwrap().unwrap();
    let mut expired = f.state.clone();
    expired.setup_ttl = std::time::Duration::ZERO;
    let app = affluent_web::api::router(
        expired.clone(),
        affluent_web::sessions::SqlSessions::new(expired.store.pool().clone()),
    );
    let mut c = Client::default();
    c.session(&app).await;
    let r = c
        .send(
            &app,
            "POST",
            "/api/setup",
            Some(json!({"token": token, "name": "root", "password": "long enough"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let error = r.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("affluent user add"), "{error}");
    assert_eq!(expired.users.count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_local_dashboard_answers_only_to_its_own_host_names() {
    let f = fixture().await;
    let mut state = f.state.clone();
    state.allowed_hosts = Arc::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "[::1]".to_string(),
    ]);
    let app = affluent_web::api::router(
        state.clone(),
        affluent_web::sessions::SqlSessions::new(state.store.pool().clone()),
    );
    let get = |host: &'static str| {
        let app = app.clone();
        async move {
            let req = Request::builder()
                .uri("/api/session")
                .header(header::HOST, host)
                .body(Body::empty())
                .unwrap();
            app.oneshot(req).await.unwrap().status()
        }
    };
    assert_eq!(get("127.0.0.1:8080").await, StatusCode::OK);
    assert_eq!(get("LOCALHOST:8080").await, StatusCode::OK);
    assert_eq!(get("[::1]:8080").await, StatusCode::OK);
    // An attacker's name resolved to 127.0.0.1 (DNS rebinding).
    assert_eq!(get("evil.example:8080").await, StatusCode::BAD_REQUEST);
    assert_eq!(get("127.0.0.1.evil.example").await, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn favourites_are_bounded_in_kind_size_and_count() {
    let f = fixture().await;
    let mut c = Client::default();
    assert_eq!(
        c.login(&f.app, "vic", "viewer pass").await.status,
        StatusCode::OK
    );
    let star = |c: &mut Client, params: Value, label: Option<String>| {
        let mut c = c.clone();
        let app = f.app.clone();
        async move {
            let mut body = json!({"page": "visits", "params": params});
            if let Some(l) = label {
                body["label"] = json!(l);
            }
            c.send(&app, "POST", "/api/favourites", Some(body))
                .await
                .status
        }
    };
    assert_eq!(
        star(&mut c, json!({"agency": ["a"], "counter": 0}), None).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        star(
            &mut c,
            json!({"agency": "a".repeat(300), "counter": 0}),
            None
        )
        .await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        star(
            &mut c,
            json!({"agency": "a", "counter": 0}),
            Some("l".repeat(300))
        )
        .await,
        StatusCode::BAD_REQUEST
    );
    for i in 0..200 {
        assert_eq!(
            star(&mut c, json!({"agency": "a", "counter": i}), None).await,
            StatusCode::OK,
            "favourite {i}"
        );
    }
    assert_eq!(
        star(&mut c, json!({"agency": "a", "counter": 200}), None).await,
        StatusCode::CONFLICT
    );
    // Starring one again is no new favourite.
    assert_eq!(
        star(&mut c, json!({"agency": "a", "counter": 7}), None).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_panel_past_the_query_bounds_says_which_bound_not_an_internal_error() {
    let f = fixture_from(&format!("{PROJECT}\n[query]\nmax_rows = 5\n")).await;
    let mut c = Client::default();
    assert_eq!(
        c.login(&f.app, "vic", "viewer pass").await.status,
        StatusCode::OK
    );
    let r = c
        .send(
            &f.app,
            "GET",
            "/api/pages/visits/panels/rows?agency=a&period=all",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let error = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("max_rows") && error.contains("panel"),
        "{error}"
    );
    // A small result is unaffected.
    let r = c
        .send(
            &f.app,
            "GET",
            "/api/pages/visits/panels/total?agency=a",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}
