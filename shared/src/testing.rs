//! Test support (feature `testing`): each test gets its own PostgreSQL schema and its own
//! Redis server, so tests run in parallel, in any order, and leave nothing behind.
//!
//! The PostgreSQL server comes from `CODEX32_TEST_DATABASE_URL` (the test script sets it up);
//! Redis is started here from the `redis-server` binary, listening on a private Unix socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Where test schemas are created unless `CODEX32_TEST_DATABASE_URL` says otherwise.
pub const DEFAULT_TEST_DATABASE_URL: &str =
    "postgres://codex32:codex32@127.0.0.1:5432/codex32_test";

fn base_url() -> String {
    std::env::var("CODEX32_TEST_DATABASE_URL")
        .unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned())
}

/// A PostgreSQL schema of its own, dropped with this guard.
pub struct TestSchema {
    pub url: String,
    name: String,
}

impl TestSchema {
    /// Creates an empty schema and returns a URL whose connections use it.
    pub async fn create() -> Self {
        let name = format!("t_{}", Uuid::new_v4().simple());
        let base = base_url();
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
            .await
            .unwrap_or_else(|e| {
                panic!("cannot reach the test PostgreSQL at {base}: {e}; run the test script")
            });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await
            .expect("create test schema");
        let sep = if base.contains('?') { '&' } else { '?' };
        Self {
            url: format!("{base}{sep}options[search_path]={name}"),
            name,
        }
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (base, name) = (base_url(), self.name.clone());
        // Drop runs outside any async context we could rely on: use a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
                    .await
                    .ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {name} CASCADE"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
    }
}

/// A private `redis-server` on a Unix socket, killed with this guard.
pub struct TestRedis {
    pub url: String,
    child: Child,
    socket: PathBuf,
    _dir: tempfile_dir::Dir,
}

impl TestRedis {
    pub fn start() -> Self {
        let dir = tempfile_dir::Dir::new();
        let socket = dir.path.join("redis.sock");
        let child = Self::spawn(&socket, &dir.path);
        Self {
            url: format!("redis+unix://{}", socket.display()),
            child,
            socket,
            _dir: dir,
        }
    }

    fn spawn(socket: &Path, dir: &Path) -> Child {
        let _ = std::fs::remove_file(socket);
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--unixsocket",
            ])
            .arg(socket)
            .args(["--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed; run the test script");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not open its socket"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    }

    /// Kills the server (an outage); [`TestRedis::restart`] brings up an empty one.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }

    /// A fresh, empty server on the same socket (Redis lost everything).
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(&self.socket, &self._dir.path);
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory removed on drop, without pulling `tempfile` into the library.
mod tempfile_dir {
    use super::*;

    pub struct Dir {
        pub path: PathBuf,
    }

    impl Dir {
        pub fn new() -> Self {
            let path =
                std::env::temp_dir().join(format!("codex32-test-{}", Uuid::new_v4().simple()));
            std::fs::create_dir_all(&path).expect("create temp dir");
            Self { path }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
