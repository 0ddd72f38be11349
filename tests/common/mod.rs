//! End-to-end test harness: starts the real `codex32` binary (dev, or api + scheduler +
//! workers against a private PostgreSQL schema and a private redis-server), talks to it over
//! HTTP like a user, and kills every process it started when the test ends.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use codex32_shared::testing::{TestRedis, TestSchema, eventually};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

pub const ADMIN_EMAIL: &str = "admin@test.local";
pub const ADMIN_PASSWORD: &str = "correct-horse-battery";
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// A codex32 process, stopped when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(self.pid()), sig);
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn terminate(self) -> std::process::ExitStatus {
        self.signal(Signal::SIGTERM);
        self.terminate_wait().await
    }
}

/// Stops it as an operator would — SIGTERM, then SIGKILL if it has not exited in 10 s — so
/// that it cleans up after itself (a worker removes its sandboxes' cgroups).
impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        self.signal(Signal::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The common environment of a test's processes; nothing leaks in from the host's.
pub fn base_env(dir: &Path) -> Vec<(String, String)> {
    [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("HOME", std::env::var("HOME").unwrap_or_default()),
        ("CODEX32_DATA_DIR", dir.display().to_string()),
        ("CODEX32_BIND", "127.0.0.1:0".into()),
        (
            "CODEX32_LOG",
            "warn,codex32_worker=info,codex32_scheduler=info".into(),
        ),
        ("CODEX32_ADMIN_EMAIL", ADMIN_EMAIL.into()),
        ("CODEX32_ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
        ("CODEX32_JWT_SECRET", JWT_SECRET.into()),
        ("CODEX32_LEASE_TTL_S", "2".into()),
        ("CODEX32_RETRY_BASE_MS", "100".into()),
        ("CODEX32_RETRY_MAX_MS", "400".into()),
        ("CODEX32_SCHEDULER_TICK_MS", "100".into()),
        ("CODEX32_RECONCILE_INTERVAL_S", "1".into()),
        ("CODEX32_DRAIN_TIMEOUT_S", "5".into()),
        // Tests drive thousands of requests a minute; the limits' own tests set them.
        ("CODEX32_RATE_LIMIT_PER_MIN", "0".into()),
        ("CODEX32_LOGIN_LIMIT_PER_MIN", "0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Starts `codex32 <args>` with `env`; its stderr goes to `<dir>/<name>.log`.
pub fn start(
    name: &str,
    args: &[&str],
    env: &[(String, String)],
    dir: &Path,
) -> (Proc, mpsc::Receiver<String>) {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_codex32"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start codex32");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (
        Proc {
            name: name.to_owned(),
            child,
        },
        rx,
    )
}

/// Starts a process serving the API and returns it with its base URL.
pub fn start_api(
    name: &str,
    args: &[&str],
    env: &[(String, String)],
    dir: &Path,
) -> (Proc, String) {
    let (proc, lines) = start(name, args, env, dir);
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let log =
                    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
                panic!("{name} did not announce its address; its log:\n{log}")
            });
        if let Some(url) = line.strip_prefix("codex32 API listening on ") {
            return (proc, url.trim().to_owned());
        }
    }
}

/// An HTTP client logged in as the bootstrap admin.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

impl Client {
    pub async fn login(base: &str) -> Self {
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
            .send()
            .await
            .expect("login request");
        assert_eq!(resp.status(), 200, "login failed");
        let body: Value = resp.json().await.expect("login body");
        Self {
            base: base.to_owned(),
            http,
            token: body["access_token"].as_str().expect("token").to_owned(),
        }
    }

    /// Sends a request with the admin token; returns status and JSON body (Null if none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Creates a bot and returns its id.
    pub async fn bot(&self, spec: Value) -> String {
        let (status, body) = self.post("/bots", spec).await;
        assert_eq!(status, 201, "create bot: {body}");
        body["id"].as_str().expect("bot id").to_owned()
    }

    /// Starts an execution and returns its id.
    pub async fn run(&self, bot: &str, input: Value) -> String {
        let (status, body) = self
            .post(
                &format!("/bots/{bot}/executions"),
                json!({ "input": input }),
            )
            .await;
        assert_eq!(status, 202, "run: {body}");
        body["id"].as_str().expect("execution id").to_owned()
    }

    /// Waits until the execution reaches a final state and returns it.
    pub async fn finished(&self, id: &str, timeout: Duration) -> Value {
        eventually(
            timeout,
            &format!("execution {id} to finish"),
            || async move {
                let e = self.get(&format!("/executions/{id}")).await;
                let status = e["status"].as_str().unwrap_or_default().to_owned();
                ["succeeded", "failed", "timed_out", "cancelled"]
                    .contains(&status.as_str())
                    .then_some(e)
            },
        )
        .await
    }

    pub async fn logs(&self, id: &str) -> Vec<String> {
        let page = self.get(&format!("/executions/{id}/logs")).await;
        page["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|l| l["line"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// `codex32 dev` in a temp data dir.
pub struct Dev {
    pub proc: Option<Proc>,
    pub client: Client,
    pub dir: tempfile::TempDir,
}

impl Dev {
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, extra).await
    }

    pub async fn start_in(dir: tempfile::TempDir, extra: &[(&str, &str)]) -> Self {
        let mut env = base_env(dir.path());
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let (proc, url) = start_api("dev", &["dev"], &env, dir.path());
        let client = Client::login(&url).await;
        Self {
            proc: Some(proc),
            client,
            dir,
        }
    }

    /// Stops it with SIGTERM and hands back the data dir for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        let status = self.proc.take().expect("running").terminate().await;
        assert!(status.success(), "codex32 dev exited with {status}");
        self.dir
    }
}

/// api + scheduler + workers on a private PostgreSQL schema and redis-server.
pub struct Cluster {
    pub client: Client,
    pub api: Proc,
    pub scheduler: Proc,
    /// Schedulers added after the first.
    pub more_schedulers: Vec<Proc>,
    pub workers: Vec<Proc>,
    pub redis: TestRedis,
    pub schema: TestSchema,
    pub env: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(workers: usize, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let schema = TestSchema::create().await;
        let redis = TestRedis::start();
        let mut env = base_env(dir.path());
        env.push(("CODEX32_DATABASE_URL".into(), schema.url.clone()));
        env.push(("CODEX32_REDIS_URL".into(), redis.url.clone()));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let (migrate, _) = start("migrate", &["migrate"], &env, dir.path());
        assert!(
            migrate.terminate_wait().await.success(),
            "migrate failed: {}",
            read_log(dir.path(), "migrate")
        );
        let (api, url) = start_api("api", &["api"], &env, dir.path());
        let (scheduler, _) = start("scheduler", &["scheduler"], &env, dir.path());
        let mut cluster = Self {
            client: Client::login(&url).await,
            api,
            scheduler,
            more_schedulers: vec![],
            workers: vec![],
            redis,
            schema,
            env,
            dir,
        };
        for _ in 0..workers {
            cluster.add_worker(&[]);
        }
        cluster.await_workers(workers).await;
        cluster
    }

    /// Waits until `n` workers are registered and alive, as a user starting them would.
    pub async fn await_workers(&self, n: usize) {
        let c = &self.client;
        eventually(
            Duration::from_secs(60),
            &format!("{n} workers to register"),
            || async move {
                let workers = c.get("/workers").await;
                (workers
                    .as_array()?
                    .iter()
                    .filter(|w| w["state"] == "alive")
                    .count()
                    >= n)
                    .then_some(())
            },
        )
        .await;
    }

    pub fn add_worker(&mut self, extra: &[(&str, &str)]) -> usize {
        let n = self.workers.len();
        let mut env = self.env.clone();
        env.push(("CODEX32_WORKER_ID".into(), format!("w{n}")));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let (proc, _) = start(&format!("worker-{n}"), &["worker"], &env, self.dir.path());
        self.workers.push(proc);
        n
    }

    /// A new worker, not put in `workers`: to take a replaced one's place there.
    pub fn replacement_worker(&mut self, extra: &[(&str, &str)]) -> Proc {
        self.add_worker(extra);
        self.workers.pop().expect("a worker was just added")
    }

    pub fn add_scheduler(&mut self) {
        let n = self.more_schedulers.len() + 1;
        let (proc, _) = start(
            &format!("scheduler-{n}"),
            &["scheduler"],
            &self.env,
            self.dir.path(),
        );
        self.more_schedulers.push(proc);
    }

    /// A direct connection to the test's schema, to check what is stored.
    pub async fn db(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.schema.url)
            .await
            .expect("connect to the test schema")
    }
}

impl Proc {
    /// Waits for a process that exits by itself.
    pub async fn terminate_wait(mut self) -> std::process::ExitStatus {
        let name = self.name.clone();
        eventually(Duration::from_secs(60), &format!("{name} to exit"), || {
            let status = self.child.try_wait().ok().flatten();
            async move { status }
        })
        .await
    }
}

/// How many executions have this status, straight from the store.
pub async fn count_status(db: &sqlx::PgPool, status: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM executions WHERE status = $1")
        .bind(status)
        .fetch_one(db)
        .await
        .expect("count executions");
    n
}

/// Waits until `n` executions have succeeded.
pub async fn await_succeeded(db: &sqlx::PgPool, n: i64, timeout: Duration) {
    eventually(
        timeout,
        &format!("{n} executions to succeed"),
        || async move { (count_status(db, "succeeded").await >= n).then_some(()) },
    )
    .await;
}

/// (executions with a recorded result, executions with more than one): "exactly one result
/// each" is `(n, 0)`. Each fenced result writes one `finished` timeline entry with it.
pub async fn results_per_execution(db: &sqlx::PgPool) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE n > 1) FROM
           (SELECT execution_id, count(*) AS n FROM execution_events WHERE kind = 'finished' GROUP BY execution_id) f",
    )
    .fetch_one(db)
    .await
    .expect("count results")
}

impl Client {
    /// The API's Prometheus text.
    pub async fn metrics(&self) -> Option<String> {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    }
}

pub fn read_log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

/// A `sleep` argument of about `secs` seconds that no other process has, to find a bot's
/// processes wherever they run (a sandbox's pids mean nothing on the host).
pub fn marker(secs: u32) -> String {
    format!("{secs}.{}", uuid::Uuid::new_v4().as_u128() % 1_000_000_007)
}

/// How many live (non-zombie) processes have `arg` among their arguments.
pub fn processes_with_arg(arg: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            let zombie = status
                .lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'));
            !zombie && cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes())
        })
        .count()
}

impl Client {
    /// A new API key of the bootstrap admin with `role` (the way the load harness logs in).
    pub async fn api_key(&self, role: &str) -> String {
        let name = format!("key-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let (status, body) = self
            .post("/api-keys", json!({"name": name, "role": role}))
            .await;
        assert_eq!(status, 201, "create API key: {body}");
        body["key"].as_str().expect("key").to_owned()
    }
}
