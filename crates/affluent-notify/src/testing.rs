//! Real local receivers for tests: an HTTP server keeping the JSON bodies POSTed to it and an
//! SMTP server keeping each message's DATA (both speak just enough of their protocol).

#![allow(clippy::expect_used)] // test support fails loudly

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Accepts HTTP POSTs and keeps their JSON bodies.
pub async fn webhook_receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    webhook_receiver_failing(0).await
}

/// [`webhook_receiver`] that answers 503 to its first `failures` requests (and keeps their
/// bodies too).
pub async fn webhook_receiver_failing(
    failures: usize,
) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let keep = bodies.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let keep = keep.clone();
            let fail = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < failures;
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
                let answer: &[u8] = if fail {
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                } else {
                    b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                };
                let _ = reader.get_mut().write_all(answer).await;
            });
        }
    });
    (url, bodies)
}

/// A minimal SMTP server that keeps each message's DATA.
pub async fn smtp_sink() -> (String, Arc<Mutex<Vec<String>>>) {
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
