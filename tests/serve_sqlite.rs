//! `loopc serve` on SQLite, as a real process: every shared check (`tests/serve_checks/`)
//! against one server, then what needs a server of its own: no e-mail address in any file of
//! the store, SIGTERM draining a run in flight and exiting 0, and kill -9 mid-load losing no
//! acknowledged feedback.

mod serve_checks;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use serde_json::json;
use serve_checks::*;

fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("store.db").display())
}

#[test]
fn every_serve_check_passes_on_sqlite_and_no_email_address_reaches_a_file_of_the_store() {
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let mut server = Server::start(fixture.command(&url, &[]), &url);
    assert!(server.log().contains(&format!("store {url}")), "the store is named on start:\n{}", server.log());
    let failures = run_all(&server);
    assert!(failures.is_empty(), "{} serve check(s) failed on SQLite:\n{}\n\nserver log:\n{}", failures.len(), failures.join("\n"), server.log());

    // An e-mail address sent in inputs and comments: redacted before it is stored, so no file
    // of the store holds it, while the server runs and after it stopped.
    let mail = "jane.doe@example.com";
    for i in 0..20 {
        let r = server.post("/v1/run", &json!({"inputs": {"ticket": format!("Ticket {i} from {mail}, please reply")}, "user_id": format!("u{i}")}));
        assert_eq!(r.status, 200, "{}", r.body);
        let f = server.post("/v1/feedback", &json!({"run_id": r.json["run_id"], "key": "thumbs", "score": 0, "comment": format!("wrong, mail {mail}")}));
        assert_eq!(f.status, 201, "{}", f.body);
    }
    let check = |when: &str| {
        let files = files(dir.path());
        for (name, bytes) in &files {
            assert!(!contains(bytes, mail.as_bytes()) && !contains(bytes, b"example.com"), "{when}: `{name}` holds the address");
        }
        assert!(files.iter().any(|(_, b)| contains(b, b"[email]")), "{when}: the redacted text is stored");
        files.into_iter().map(|(n, _)| n).collect::<Vec<_>>()
    };
    let open = check("while serving");
    assert!(open.iter().any(|n| n == "store.db-wal"), "{open:?}");
    server.signal(libc::SIGTERM);
    assert!(server.wait(Duration::from_secs(30)).success(), "SIGTERM exits 0:\n{}", server.log());
    check("after SIGTERM");

    // The same store from the command line.
    let loopc = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_loopc")).args(args).args(["--store", &url]).output().unwrap();
        assert!(out.status.success(), "loopc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let listed: serde_json::Value = serde_json::from_str(&loopc(&["runs", "list", "--user", "u3", "--json"])).unwrap();
    let runs = listed["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{listed}");
    assert_eq!(runs[0]["inputs"]["ticket"], "Ticket 3 from [email], please reply");
    let id = runs[0]["id"].as_str().unwrap();
    let shown = loopc(&["runs", "show", id]);
    assert!(shown.contains("step route") && shown.contains("feedback") && shown.contains("thumbs score 0"), "{shown}");
    let feedback: serde_json::Value = serde_json::from_str(&loopc(&["feedback", "list", "--key", "thumbs", "--user", "nobody", "--json"])).unwrap();
    assert_eq!(feedback["feedback"].as_array().unwrap().len(), 0);
    let feedback: serde_json::Value = serde_json::from_str(&loopc(&["feedback", "list", "--run", id, "--json"])).unwrap();
    assert_eq!(feedback["feedback"][0]["comment"], "wrong, mail [email]", "{feedback}");
    let table = loopc(&["feedback", "list", "--program", "triage", "--key", "rating"]);
    assert!(table.lines().count() > 1 && table.contains("rating"), "{table}");
    let forgot: serde_json::Value = serde_json::from_str(&loopc(&["forget", "--user", "u3", "--json"])).unwrap();
    assert_eq!(forgot, json!({"runs": 1, "feedback": 1, "marked_versions": []}));
    let listed: serde_json::Value = serde_json::from_str(&loopc(&["runs", "list", "--user", "u3", "--json"])).unwrap();
    assert!(listed["runs"].as_array().unwrap().is_empty(), "{listed}");
}

/// A tool server that answers once released: it reports each request it gets on `got`, then
/// waits for `release` before answering `slow answer`.
fn slow_tool() -> (u16, std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (got_tx, got) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        // One request is all the test sends.
        if let Ok((mut sock, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf);
            let _ = got_tx.send(());
            let _ = release_rx.recv_timeout(Duration::from_secs(30));
            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 11\r\nconnection: close\r\n\r\nslow answer");
        }
    });
    (port, got, release)
}

/// `loopc serve` on a program whose one step calls the tool at `port`, with `extra` flags.
fn slow_server(fixture: &Fixture, url: &str, port: u16, extra: &[&str]) -> Server {
    let program = fixture.dir.path().join("slow.loop");
    std::fs::write(
        &program,
        "program slow \"Looks something up\"\ninput q: text\noutput a: text\n\
         tool lookup(q: text) -> text = http GET \"http://127.0.0.1:9/lookup?q={q}\" { timeout_ms: 30000 }\n\
         step s = call lookup { q: input.q }\nreturn { a: s.result }\n",
    )
    .unwrap();
    let tool_url = format!("lookup=http://127.0.0.1:{port}/lookup?q={{q}}");
    let mut cmd = fixture.command(url, &[&["--tool-url", tool_url.as_str()], extra].concat());
    // The fixture's command names the triage program first; serve the slow one instead.
    let args: Vec<std::ffi::OsString> =
        cmd.get_args().map(|a| if a == fixture.program().as_os_str() { program.clone().into_os_string() } else { a.to_os_string() }).collect();
    cmd = std::process::Command::new(cmd.get_program());
    cmd.args(args);
    Server::start(cmd, url)
}

#[test]
fn a_run_over_max_inflight_is_503_with_retry_after_and_sigterm_lets_a_run_in_flight_finish_then_exits_0() {
    let fixture = Fixture::new();
    let (port, got, release) = slow_tool();
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let mut server = slow_server(&fixture, &url, port, &["--max-inflight", "1"]);
    let addr = server.addr.clone();
    let client = std::thread::spawn(move || request(&addr, "POST", "/v1/run", Some(KEY), Some("application/json"), br#"{"inputs": {"q": "parcel 42"}}"#));
    got.recv_timeout(Duration::from_secs(30)).expect("the run reaches the tool");
    // One run is in flight, the most this server takes: another is refused for now.
    let busy = request(&server.addr, "POST", "/v1/run", Some(KEY), Some("application/json"), br#"{"inputs": {"q": "parcel 43"}}"#);
    busy.assert_error(503, "overloaded");
    assert_eq!(busy.header("retry-after").as_deref(), Some("1"), "{}", busy.head);
    server.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.child.try_wait().unwrap().is_none(), "the server waits for the run in flight:\n{}", server.log());
    assert!(std::net::TcpStream::connect(&server.addr).is_err(), "no new connections are taken while draining");
    release.send(()).unwrap();
    let answer = client.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json["outputs"]["a"], "slow answer");
    assert!(server.wait(Duration::from_secs(30)).success(), "exits 0 after draining:\n{}", server.log());
    assert!(server.log().contains("stopping"), "{}", server.log());
    // The drained run was committed before its answer went out.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stored = rt.block_on(async {
        let store = loopc::store::Store::open(&url).await.unwrap();
        let id = loopc::store::RunId::parse(answer.json["run_id"].as_str().unwrap()).unwrap();
        store.run(&id).await.unwrap()
    });
    assert_eq!(stored.expect("the run is stored").outputs, Some(json!({"a": "slow answer"})));
}

#[test]
fn acknowledged_feedback_survives_kill_9_of_the_server_on_sqlite_exactly_once() {
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    acknowledged_feedback_survives_kill_9_exactly_once(&fixture, &sqlite_url(dir.path()));
}

#[test]
fn without_an_api_key_serve_listens_on_loopback_only_and_says_so() {
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let base = |addr: &str| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_loopc"));
        c.arg("serve").arg(fixture.program()).args(["--store", &url, "--addr", addr, "--no-cache", "--model"]).arg(fixture.model());
        c.env_remove("LOOPC_API_KEY");
        c
    };
    let out = base("0.0.0.0:0").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address") && err.contains("--api-key-file"), "{err}");
    let server = Server::start(base("127.0.0.1:0"), &url);
    assert!(server.log().contains("no API key set"), "{}", server.log());
    let r = request(&server.addr, "POST", "/v1/run", None, Some("application/json"), br#"{"inputs": {"ticket": "hi"}}"#);
    assert_eq!(r.status, 200, "a keyless loopback server trusts local callers: {}", r.body);
    let r = request(&server.addr, "GET", "/v1/runs", Some("some-key-that-means-nothing"), None, b"");
    r.assert_error(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_serves_without_a_key_on_loopback_only() {
    use loopc::serve::{self, ServeError, ServeOptions, Service};
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let engine = loopc::Engine::new().unwrap();
    let options = loopc::runtime::ProgramOptions { model_override: Some(fixture.model().display().to_string()), ..Default::default() };
    let program = fixture.program();
    let loaded = tokio::task::spawn_blocking(move || serve::load(&engine, &program, options)).await.unwrap().unwrap();
    let store = loopc::store::Store::open(&sqlite_url(dir.path())).await.unwrap();
    let tokens = serve::token_key(&store, None).await.unwrap();
    let service = Service::new(loaded, store).await.unwrap();
    let never = std::future::pending::<()>;

    // A keyless server on an address other machines reach is refused before it serves.
    let public = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = serve::serve(public, service.clone(), tokens.clone(), ServeOptions::default(), never()).await.unwrap_err();
    assert!(matches!(err, ServeError::PublicWithoutKey { .. }), "{err}");

    // The app itself answers keyless calls only from peers it knows are on loopback: served
    // without the peer's address, it refuses them.
    let (router, _) = serve::app(service.clone(), tokens.clone(), &ServeOptions::default());
    let bare = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare_addr = bare.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(bare, router).await });
    let client = reqwest::Client::new();
    let r = client.get(format!("http://{bare_addr}/v1/runs")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("loopback"));

    // `serve` on loopback gives the app the peer's address: local callers are trusted.
    let local = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local_addr = local.local_addr().unwrap();
    tokio::spawn(serve::serve(local, service, tokens, ServeOptions::default(), never()));
    let r = client.get(format!("http://{local_addr}/v1/runs")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

#[test]
fn retention_deletes_old_runs_and_tokens_outlive_a_restart() {
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let old = rt.block_on(async {
        let store = loopc::store::Store::open(&url).await.unwrap();
        let three_days_ago = loopc::store::Timestamp::now().minus(Duration::from_secs(3 * 86_400));
        let run = loopc::store::NewRun { created: Some(three_days_ago), ..loopc::store::NewRun::new("triage", json!({"ticket": "old"})) };
        let id = store.record_run(run).await.unwrap().run_id().cloned().unwrap();
        store.close().await;
        id
    });
    let server = Server::start(fixture.command(&url, &["--retain-days", "1", "--retention-interval", "1"]), &url);
    let fresh = server.run("new ticket");
    let token = fresh["feedback_token"].as_str().unwrap().to_string();
    let start = std::time::Instant::now();
    while server.get(&format!("/v1/runs/{old}")).status != 404 {
        assert!(start.elapsed() < Duration::from_secs(20), "the old run was never expired:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.get(&format!("/v1/runs/{}", fresh["run_id"].as_str().unwrap())).status, 200, "a new run is kept");
    assert!(server.get("/metrics").body.contains("loopc_retention_removed_runs_total 1"));
    drop(server);
    // A restarted server signs with the same key, kept in the store.
    let again = Server::start(fixture.command(&url, &[]), &url);
    let r = again.post_as("/v1/feedback", Some(&token), &json!({"run_id": fresh["run_id"], "key": "thumbs", "score": 1}));
    assert_eq!(r.status, 201, "{}", r.body);
}

#[test]
fn a_request_that_never_finishes_cannot_hold_shutdown_past_the_drain_limit() {
    let fixture = Fixture::new();
    let (port, got, _never_released) = slow_tool();
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let mut server = slow_server(&fixture, &url, port, &["--drain-seconds", "1"]);
    let addr = server.addr.clone();
    let client = std::thread::spawn(move || send(&addr, "POST", "/v1/run", Some(KEY), Some("application/json"), br#"{"inputs": {"q": "stuck"}}"#));
    got.recv_timeout(Duration::from_secs(30)).expect("the run reaches the tool");
    server.signal(libc::SIGTERM);
    assert!(server.wait(Duration::from_secs(20)).success(), "exits 0 once the drain limit passed:\n{}", server.log());
    assert!(client.join().unwrap().is_none_or(|r| r.status != 200), "the stuck run got no 2xx");
}

#[test]
fn a_served_artifact_names_every_run_by_its_hash_and_is_recorded_as_a_version() {
    let fixture = Fixture::new();
    let data = fixture.dir.path().join("tickets.jsonl");
    let rows: String =
        [("I was charged twice", "billing"), ("the app crashes", "tech"), ("refund please", "billing"), ("login fails", "tech"), ("hello", "other")]
            .iter()
            .map(|(t, team)| format!("{}\n", json!({"ticket": t, "team": team})))
            .collect();
    std::fs::write(&data, rows).unwrap();
    let artifact = fixture.dir.path().join("triage.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loopc"))
        .arg("compile")
        .arg(fixture.program())
        .args(["--optimizer", "labeled_few_shot", "--max-demos", "2", "--no-cache", "--metric", "ok"])
        .arg("--train")
        .arg(&data)
        .arg("--dev")
        .arg(&data)
        .arg("--model")
        .arg(fixture.model())
        .arg("-o")
        .arg(&artifact)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hash = loopc::fs::sha256_hex(&std::fs::read(&artifact).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let mut cmd = fixture.command(&url, &[]);
    let args: Vec<std::ffi::OsString> =
        cmd.get_args().map(|a| if a == fixture.program().as_os_str() { artifact.clone().into_os_string() } else { a.to_os_string() }).collect();
    cmd = std::process::Command::new(cmd.get_program());
    cmd.args(args);
    let server = Server::start(cmd, &url);
    assert!(server.log().contains(&format!("from artifact {}", &hash[..12])), "{}", server.log());
    assert_eq!(request(&server.addr, "GET", "/healthz", None, None, b"").json["artifact"], hash.as_str());
    let run = server.run("my card was charged twice");
    let stored = server.get(&format!("/v1/runs/{}", run["run_id"].as_str().unwrap())).json;
    assert_eq!(stored["artifact"], hash.as_str());
    let page = server.get(&format!("/v1/runs?artifact={hash}"));
    assert_eq!(page.json["runs"].as_array().unwrap().len(), 1, "{}", page.body);
    drop(server);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let versions = rt.block_on(async { loopc::store::Store::open(&url).await.unwrap().artifacts("triage").await.unwrap() });
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].hash, hash);
    assert_eq!(versions[0].body.as_ref().unwrap()["format"], "loopc-artifact");
}

#[test]
fn two_replicas_learn_from_feedback_while_serving_and_no_request_fails_across_the_swap() {
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    two_replicas_learn_while_serving_and_no_request_fails(&fixture, &sqlite_url(dir.path()));
}

#[test]
fn a_canary_people_approve_of_less_is_rolled_back_and_never_becomes_current() {
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    // Any candidate passes the gate (`--margin 1`), so it becomes a canary on half the traffic.
    let flags = ["--learn-every", "16", "--learn-poll", "1s", "--margin", "1", "--holdout-share", "0.3", "--explore", "0.5", "--canary-runs", "8"];
    let server = Server::start(fixture.command(&url, &flags), &url);
    let teams = ["billing", "tech", "other"];
    for i in 0..20 {
        let team = teams[i % 3];
        let run = server.run(&format!("ticket {i}: a question for {team}"));
        assert_eq!(server.post("/v1/feedback", &json!({"run_id": run["run_id"], "key": "correction", "correction": {"team": team}})).status, 201);
    }
    let start = std::time::Instant::now();
    while !server.log().contains("learner: canary started") {
        assert!(start.elapsed() < Duration::from_secs(300), "no canary in 300 s:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // People dislike every answer of the canary and like every answer of the served program.
    let (mut canary, mut served) = (0, 0);
    let mut i = 0;
    while canary < 8 || served < 8 {
        let run = server.run(&format!("after the canary started {i}"));
        let is_canary = run["artifact"].is_string();
        let thumbs = if is_canary { 0 } else { 1 };
        assert_eq!(server.post("/v1/feedback", &json!({"run_id": run["run_id"], "key": "thumbs", "score": thumbs})).status, 201);
        if is_canary {
            canary += 1
        } else {
            served += 1
        }
        i += 1;
        assert!(i < 400, "the canary took {canary} of {i} runs; it should take about half");
    }
    let start = std::time::Instant::now();
    while !server.log().contains("learner: canary rolled back") {
        assert!(start.elapsed() < Duration::from_secs(120), "the canary was not judged:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!server.log().contains("canary promoted"), "{}", server.log());
    assert_eq!(request(&server.addr, "GET", "/healthz", None, None, b"").json["artifact"], serde_json::Value::Null, "the program as written still serves");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let current = rt.block_on(async { loopc::learn::current(&loopc::store::Store::open(&url).await.unwrap(), "triage").await.unwrap() });
    assert!(current.is_none(), "a rolled-back canary is never the store's current version");
}

#[test]
fn bad_learning_flags_are_refused_before_serving() {
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    for (flags, says) in [
        (&["--learn-every", "0"][..], "'--learn-every <N|DURATION>': 0: give a number of runs above zero"),
        (&["--learn-every", "soon"][..], "`soon` is not a duration"),
        (&["--learn-every", "10", "--explore", "1.5"][..], "'--explore <SHARE>': `1.5` is not a share: write a number from 0 to 1"),
        (&["--learn-every", "10", "--margin=-1"][..], "'--margin <MARGIN>': `-1` is not a margin"),
        (&["--explore", "0.1"][..], "--learn-every"),
    ] {
        let out = fixture.command(&url, flags).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(says) && !err.contains("listening"), "{flags:?}: {err}");
    }
}

#[test]
fn a_correction_reaches_the_next_similar_request_on_every_replica_at_once_and_leaves_with_a_forget() {
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    two_replicas_recall_a_correction_at_once_and_forget_it_everywhere(&fixture, &sqlite_url(dir.path()));
}
