//! `loopc serve` on a real PostgreSQL server that this test starts (see `tests/pg_cluster/`):
//! every shared check (`tests/serve_checks/`) against one server, two replicas on one database
//! (each reads the other's runs and accepts the other's feedback tokens), and kill -9 mid-load
//! losing no acknowledged feedback. Without PostgreSQL's server binaries the tests fail and
//! say how to install them.

mod pg_cluster;
mod serve_checks;

use pg_cluster::Cluster;
use serde_json::json;
use serve_checks::*;

#[test]
fn every_serve_check_passes_on_postgresql_and_replicas_share_runs_and_tokens() {
    let cluster = Cluster::start();
    cluster.create_db("serve");
    let url = cluster.url("serve");
    let fixture = Fixture::new();
    let a = Server::start(fixture.command(&url, &[]), &url);
    let failures = run_all(&a);
    assert!(failures.is_empty(), "{} serve check(s) failed on PostgreSQL:\n{}\n\nserver log:\n{}", failures.len(), failures.join("\n"), a.log());

    // A second replica on the same database: stateless, so either answers for any run.
    let b = Server::start(fixture.command(&url, &[]), &url);
    let run = a.run("replicas share one store");
    let id = run["run_id"].as_str().unwrap();
    assert_eq!(b.get(&format!("/v1/runs/{id}")).json["id"], id, "replica B reads replica A's run");
    let token = run["feedback_token"].as_str().unwrap();
    let r = b.post_as("/v1/feedback", Some(token), &json!({"run_id": id, "key": "thumbs", "score": 1, "id": client_id("replica")}));
    assert_eq!(r.status, 201, "replica B accepts replica A's token (one key in the store): {}", r.body);
    // The same client id sent to both replicas: stored once.
    let cid = client_id("both");
    let body = json!({"id": cid, "run_id": id, "key": "rating", "score": 3});
    let (x, y) = (a.post("/v1/feedback", &body), b.post("/v1/feedback", &body));
    assert_eq!([x.status, y.status], [201, 200], "{} / {}", x.body, y.body);
    assert_eq!(x.json["id"], y.json["id"]);
}

#[test]
fn acknowledged_feedback_survives_kill_9_of_the_server_on_postgresql_exactly_once() {
    let cluster = Cluster::start();
    cluster.create_db("faults");
    let fixture = Fixture::new();
    acknowledged_feedback_survives_kill_9_exactly_once(&fixture, &cluster.url("faults"));
}

#[test]
fn two_replicas_on_postgresql_learn_while_serving_one_at_a_time_and_no_request_fails() {
    let cluster = Cluster::start();
    cluster.create_db("learn");
    let fixture = Fixture::new();
    two_replicas_learn_while_serving_and_no_request_fails(&fixture, &cluster.url("learn"));
}

#[test]
fn a_correction_reaches_the_next_similar_request_on_every_replica_on_postgresql_and_leaves_with_a_forget() {
    let cluster = Cluster::start();
    cluster.create_db("memory");
    let fixture = Fixture::new();
    two_replicas_recall_a_correction_at_once_and_forget_it_everywhere(&fixture, &cluster.url("memory"));
}
