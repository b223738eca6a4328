use super::*;

fn new_entry(source: &str) -> NewEntry {
    NewEntry {
        source: source.into(),
        run_id: "r1".into(),
        kind: "http".into(),
        url: "https://x/y?apikey=***".into(),
        method: Some("GET".into()),
        request_body: None,
        vars: BTreeMap::new(),
        page: 0,
        status: 200,
        headers: BTreeMap::new(),
        fetched_at: Timestamp::now(),
        interval: None,
    }
}

fn segments(landing: &Landing, source: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(landing.source_dir(source))
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.extension().is_some_and(|e| e == "seg"));
    out.sort();
    out
}

#[cfg(unix)]
#[test]
fn landed_files_and_folders_are_the_owner_s_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let landing = Landing::open(dir.path());
    let meta = landing.write(new_entry("api"), b"[1]").unwrap();
    landing.sync(&meta.run_id).unwrap();
    let mut seen = 0;
    let mut stack = vec![dir.path().join("landing")];
    while let Some(p) = stack.pop() {
        let mode = fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", p.display());
        seen += 1;
        if p.is_dir() {
            stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert_eq!(seen, 3, "landing/, its source and one segment");
}

#[test]
fn concurrent_writes_of_one_file_each_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::thread::scope(|s| {
        for i in 0..8 {
            let path = &path;
            s.spawn(move || {
                for j in 0..50 {
                    write_atomic(path, format!("{i}-{j}").as_bytes()).unwrap();
                }
            });
        }
    });
    let last = std::fs::read_to_string(&path).unwrap();
    assert!(last.ends_with("-49"), "{last}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left");
}

#[test]
fn round_trips_bodies_in_order_and_marks_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let landing = Landing::open(dir.path());
    let a = landing.write(new_entry("s"), b"[1,2,3]").unwrap();
    let b = landing.write(new_entry("s"), b"{\"oops\":").unwrap();
    landing.reject(&b, "malformed JSON").unwrap();
    // Visible to this process before the sync, from memory.
    assert_eq!(landing.read_body(&a).unwrap(), b"[1,2,3]");
    assert!(landing.has_body_by_id("s", &b.entry_id));
    let check = |landing: &Landing| {
        let entries = landing.list("s").unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].meta, a);
        assert_eq!(entries[0].rejected, None);
        assert!(entries[0].stored_bytes > 0);
        assert_eq!(entries[1].rejected.as_deref(), Some("malformed JSON"));
        assert_eq!(landing.read_body(&a).unwrap(), b"[1,2,3]");
        let by_id = landing.read_body_by_id("s", &b.entry_id).unwrap();
        assert_eq!(by_id.as_deref(), Some(&b"{\"oops\":"[..]));
        assert_eq!(
            landing
                .read_body_by_id("s", "20000101T000000.000000Z-x-1")
                .unwrap(),
            None
        );
        assert!(landing.list("other").unwrap().is_empty());
    };
    check(&landing);
    landing.sync("r1").unwrap();
    // Another process's view: only what is on disk.
    check(&Landing::open(dir.path()));
    assert_eq!(a.content_hash, content_hash(b"[1,2,3]"));
}

#[test]
fn a_run_s_entries_share_one_segment_and_compress_together() {
    let dir = tempfile::tempdir().unwrap();
    let landing = Landing::open(dir.path());
    let mut raw = 0;
    for i in 0..2_000 {
        let body = format!(
            r#"[{{"date_time":"2024-01-01 {:02}:00","agency_name":"Lyon_{}","counter_id":{},"visitor_count":{},"unit":"visitors"}}]"#,
            i % 24,
            i % 7,
            i % 3,
            i * 7 % 1000
        );
        raw += body.len();
        let mut e = new_entry("api");
        e.url = format!("http://127.0.0.1:8000/get_visitor_count?agency_name=Lyon_{i}");
        landing.write(e, body.as_bytes()).unwrap();
        if i % 21 == 20 {
            landing.sync("r1").unwrap();
        }
    }
    landing.sync("r1").unwrap();
    assert_eq!(segments(&landing, "api").len(), 1);
    let on_disk: u64 = segments(&landing, "api")
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    let entries = Landing::open(dir.path()).list("api").unwrap();
    assert_eq!(entries.len(), 2_000);
    // Metadata included, the segment is smaller than the bodies alone.
    assert!(
        on_disk < raw as u64,
        "{on_disk} bytes on disk for {raw} bytes of bodies"
    );
}

#[test]
fn a_cut_short_segment_reads_up_to_its_last_whole_block() {
    let dir = tempfile::tempdir().unwrap();
    let landing = Landing::open(dir.path());
    let mut ids = Vec::new();
    let mut ends = Vec::new();
    for block in 0..3 {
        for i in 0..4 {
            let meta = landing
                .write(new_entry("s"), format!("[{block},{i}]").as_bytes())
                .unwrap();
            ids.push(meta.entry_id);
        }
        landing.sync("r1").unwrap();
        ends.push(fs::metadata(&segments(&landing, "s")[0]).unwrap().len());
    }
    drop(landing);
    let path = segments(&Landing::open(dir.path()), "s")[0].clone();
    let whole = fs::read(&path).unwrap();
    for cut in 0..=whole.len() {
        fs::write(&path, &whole[..cut]).unwrap();
        let fresh = Landing::open(dir.path());
        let listed = fresh.list("s").unwrap();
        let blocks = ends.iter().filter(|e| **e as usize <= cut).count();
        assert_eq!(listed.len(), blocks * 4, "cut at byte {cut}");
        for (e, id) in listed.iter().zip(&ids) {
            assert_eq!(&e.meta.entry_id, id);
            assert!(fresh.read_body(&e.meta).is_ok(), "cut at byte {cut}");
        }
    }
    // Flipped bytes in the last block's metadata: it is not read, the others are.
    let mut bad = whole.clone();
    let at = ends[1] as usize + 40;
    bad[at] ^= 0xff;
    fs::write(&path, &bad).unwrap();
    assert_eq!(Landing::open(dir.path()).list("s").unwrap().len(), 8);
    // Flipped bytes in a body: listed, and its read says what is wrong.
    let mut bad = whole;
    let last = bad.len() - 3;
    bad[last] ^= 0xff;
    fs::write(&path, &bad).unwrap();
    let fresh = Landing::open(dir.path());
    let listed = fresh.list("s").unwrap();
    assert_eq!(listed.len(), 12);
    let err = fresh.read_body(&listed[11].meta).unwrap_err().to_string();
    assert!(err.contains("checksum"), "{err}");
}

#[test]
fn a_new_writer_starts_a_new_segment_and_never_appends_to_another_s() {
    let dir = tempfile::tempdir().unwrap();
    let first = Landing::open(dir.path());
    let a = first.write(new_entry("s"), b"[1]").unwrap();
    first.sync("r1").unwrap();
    let second = Landing::open(dir.path());
    let b = second.write(new_entry("s"), b"[2]").unwrap();
    second.sync("r1").unwrap();
    let c = first.write(new_entry("s"), b"[3]").unwrap();
    first.sync("r1").unwrap();
    assert_eq!(segments(&first, "s").len(), 2);
    let ids: Vec<String> = Landing::open(dir.path())
        .list("s")
        .unwrap()
        .into_iter()
        .map(|e| e.meta.entry_id)
        .collect();
    assert_eq!(ids, [a.entry_id, b.entry_id, c.entry_id]);
}

#[test]
fn a_run_whose_entries_could_not_be_written_is_told_at_its_sync() {
    let dir = tempfile::tempdir().unwrap();
    let landing = Landing::open(dir.path());
    // The source's folder cannot be created: a file is in the way.
    fs::create_dir_all(dir.path().join("landing")).unwrap();
    fs::write(dir.path().join("landing/s"), b"in the way").unwrap();
    let mut e = new_entry("s");
    e.run_id = "doomed".into();
    landing.write(e, b"[1]").unwrap();
    let err = landing.sync("doomed").unwrap_err();
    assert!(
        matches!(err, LandingError::Lost { ref run_id, .. } if run_id == "doomed"),
        "{err}"
    );
    // Told once; another run is not affected.
    landing.sync("doomed").unwrap();
    landing.sync("other").unwrap();
}

#[test]
fn the_legacy_layout_moves_into_segments_with_its_ids_bodies_and_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let day = dir.path().join("landing/s/2024-03-01");
    fs::create_dir_all(&day).unwrap();
    let mut metas = Vec::new();
    for (i, body) in [&b"[1]"[..], b"{\"oops\":", b"[3]"].iter().enumerate() {
        let id = format!("20240301T10000{i}.000000Z-run-00000{i}");
        let meta = serde_json::json!({
            "entry_id": id, "source": "s", "run_id": "run", "kind": "http",
            "url": "https://x/y", "status": 200, "fetched_at": "2024-03-01T10:00:00Z",
            "content_hash": content_hash(body), "bytes": body.len(), "compressed_bytes": 12,
        });
        fs::write(
            day.join(format!("{id}.body.zst")),
            zstd::bulk::compress(body, 3).unwrap(),
        )
        .unwrap();
        fs::write(day.join(format!("{id}.meta.json")), meta.to_string()).unwrap();
        metas.push((id, body.to_vec()));
    }
    fs::write(
        day.join(format!("{}.rejected.json", metas[1].0)),
        r#"{"reason":"malformed JSON"}"#,
    )
    .unwrap();
    // A body whose metadata never made it: never an entry.
    fs::write(
        day.join("20240301T110000.000000Z-dead-000009.body.zst"),
        b"x",
    )
    .unwrap();

    let landing = Landing::open(dir.path());
    let listed = landing.list("s").unwrap();
    let ids: Vec<&str> = listed.iter().map(|e| e.meta.entry_id.as_str()).collect();
    assert_eq!(
        ids,
        metas.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>()
    );
    assert_eq!(listed[1].rejected.as_deref(), Some("malformed JSON"));
    for (e, (_, body)) in listed.iter().zip(&metas) {
        assert_eq!(&landing.read_body(&e.meta).unwrap(), body);
    }
    assert!(!day.exists(), "the day folder is gone");
    assert_eq!(segments(&landing, "s").len(), 1);
    // And another process sees the same.
    assert_eq!(Landing::open(dir.path()).list("s").unwrap(), listed);
}

#[test]
fn prune_removes_only_old_rejected_or_loaded_entries_and_cut_short_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let landing = Landing::open(dir.path());
    let old = || {
        let mut e = new_entry("s");
        e.fetched_at = "2020-01-01T00:00:00Z".parse().unwrap();
        e
    };
    let loaded = landing.write(old(), b"[1]").unwrap();
    let not_loaded = landing.write(old(), b"[2]").unwrap();
    let rejected = landing.write(old(), b"{").unwrap();
    landing.reject(&rejected, "malformed").unwrap();
    let recent = landing.write(new_entry("s"), b"[3]").unwrap();
    landing.sync("r1").unwrap();
    drop(landing);
    // A block cut short at the end of the segment that holds the old entries.
    let old_segment = segments(&Landing::open(dir.path()), "s")[0].clone();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(&old_segment)
        .unwrap();
    f.write_all(b"AFLB\x01\0\0\0 half a block").unwrap();
    drop(f);

    let landing = Landing::open(dir.path());
    let cutoff: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
    let is_loaded = |id: &str| id == loaded.entry_id;
    let dry = landing.prune("s", cutoff, &is_loaded, true).unwrap();
    assert_eq!(
        (dry.removed_entries, dry.kept_not_loaded, dry.kept_recent),
        (2, 1, 1)
    );
    assert_eq!(
        landing.list("s").unwrap().len(),
        4,
        "a dry run removes nothing"
    );
    let later = Timestamp::now() + jiff::SignedDuration::from_secs(60);
    let report = landing.prune("s", later, &is_loaded, false).unwrap();
    assert_eq!(report.removed_entries, 2);
    assert_eq!(report.removed_orphans, 1);
    assert!(report.bytes_freed > 0);
    let check = |landing: &Landing| {
        let left: Vec<String> = landing
            .list("s")
            .unwrap()
            .into_iter()
            .map(|e| e.meta.entry_id)
            .collect();
        assert_eq!(
            left,
            [not_loaded.entry_id.clone(), recent.entry_id.clone()],
            "unloaded entries stay, whatever their age"
        );
        assert_eq!(landing.read_body(&not_loaded).unwrap(), b"[2]");
        assert_eq!(landing.read_body(&recent).unwrap(), b"[3]");
    };
    check(&landing);
    check(&Landing::open(dir.path()));
    assert!(!old_segment.exists(), "rewritten under another name");
    let again = landing.prune("s", later, &is_loaded, false).unwrap();
    assert_eq!((again.removed_entries, again.removed_orphans), (0, 0));
}

#[test]
fn a_reader_that_indexed_a_segment_before_a_prune_rewrote_it_still_reads_its_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Landing::open(dir.path());
    let mut old = new_entry("s");
    old.fetched_at = "2020-01-01T00:00:00Z".parse().unwrap();
    let gone = writer.write(old.clone(), b"[1]").unwrap();
    let kept = writer.write(old, b"[2]").unwrap();
    writer.sync("r1").unwrap();
    let reader = Landing::open(dir.path());
    assert_eq!(reader.list("s").unwrap().len(), 2);
    let cutoff: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
    let report = writer
        .prune("s", cutoff, &|id| id == gone.entry_id, false)
        .unwrap();
    assert_eq!(report.removed_entries, 1);
    assert_eq!(reader.read_body(&kept).unwrap(), b"[2]");
    assert_eq!(reader.read_body_by_id("s", &gone.entry_id).unwrap(), None);
}

/// The child of the crash test: writes entries in runs of a few, syncs each run, and prints the
/// run's ids once its sync returned (acknowledged), until killed.
#[test]
#[ignore = "the child process of killed_writers_lose_no_acknowledged_entry_and_land_no_half_one"]
fn crash_child() {
    let Ok(dir) = std::env::var("AFFLUENT_LANDING_CRASH_DIR") else {
        return;
    };
    let landing = Landing::open(Path::new(&dir));
    let mut out = std::io::stdout().lock();
    for run in 0u64.. {
        let run_id = format!("{}-{run}", std::process::id());
        let mut ids = Vec::new();
        for i in 0..(1 + run % 5) {
            let mut e = new_entry("s");
            e.run_id = run_id.clone();
            // Bodies of varied size, some larger than a block.
            let size = if (run + i) % 17 == 0 {
                1_500_000
            } else {
                20 + (run * 31 + i) as usize % 3000
            };
            let body = body_for(&run_id, i, size);
            let meta = landing.write(e, &body).unwrap();
            ids.push(format!("{} {i} {size}", meta.entry_id));
        }
        landing.sync(&run_id).unwrap();
        for id in ids {
            writeln!(out, "ACK {id}").unwrap();
        }
        out.flush().unwrap();
    }
}

fn body_for(run_id: &str, i: u64, size: usize) -> Vec<u8> {
    let seed = format!("{run_id}/{i}/");
    seed.bytes().cycle().take(size).collect()
}

/// SIGKILL at random moments of segment writes: every acknowledged entry is there with its
/// exact body, every listed entry reads back whole (none half written), and a later writer
/// carries on.
#[test]
fn killed_writers_lose_no_acknowledged_entry_and_land_no_half_one() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acknowledged = Vec::new();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64;
    let rounds: usize = std::env::var("AFFLUENT_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    for _ in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "tests::crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("AFFLUENT_LANDING_CRASH_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(std::time::Duration::from_millis(20 + rng % 300));
        child.kill().unwrap();
        let output = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        // Only whole lines: the last one may be cut by the kill.
        let complete = text.rfind('\n').map_or("", |i| &text[..i]);
        acknowledged.extend(
            complete
                .lines()
                .filter_map(|l| l.strip_prefix("ACK "))
                .map(str::to_string),
        );
    }
    assert!(
        acknowledged.len() > rounds,
        "{} acknowledged",
        acknowledged.len()
    );
    let landing = Landing::open(dir.path());
    let listed = landing.list("s").unwrap();
    let by_id: HashMap<&str, &Entry> = listed
        .iter()
        .map(|e| (e.meta.entry_id.as_str(), e))
        .collect();
    for line in &acknowledged {
        let mut parts = line.split(' ');
        let (id, i, size) = (
            parts.next().unwrap(),
            parts.next().unwrap().parse::<u64>().unwrap(),
            parts.next().unwrap().parse::<usize>().unwrap(),
        );
        let entry = by_id
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged {id} is lost"));
        let body = landing.read_body(&entry.meta).unwrap();
        assert_eq!(body, body_for(&entry.meta.run_id, i, size), "{id}");
    }
    for e in &listed {
        let body = landing.read_body(&e.meta).unwrap();
        assert_eq!(
            content_hash(&body),
            e.meta.content_hash,
            "{}",
            e.meta.entry_id
        );
    }
    // A writer after the crashes lands and reads as usual.
    let meta = landing.write(new_entry("s"), b"[1]").unwrap();
    landing.sync("r1").unwrap();
    assert_eq!(Landing::open(dir.path()).read_body(&meta).unwrap(), b"[1]");
}

#[test]
fn prune_leaves_a_damaged_segment_alone() {
    let dir = tempfile::tempdir().unwrap();
    let landing = Landing::open(dir.path());
    let mut old = new_entry("s");
    old.fetched_at = "2020-01-01T00:00:00Z".parse().unwrap();
    let mut ends = Vec::new();
    for i in 0..3 {
        landing
            .write(old.clone(), format!("[{i}]").as_bytes())
            .unwrap();
        landing.sync("r1").unwrap();
        ends.push(fs::metadata(&segments(&landing, "s")[0]).unwrap().len());
    }
    drop(landing);
    let path = segments(&Landing::open(dir.path()), "s")[0].clone();
    // The second block's header no longer checks: the third, valid, follows it.
    let mut bytes = fs::read(&path).unwrap();
    bytes[ends[0] as usize + 9] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let landing = Landing::open(dir.path());
    assert_eq!(landing.list("s").unwrap().len(), 1);
    let later = Timestamp::now() + jiff::SignedDuration::from_secs(60);
    let report = landing.prune("s", later, &|_| true, false).unwrap();
    assert_eq!((report.removed_entries, report.removed_orphans), (0, 0));
    assert_eq!(fs::read(&path).unwrap(), bytes, "untouched");
}
