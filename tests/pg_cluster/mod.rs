//! A throwaway PostgreSQL cluster for tests: `initdb`, `pg_ctl start` on a free port, stopped
//! and deleted on drop. Used by `tests/store_postgres.rs` and `tests/serve_postgres.rs`.
//!
//! The server binaries are looked up in `$LOOPC_PG_BIN`, else `/usr/lib/postgresql/15/bin`.
//! Without them [`Cluster::start`] fails and says how to install them: a test never passes
//! silently. `initdb` refuses to run as root, so as root the cluster runs as the `postgres` user.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running throwaway cluster; dropping it stops the server and deletes its files.
pub struct Cluster {
    root: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    /// Whether commands run through `runuser -u postgres` (the test runs as root).
    as_postgres: bool,
}

fn pg_bin() -> PathBuf {
    std::env::var_os("LOOPC_PG_BIN").map_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"), PathBuf::from)
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free local port")
}

pub fn check_output(what: &str, out: std::io::Result<Output>, log: Option<&Path>) {
    let out = out.unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    if !out.status.success() {
        let log = log.and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
        panic!("{what} failed ({}):\n{}{}\n{log}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
}

impl Cluster {
    pub fn start() -> Cluster {
        let bin = pg_bin();
        assert!(
            bin.join("initdb").is_file() && bin.join("pg_ctl").is_file(),
            "PostgreSQL server binaries are not in `{}`, so the store cannot be tested on PostgreSQL.\n\
             Install them with `apt-get update && apt-get install -y postgresql-15` (Debian/Ubuntu; `.ci/postgres.sh` does this),\n\
             or set LOOPC_PG_BIN to the directory that holds `initdb` and `pg_ctl`.",
            bin.display()
        );
        let root = tempfile::Builder::new().prefix("loopc-pg-").tempdir().expect("a temporary directory");
        let as_postgres = running_as_root();
        let cluster = Cluster { bin, port: free_port(), as_postgres, root };
        std::fs::create_dir(cluster.socket_dir()).unwrap();
        if as_postgres {
            check_output("chown postgres", Command::new("chown").args(["-R", "postgres:postgres"]).arg(cluster.root.path()).output(), None);
        }
        check_output(
            "initdb",
            cluster
                .command("initdb")
                .arg("-D")
                .arg(cluster.data_dir())
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"])
                .output(),
            None,
        );
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", cluster.port, cluster.socket_dir().display());
        let log = cluster.root.path().join("server.log");
        check_output(
            "pg_ctl start",
            cluster.command("pg_ctl").arg("-D").arg(cluster.data_dir()).arg("-l").arg(&log).args(["-w", "-t", "60", "-o", &options, "start"]).output(),
            Some(&log),
        );
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.root.path().join("sock")
    }

    /// A server binary, run as `postgres` when the test runs as root.
    pub fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    pub fn create_db(&self, name: &str) {
        let port = self.port.to_string();
        check_output("createdb", self.command("createdb").args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name]).output(), None);
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // `immediate`: the data is thrown away, so there is nothing to shut down cleanly.
        let _ = self.command("pg_ctl").arg("-D").arg(self.data_dir()).args(["-m", "immediate", "-w", "stop"]).output();
    }
}

pub fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload.downcast_ref::<String>().cloned().or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "(no message)".into())
}
