//! Failure and recovery notifications, received by a local webhook receiver and a local SMTP
//! sink (both real TCP servers speaking just enough HTTP and SMTP, from affluent-notify).

use std::sync::Arc;
use std::time::Duration;

use affluent_config::schema::{EmailConfig, NotifyConfig, WebhookConfig};
use affluent_core::Redactor;
use affluent_notify::testing::{smtp_sink, webhook_receiver};
use affluent_scheduler::{Notifier, Scheduler};
use jiff::ToSpan;

use super::{Recorder, every, fast_options, now_s, sqlite_store, task, tid};

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
