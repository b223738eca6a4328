//! The OpenAPI description is the contract: every answer a handler gives is documented, the
//! schemas carry the checks the handlers make, and every error, an extractor's rejection
//! included, is the error body. (`web/contract/schemathesis` checks it against a real server.)

use super::*;

async fn openapi(f: &Fixture) -> Value {
    let r = Client::default()
        .send(&f.app, "GET", "/api/openapi.json", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    r.json()
}

/// Every (method, path, operation) of the description.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    out
}

fn statuses_of(op: &Value) -> Vec<u16> {
    op["responses"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.parse().unwrap())
        .collect()
}

#[tokio::test]
async fn every_answer_of_every_operation_is_documented() {
    let f = fixture().await;
    let doc = openapi(&f).await;
    let public = [
        "/api/session",
        "/api/login",
        "/api/setup",
        "/api/logout",
        "/healthz",
    ];
    for (method, path, op) in operations(&doc) {
        let documented = statuses_of(&op);
        let expect = |status: u16, why: &str| {
            assert!(
                documented.contains(&status),
                "{method} {path} does not document {status} ({why}): {documented:?}"
            );
        };
        if method == "POST" || method == "DELETE" {
            expect(403, "the CSRF guard");
        }
        if !public.contains(&path.as_str()) {
            expect(401, "not logged in");
        }
        if path.starts_with("/api/") {
            expect(503, "the state store not answering");
        }
        if path.starts_with("/api/users") {
            expect(403, "not an admin");
        }
        if path.starts_with("/api/pages/") {
            for (status, why) in [
                (400, "a bad filter"),
                (404, "no such page"),
                (422, "a [query] bound"),
                (500, "a failing query"),
            ] {
                expect(status, why);
            }
        }
        if op.get("requestBody").is_some() {
            expect(400, "not JSON");
            if path != "/api/login" {
                for status in [413, 415, 422] {
                    expect(status, "axum's JSON rejections");
                }
            }
        }
        // Every error answer is the error body.
        for (status, response) in op["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
    }
    // The event stream is described as one: events whose `data` is JSON text, not a JSON body.
    let events = &doc["paths"]["/api/events"]["get"]["responses"]["200"]["content"];
    assert_eq!(
        events.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["text/event-stream"]
    );
    let event = &doc["components"]["schemas"]["ServerSentEvent"];
    let kinds: Vec<&Value> = event["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["properties"]["event"]["enum"][0])
        .collect();
    assert_eq!(kinds, [&json!("hello"), &json!("change")]);
    for e in event["oneOf"].as_array().unwrap() {
        assert_eq!(e["properties"]["data"]["type"], "string");
        assert_eq!(
            e["properties"]["data"]["contentMediaType"],
            "application/json"
        );
    }
}

#[tokio::test]
async fn the_schemas_carry_the_checks_of_names_passwords_and_favourites() {
    let f = fixture().await;
    let doc = openapi(&f).await;
    let schemas = &doc["components"]["schemas"];
    for body in ["SetupBody", "NewUser"] {
        let p = &schemas[body]["properties"];
        assert_eq!(
            p["password"]["minLength"],
            json!(affluent_web::auth::MIN_PASSWORD),
            "{body}"
        );
        assert_eq!(p["name"]["minLength"], 1, "{body}");
        assert_eq!(p["name"]["maxLength"], 64, "{body}");
        assert_eq!(p["name"]["pattern"], "^[A-Za-z0-9_.@-]+$", "{body}");
    }
    let fav = &schemas["NewFavourite"]["properties"];
    assert_eq!(
        fav["label"]["maxLength"],
        json!(affluent_web::sessions::MAX_FAVOURITE_LABEL)
    );
    let value = &schemas["FavouriteValue"]["oneOf"];
    assert_eq!(
        value[0]["maxLength"],
        json!(affluent_web::sessions::MAX_FAVOURITE_VALUE)
    );
    // What the schema allows, the server takes; a name the pattern refuses, it refuses.
    let mut ada = Client::default();
    ada.login(&f.app, "ada", "correct horse").await;
    let ok = ada
        .send(
            &f.app,
            "POST",
            "/api/users",
            Some(json!({"name": "a.b-c_d@e", "password": "12345678", "role": "viewer"})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    for (name, password) in [("a b", "12345678"), ("", "12345678"), ("ok", "1234567")] {
        let r = ada
            .send(
                &f.app,
                "POST",
                "/api/users",
                Some(json!({"name": name, "password": password, "role": "viewer"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name:?} {password:?}");
    }
}

#[tokio::test]
async fn json_rejections_are_error_bodies_with_the_request_id() {
    let f = fixture().await;
    let mut ada = Client::default();
    ada.login(&f.app, "ada", "correct horse").await;
    let cookie = ada
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let send = |content_type: Option<&'static str>, body: &'static str| {
        let mut req = Request::builder()
            .method("POST")
            .uri("/api/users")
            .header(header::COOKIE, cookie.clone())
            .header("x-csrf-token", ada.csrf.clone());
        if let Some(t) = content_type {
            req = req.header(header::CONTENT_TYPE, t);
        }
        let req = req.body(Body::from(body)).unwrap();
        let app = f.app.clone();
        async move {
            let res = app.oneshot(req).await.unwrap();
            let status = res.status();
            let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
            let body = axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .unwrap();
            let v: Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {body:?}"));
            assert_eq!(v["request_id"], id.as_str(), "{v}");
            (status, v["error"].as_str().unwrap().to_string())
        }
    };
    let (status, error) = send(None, r#"{"name": "x"}"#).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(error.contains("application/json"), "{error}");
    let (status, error) = send(Some("application/json"), "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error.starts_with("the body is not JSON"), "{error}");
    let (status, error) = send(Some("application/json"), r#"{"name": "x"}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error.contains("missing field"), "{error}");
    // An admin removing themselves is refused as a conflict with who asks, not a bad request.
    let r = ada.send(&f.app, "DELETE", "/api/users/ada", None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert_eq!(r.json()["error"], "you cannot remove yourself");
}
