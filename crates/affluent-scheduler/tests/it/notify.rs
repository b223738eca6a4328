//! Failure and recovery notifications, received by a local webhook receiver and a local SMTP
//! sink (both real TCP servers speaking just enough HTTP and SMTP).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use affluent_config::schema::{EmailConfig, NotifyConfig, WebhookConfig};
use affluent_core::Redactor;
use affluent_scheduler::{Notifier, Scheduler};
use jiff::ToSpan;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::{Recorder, every, fast_options, now_s, sqlite_store, task, tid};

/// Accepts HTTP POSTs and keeps their JSON bodies.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let keep = bodies.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).await.is_ok()
                    && let Ok(v) = serde_json::from_slice(&body)
                {
                    keep.lock().expect("lock").push(v);
                }
                let _ = reader
                    .get_mut()
                    .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (url, bodies)
}

/// A minimal SMTP server that keeps each message's DATA.
async fn smtp_sink() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("smtp://{}", listener.local_addr().expect("addr"));
    let messages = Arc::new(Mutex::new(Vec::new()));
    let keep = messages.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let _ = reader.get_mut().write_all(b"220 sink ESMTP\r\n").await;
                let mut in_data = false;
                let mut data = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let reply: &[u8] = if in_data {
                        if line == ".\r\n" {
                            in_data = false;
                            keep.lock().expect("lock").push(std::mem::take(&mut data));
                            b"250 queued\r\n"
                        } else {
                            data.push_str(&line);
                            continue;
                        }
                    } else {
                        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                        match verb.as_str() {
                            "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 ok\r\n",
                            "DATA" => {
                                in_data = true;
                                b"354 go ahead\r\n"
                            }
                            "QUIT" => {
                                let _ = reader.get_mut().write_all(b"221 bye\r\n").await;
                                return;
                            }
                            _ => b"502 unknown\r\n",
                        }
                    };
                    if reader.get_mut().write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, messages)
}

#[tokio::test]
async fn failure_and_recovery_reach_the_webhook_and_the_mailbox() {
    let (hook_url, hooks) = webhook_receiver().await;
    let (smtp_url, mails) = smtp_sink().await;
    let redactor = Arc::new(Redactor::new());
    redactor.add("s3cr3t-token");
    let notifier = Notifier::new(
        "demo",
        NotifyConfig {
            on: Vec::new(),
            webhook: Some(WebhookConfig {
                url: hook_url,
                headers: [(
                    "Authorization".to_string(),
                    "Bearer s3cr3t-token".to_string(),
                )]
                .into(),
            }),
            email: Some(EmailConfig {
                smtp_url,
                from: "affluent@example.org".into(),
                to: vec!["ops@example.org".into()],
            }),
        },
        redactor,
    );
    let dir = tempfile::tempdir().expect("tmp");
    let store = sqlite_store(&dir).await;
    let now = now_s();
    let start = now - 1.seconds();
    let schedule = every("1s", start);
    let intervals = schedule.intervals(start, now);
    assert_eq!(intervals.len(), 1);
    let recorder = Arc::new(Recorder::default());
    recorder
        .fail_first
        .lock()
        .expect("lock")
        .insert((tid("source:flaky"), intervals[0].start), 1);
    let scheduler = Scheduler::new(
        store,
        vec![task(&tid("source:flaky"), schedule, start)],
        recorder,
        fast_options(now),
    )
    .with_notifier(notifier);
    tokio::time::timeout(
        Duration::from_secs(30),
        scheduler.run(std::future::pending()),
    )
    .await
    .expect("in time")
    .expect("run");
    let hooks = hooks.lock().expect("lock").clone();
    let events: Vec<&str> = hooks.iter().filter_map(|h| h["event"].as_str()).collect();
    assert_eq!(events, vec!["failure", "recovery"], "{hooks:?}");
    assert_eq!(hooks[0]["task"], "source:flaky");
    assert!(
        hooks[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("injected failure"))
    );
    let mails = mails.lock().expect("lock").clone();
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert!(
        mails[0].contains("Subject: [affluent] demo: source:flaky failure"),
        "{}",
        mails[0]
    );
    assert!(mails[1].contains("recovery"));
    assert!(!mails.iter().any(|m| m.contains("s3cr3t-token")));
}
