//! The CSV connector (`type = "csv"`): [`CsvSource`] lands each file its glob matches whole
//! (an unchanged file is not landed twice), then parses it ([`parse`]); a row that does not fit
//! goes to the quarantine with its line, field and reason.

pub mod parse;

use affluent_config::schema::CsvSourceConfig;
use affluent_core::progress::{Progress, RequestProgress};
use affluent_landing::{Entry, NewEntry, Reject};
use futures::future::BoxFuture;
use jiff::Timestamp;
use serde_json::Value;

use crate::source::{RunContext, Source};
use crate::state::{CacheEntry, ChangeCache};
use crate::{RunSummary, SourceError};

/// A CSV source, built from its configuration.
#[derive(Debug)]
pub struct CsvSource {
    config: CsvSourceConfig,
}

impl CsvSource {
    /// The connector of a `type = "csv"` source.
    pub fn new(config: &CsvSourceConfig) -> Self {
        Self {
            config: config.clone(),
        }
    }
}

impl Source for CsvSource {
    fn kind(&self) -> &'static str {
        "csv"
    }

    fn has_interval(&self) -> bool {
        // Files have no data interval: each run reads what the glob matches.
        false
    }

    fn run<'a>(
        &'a self,
        ctx: RunContext<'a>,
        summary: &'a mut RunSummary,
    ) -> BoxFuture<'a, Result<Vec<Value>, SourceError>> {
        Box::pin(async move { self.read_files(ctx, summary) })
    }

    fn records(
        &self,
        entry: &Entry,
        body: &[u8],
    ) -> Result<(Vec<Value>, Vec<Reject>), SourceError> {
        let parsed = parse::parse(body, &self.config, &entry.meta.source, &entry.meta.entry_id)
            .map_err(SourceError::Plan)?;
        Ok((parsed.records, parsed.rejects))
    }

    fn records_chunked(
        &self,
        entry: &Entry,
        body: &[u8],
        max: usize,
        each: &mut dyn FnMut(Vec<Value>, Vec<Reject>),
    ) -> Result<(), SourceError> {
        parse::parse_chunks(
            body,
            &self.config,
            &entry.meta.source,
            &entry.meta.entry_id,
            max.max(1),
            each,
        )
        .map_err(SourceError::Plan)
    }
}

/// Records per chunk when a file is parsed at ingest (counted and quarantined, not kept).
const INGEST_CHUNK: usize = 16_384;

impl CsvSource {
    fn read_files(
        &self,
        ctx: RunContext<'_>,
        summary: &mut RunSummary,
    ) -> Result<Vec<Value>, SourceError> {
        let source = ctx.name;
        let project = &ctx.shared.project;
        let files = parse::files(&project.dir, &self.config).map_err(SourceError::Files)?;
        let total = files.len() as u64;
        // One event per file read, whatever became of it.
        let report = |summary: &RunSummary| {
            if let Some(observer) = ctx.observer {
                observer.observe(&Progress::Requests(RequestProgress {
                    source: source.to_string(),
                    done: summary.requests,
                    total,
                    failed: summary.errors.len() as u64,
                    records: summary.records,
                    landed: summary.landed,
                    unchanged: summary.unchanged,
                }));
            }
        };
        let landing = ctx.shared.landing();
        let quarantine = ctx.shared.quarantine();
        let cache = ChangeCache::open(&project.data_dir, source)?;
        let mut collected = Vec::new();
        for path in files {
            summary.requests += 1;
            let shown = path
                .strip_prefix(&project.dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    summary.errors.push(format!("cannot read {shown}: {e}"));
                    report(summary);
                    continue;
                }
            };
            summary.bytes += bytes.len() as u64;
            let hash = affluent_landing::content_hash(&bytes);
            let key = format!("file:{shown}");
            if let Some(seen) = cache
                .get(&key)
                .filter(|c| c.content_hash == hash && landing.has_body_by_id(source, &c.entry_id))
            {
                summary.unchanged += 1;
                if ctx.collect {
                    // A source resolving over this one needs its values every run, landed
                    // again or not (a watch list that did not change).
                    let parsed = parse::parse_chunks(
                        &bytes,
                        &self.config,
                        source,
                        &seen.entry_id,
                        INGEST_CHUNK,
                        &mut |chunk, _| collected.extend(chunk),
                    );
                    if let Err(reason) = parsed {
                        summary.errors.push(format!("{shown}: {reason}"));
                    }
                }
                report(summary);
                continue;
            }
            let meta = landing.write(
                NewEntry {
                    source: source.to_string(),
                    run_id: ctx.run_id.to_string(),
                    kind: "file".into(),
                    url: shown.clone(),
                    method: None,
                    request_body: None,
                    vars: Default::default(),
                    page: 0,
                    status: 200,
                    headers: parse::file_headers(&path),
                    fetched_at: Timestamp::now(),
                    interval: None,
                },
                &bytes,
            )?;
            summary.landed += 1;
            let mut records = 0u64;
            let mut rejects: Vec<Reject> = Vec::new();
            let parsed = parse::parse_chunks(
                &bytes,
                &self.config,
                source,
                &meta.entry_id,
                INGEST_CHUNK,
                &mut |chunk, found| {
                    records += chunk.len() as u64;
                    rejects.extend(found);
                    if ctx.collect {
                        collected.extend(chunk);
                    }
                },
            );
            if let Err(reason) = parsed {
                landing.reject(&meta, &reason)?;
                summary.errors.push(format!("{shown}: {reason}"));
                // Not remembered as seen: after a fix to the project file, the same bytes
                // are read again.
                report(summary);
                continue;
            }
            parse::in_file_order(&mut rejects);
            quarantine.put(source, &meta.entry_id, &rejects)?;
            summary.records += records;
            summary.quarantined += rejects.len() as u64;
            if let Some(first) = rejects.first() {
                summary.warnings.push(format!(
                    "{shown}: {} rows quarantined (first: {} {})",
                    rejects.len(),
                    first.location,
                    first.reason
                ));
            }
            cache.put(
                &key,
                CacheEntry {
                    etag: None,
                    last_modified: None,
                    content_hash: hash,
                    entry_id: meta.entry_id.clone(),
                },
            );
            // The cache points at the entry: durable first.
            landing.sync(ctx.run_id)?;
            cache.flush()?;
            report(summary);
        }
        Ok(collected)
    }
}
