//! The store on SQLite: every shared check (`tests/store_checks/`) as its own test on a fresh
//! file, then what only SQLite has: files on disk (no e-mail address in any of them, WAL
//! mode), durability across kill -9 of the writing process, and how URLs open.

mod store_checks;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use loopc::store::*;
use serde_json::json;

/// A fresh store URL in a temporary directory (kept alive by the returned guard).
fn fresh() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    (dir, url)
}

macro_rules! sqlite_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (_dir, url) = fresh();
                store_checks::$name(url).await;
            }
        )*
    };
}
store_checks::for_each_check!(sqlite_tests);

/// Every file in `dir` with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_address_in_an_input_appears_in_no_file_of_the_sqlite_store() {
    let (dir, url) = fresh();
    let store = store_checks::open(&url).await;
    let mail = "jane.doe@example.com";
    for i in 0..40 {
        let run = NewRun {
            outputs: Some(json!({"reply": format!("Dear {mail}")})),
            trace: json!({"steps": [{"prompt": format!("Ticket {i} from {mail}")}]}),
            user_id: Some(format!("user-{i}")),
            ..NewRun::new("triage", json!({"ticket": format!("Hello, this is {mail}, ticket {i}"), "cc": [mail]}))
        };
        let id = store.record_run(run).await.unwrap().run_id().cloned().unwrap();
        let f = NewFeedback { comment: Some(format!("from {mail}")), ..NewFeedback::new(id, "thumbs", FeedbackPayload::Score(1.0)) };
        store.add_feedback(f).await.unwrap();
    }
    let check = |when: &str| {
        let files = files(dir.path());
        let names: Vec<_> = files.iter().map(|(n, _)| n.as_str()).collect();
        for (name, bytes) in &files {
            assert!(!contains(bytes, mail.as_bytes()), "{when}: `{name}` holds the address");
            assert!(!contains(bytes, b"example.com"), "{when}: `{name}` holds the domain");
        }
        assert!(files.iter().any(|(_, b)| contains(b, b"[email]")), "{when}: the redacted text is stored somewhere ({names:?})");
        names.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    // While the store is open the data sits in the WAL; all three files exist.
    let open_files = check("while open");
    for f in ["store.db", "store.db-wal", "store.db-shm"] {
        assert!(open_files.iter().any(|n| n == f), "{f} missing from {open_files:?}");
    }
    // Closing checkpoints the WAL into the database file.
    store.close().await;
    drop(store);
    check("after closing");
}

#[tokio::test]
async fn a_sqlite_store_is_a_wal_file_created_with_its_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep/er dir/store #1.db");
    let store = Store::open(&format!("sqlite://{}", path.display())).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    store.record_run(NewRun::new("p", json!({}))).await.unwrap();
    let header = std::fs::read(&path).unwrap();
    assert_eq!(&header[..16], b"SQLite format 3\0");
    // Bytes 18 and 19 of the header are the write and read format versions: 2 means WAL.
    assert_eq!((header[18], header[19]), (2, 2), "the database is in WAL mode");
}

#[tokio::test]
async fn a_fsync_per_commit_url_and_an_in_memory_store_both_work() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?synchronous=full", dir.path().join("full.db").display());
    let store = Store::open(&url).await.unwrap();
    let run = store.record_run(NewRun::new("p", json!({}))).await.unwrap();
    assert!(store.run(run.run_id().unwrap()).await.unwrap().is_some());
    let memory = Store::open("sqlite::memory:").await.unwrap();
    let run = memory.record_run(NewRun::new("p", json!({}))).await.unwrap();
    assert!(memory.run(run.run_id().unwrap()).await.unwrap().is_some(), "an in-memory store keeps its data while open");
}

#[tokio::test]
async fn unusable_urls_and_unreachable_databases_are_typed_errors() {
    for url in ["mysql://h/db", "store.db", "sqlite://", "sqlite://x.db?mode=ro"] {
        let err = Store::open(url).await.unwrap_err();
        assert!(matches!(err, StoreError::BadUrl { .. }), "{url}: {err}");
    }
    let err = Store::open("sqlite:///proc/loopc-cannot-exist/store.db").await.unwrap_err();
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err}");
    // Nothing listens on port 1: the connection is refused at once, and the password is not repeated.
    let err = Store::open("postgres://loopc:hunter2@127.0.0.1:1/loopc").await.unwrap_err();
    assert!(matches!(err, StoreError::Connect { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1") && !text.contains("hunter2"), "{text}");
}

const KILL_CHILD: &str = "LOOPC_TEST_STORE_WRITER_URL";

/// In the child: write feedback from 8 tasks and print `ack <client id>` after each write returns.
fn write_until_killed(url: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let store = Store::open(url).await.unwrap();
        let run = store.record_run(NewRun::new("triage", json!({"ticket": "t"}))).await.unwrap().run_id().cloned().unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..8 {
            let (store, run) = (store.clone(), run.clone());
            tasks.spawn(async move {
                for i in 0.. {
                    let client = format!("w{task}-{i}");
                    let f = NewFeedback { client_id: Some(client.clone()), ..NewFeedback::new(run.clone(), "thumbs", FeedbackPayload::Score(1.0)) };
                    store.add_feedback(f).await.unwrap();
                    println!("ack {client}");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
}

#[test]
fn acknowledged_feedback_survives_kill_9_of_the_writing_process() {
    // This test runs itself a second time as the writing process (see `write_until_killed`).
    if let Ok(url) = std::env::var(KILL_CHILD) {
        return write_until_killed(&url);
    }
    let (_dir, url) = fresh();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "acknowledged_feedback_survives_kill_9_of_the_writing_process", "--nocapture", "--test-threads=1"])
        .env(KILL_CHILD, &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(client) = line.strip_prefix("ack ") {
            acked.push(client.to_string());
            if acked.len() == 600 {
                child.kill().unwrap(); // SIGKILL, mid-write
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(acked.len(), 600, "the writer stopped early");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(&url).await.unwrap();
        let stored = store.feedback(&FeedbackFilter::default()).await.unwrap();
        let mut clients: Vec<_> = stored.iter().filter_map(|f| f.client_id.clone()).collect();
        let n = clients.len();
        clients.sort();
        clients.dedup();
        assert_eq!(clients.len(), n, "a client id is stored twice");
        let missing: Vec<_> = acked.iter().filter(|c| clients.binary_search(c).is_err()).collect();
        assert!(missing.is_empty(), "{} acknowledged writes are gone after kill -9: {:?}", missing.len(), &missing[..missing.len().min(5)]);
    });
}
