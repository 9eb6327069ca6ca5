//! The store on a real PostgreSQL server (15 here): this test binary starts a throwaway cluster
//! (`initdb`, `pg_ctl start` on a free port), runs every shared store check
//! (`tests/store_checks/`) on a fresh database of it, and stops it, even when a check fails.
//!
//! The server binaries are looked up in `$LOOPC_PG_BIN`, else `/usr/lib/postgresql/15/bin`.
//! Without them the test fails and says how to install them: it never passes silently.
//! `initdb` refuses to run as root, so as root the cluster runs as the `postgres` user.

mod pg_cluster;
mod store_checks;

use pg_cluster::{check_output, panic_text, Cluster};

#[test]
fn every_store_check_passes_on_a_real_postgresql_server() {
    let cluster = Cluster::start();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    let mut failures = Vec::new();
    let checks = store_checks::all();
    for (i, (name, check)) in checks.iter().enumerate() {
        let db = format!("check_{i}");
        cluster.create_db(&db);
        // A check runs as a task so that its panic is reported here and the others still run.
        if let Err(e) = rt.block_on(async { tokio::spawn(check(cluster.url(&db))).await }) {
            failures.push(format!("{name}: {}", if e.is_panic() { panic_text(e.into_panic()) } else { e.to_string() }));
        }
    }
    // A server whose default isolation is SERIALIZABLE: racing duplicate client ids still store
    // one row and answer every duplicate (the store's write transactions set their own level).
    cluster.create_db("serializable_default");
    let port = cluster.port.to_string();
    let alter = "ALTER DATABASE serializable_default SET default_transaction_isolation = 'serializable'";
    check_output("psql", cluster.command("psql").args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", "postgres", "-c", alter]).output(), None);
    let url = cluster.url("serializable_default");
    if let Err(e) = rt.block_on(async { tokio::spawn(store_checks::concurrent_duplicates_of_a_client_id_store_exactly_one_row(url)).await }) {
        failures.push(format!("concurrent duplicates under a SERIALIZABLE default: {}", if e.is_panic() { panic_text(e.into_panic()) } else { e.to_string() }));
    }
    // What only a server has: a database that is not there is a connect error naming it.
    rt.block_on(async {
        let store = loopc::store::Store::open(&cluster.url("check_0")).await.unwrap();
        assert_eq!(store.backend(), loopc::store::Backend::Postgres);
        let err = loopc::store::Store::open(&cluster.url("no_such_db")).await.unwrap_err();
        assert!(matches!(err, loopc::store::StoreError::Connect { .. }) && err.to_string().contains("no_such_db"), "{err}");
    });
    assert!(failures.is_empty(), "{} of {} store checks failed on PostgreSQL:\n{}", failures.len(), checks.len(), failures.join("\n"));
}
