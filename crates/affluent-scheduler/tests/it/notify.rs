//! Failure and recovery notifications, received by a local webhook receiver and a local SMTP
//! sink (both real TCP servers speaking just enough HTTP and SMTP, from affluent-notify).

use std::sync::Arc;
use std::time::Duration;

use affluent_config::schema::{EmailConfig, NotifyConfig, NotifyOn, WebhookConfig};
use affluent_core::Redactor;
use affluent_notify::testing::{smtp_sink, webhook_receiver};
use affluent_scheduler::{Notifier, Scheduler, TaskSpec};
use jiff::ToSpan;

use super::{Recorder, every, fast_options, now_s, sqlite_store, task, tid};

/// The local webhook receiver (sent a secret in a header) and SMTP sink, for `on`.
fn channels(on: Vec<NotifyOn>, hook_url: String, smtp_url: String) -> NotifyConfig {
    NotifyConfig {
        on,
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
    }
}

#[tokio::test]
async fn failure_and_recovery_reach_the_webhook_and_the_mailbox() {
    let (hook_url, hooks) = webhook_receiver().await;
    let (smtp_url, mails) = smtp_sink().await;
    let redactor = Arc::new(Redactor::new());
    redactor.add("s3cr3t-token");
    let notifier = Notifier::new("demo", channels(Vec::new(), hook_url, smtp_url), redactor);
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

#[tokio::test]
async fn one_summary_per_tick_lists_every_source_its_failure_and_the_alerts() {
    let (hook_url, hooks) = webhook_receiver().await;
    let (smtp_url, mails) = smtp_sink().await;
    let redactor = Arc::new(Redactor::new());
    redactor.add("s3cr3t-token");
    let notifier = Notifier::new(
        "culture",
        channels(vec![NotifyOn::Tick], hook_url, smtp_url),
        redactor,
    );
    let dir = tempfile::tempdir().expect("tmp");
    let store = sqlite_store(&dir).await;
    let now = now_s();
    // One tick, the next an hour away: the summary must come while the scheduler runs on.
    let start = now - 1.hours();
    let schedule = every("1h", start);
    let intervals = schedule.intervals(start, now);
    assert_eq!(intervals.len(), 1);
    let recorder = Arc::new(Recorder {
        fired: vec!["Paris : 12 événements (médiane 3) s3cr3t-token".to_string()],
        // The economy ends well after the events: the model they both feed runs twice.
        slow: [(tid("source:economy"), Duration::from_millis(800))].into(),
        ..Recorder::default()
    });
    recorder
        .fail_first
        .lock()
        .expect("lock")
        .insert((tid("source:matches"), intervals[0].start), 1);
    let mut tasks: Vec<TaskSpec> = ["source:events", "source:matches", "source:economy"]
        .iter()
        .map(|t| task(&tid(t), schedule.clone(), start))
        .collect();
    // A model both the events and the economy trigger: its run after the second is in the
    // tick's summary.
    tasks[0].downstream = vec![tid("model:events_by_city")];
    tasks[2].downstream = vec![tid("model:events_by_city")];
    tasks.push(TaskSpec {
        id: tid("model:events_by_city"),
        schedule: Some(schedule.clone()),
        triggered: true,
        start: None,
        catchup: true,
        max_active: 1,
        downstream: Vec::new(),
    });
    let options = affluent_scheduler::Options {
        until: None,
        ..fast_options(now)
    };
    let scheduler = Scheduler::new(store, tasks, recorder, options).with_notifier(notifier);
    let arrived = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = arrived.clone();
    let waiting = mails.clone();
    let first_mail = async move {
        for _ in 0..200 {
            if !waiting.lock().expect("lock").is_empty() {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(40), scheduler.run(first_mail))
        .await
        .expect("in time")
        .expect("run");
    assert!(
        arrived.load(std::sync::atomic::Ordering::SeqCst),
        "the summary came while the scheduler ran, not at its shutdown"
    );
    // One message for the tick, not one per task (the retry of matches is not in it).
    let mails = mails.lock().expect("lock").clone();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &readable(&mails[0]);
    assert!(
        mail.contains("Subject: [affluent] culture: run of ")
            && mail.contains("1 failed, 3 alert(s)"),
        "{mail}"
    );
    for line in [
        "- source:events: 1 record(s) fetched in 1 request(s), 1 row(s) loaded",
        "- source:economy: 1 record(s) fetched in 1 request(s), 1 row(s) loaded",
        "- source:matches: FAILED: injected failure, 0 left (retried later)",
        "- model:events_by_city: 1 row(s) written",
        "Alerts fired (3):",
        "- Paris : 12 événements (médiane 3) ***",
    ] {
        assert!(mail.contains(line), "{line:?} not in {mail}");
    }
    assert!(!mail.contains("s3cr3t-token"));
    let hooks = hooks.lock().expect("lock").clone();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["event"], "tick");
    assert_eq!(hooks[0]["failed"], 1);
    let tasks: Vec<&str> = hooks[0]["runs"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["task"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        tasks.last(),
        Some(&"model:events_by_city"),
        "the model's run after the economy is in the summary: {tasks:?}"
    );
    assert_eq!(
        tasks
            .iter()
            .filter(|t| **t == "model:events_by_city")
            .count(),
        2
    );
    assert_eq!(hooks[0]["alerts"].as_array().map(Vec::len), Some(3));
}

/// A message as its reader sees it: folded header lines unfolded, quoted-printable decoded.
fn readable(raw: &str) -> String {
    let text = raw
        .replace("\r\n", "\n")
        .replace("=\n", "")
        .replace("\n ", " ");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
