//! Connections that fail: a database that does not exist (the machine's PostgreSQL), a server
//! refusing the password (the machine's PostgreSQL trusts every local login, so a server
//! speaking PostgreSQL's protocol refuses it here as PostgreSQL does), a port nobody listens on.
//! Each error says what to do, and no message carries the password.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "s3cr3t-Pa55word-xyz";

async fn first_error(f: &Fixture) -> String {
    let results = f.sync().await;
    let err = results
        .into_iter()
        .find_map(|r| r.err())
        .expect("the sink fails");
    let text = affluent_core::error_chain(&err);
    assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    text
}

/// A server that asks for a cleartext password and refuses it with SQLSTATE 28P01, as
/// PostgreSQL does. Returns its port and what the client sent as password.
async fn refusing_server() -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        // SSLRequest (8 bytes) or StartupMessage, both length-prefixed without a type byte.
        loop {
            let len = socket.read_u32().await.unwrap() as usize;
            let mut body = vec![0; len - 4];
            socket.read_exact(&mut body).await.unwrap();
            if body[..4] == [0x04, 0xd2, 0x16, 0x2f] {
                socket.write_all(b"N").await.unwrap();
                continue;
            }
            break;
        }
        // AuthenticationCleartextPassword.
        socket
            .write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3])
            .await
            .unwrap();
        assert_eq!(socket.read_u8().await.unwrap(), b'p');
        let len = socket.read_u32().await.unwrap() as usize;
        let mut password = vec![0; len - 4];
        socket.read_exact(&mut password).await.unwrap();
        let mut fields = Vec::new();
        for (code, value) in [
            (b'S', "FATAL"),
            (b'V', "FATAL"),
            (b'C', "28P01"),
            (
                b'M',
                "password authentication failed for user \"warehouse\"",
            ),
        ] {
            fields.push(code);
            fields.extend_from_slice(value.as_bytes());
            fields.push(0);
        }
        fields.push(0);
        let mut message = vec![b'E'];
        message.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
        message.extend_from_slice(&fields);
        socket.write_all(&message).await.unwrap();
        let _ = socket.shutdown().await;
        password
    });
    (port, task)
}

#[tokio::test]
async fn a_refused_password_says_to_check_the_credentials() {
    let (port, server) = refusing_server().await;
    let url = format!("postgres://warehouse:{PASSWORD}@127.0.0.1:{port}/dw?sslmode=disable");
    let mut f = Fixture::with_url("password", &url, "").await;
    f.land("log", serde_json::json!([{"msg": "one"}])).await;
    let text = first_error(&f).await;
    assert!(
        text.contains("refused the password")
            && text.contains("password authentication failed for user \"warehouse\"")
            && text.contains("check the user and password"),
        "{text}"
    );
    let sent = server.await.unwrap();
    assert_eq!(
        sent,
        format!("{PASSWORD}\0").as_bytes(),
        "the password goes to the server"
    );
}

#[tokio::test]
async fn a_missing_database_says_to_create_it() {
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:5432/affluent_no_such_database");
    let mut f = Fixture::with_url("nodb", &url, "").await;
    f.land("log", serde_json::json!([{"msg": "one"}])).await;
    let text = first_error(&f).await;
    assert!(
        text.contains("database \"affluent_no_such_database\" does not exist")
            && text.contains("createdb"),
        "{text}"
    );
}

#[tokio::test]
async fn a_server_nobody_runs_says_so() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/test");
    let mut f = Fixture::with_url("noserver", &url, "").await;
    f.land("log", serde_json::json!([{"msg": "one"}])).await;
    let text = first_error(&f).await;
    assert!(
        text.contains(&format!("cannot reach PostgreSQL at 127.0.0.1:{port}/test"))
            && text.contains("is it running?"),
        "{text}"
    );
}
