//! A throwaway PostgreSQL cluster for the storage tests: Debian's `initdb` and `pg_ctl` (from
//! `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`) in a temporary folder, on
//! a free port on 127.0.0.1 with trust authentication, the socket in the folder. Started once
//! per test binary and shared; each test gets its own database. As root the server runs as the
//! `postgres` user (`runuser -u postgres`; PostgreSQL refuses root) in a folder chowned to it.
//!
//! Teardown: a small watchdog shell started with the cluster waits for this test process to
//! exit, then runs `pg_ctl stop -m immediate` and removes the folder (a test binary runs no
//! destructors for statics, and a failing test must not leave a server behind).
//!
//! Missing binaries are an error with the fix (`apt-get install postgresql`; `.ci/run` does it),
//! never a skip.
//!
//! Compiled for the verifier's own tests and, behind the non-default `pg-harness` feature, for
//! the workspace integration tests (`tests/integration/serve_kill.rs`); not part of the API.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The running cluster.
pub struct Cluster {
    port: u16,
    /// The folder holding `initdb`, `pg_ctl` and `createdb`.
    bin: PathBuf,
    /// Whether the server runs as the `postgres` user (this process is root).
    root: bool,
    /// The cluster's folder (the socket lives there).
    dir: PathBuf,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The shared cluster, started on first use.
pub fn cluster() -> Result<&'static Cluster, String> {
    CLUSTER.get_or_init(start).as_ref().map_err(Clone::clone)
}

impl Cluster {
    /// A URL to the maintenance database (`postgres`).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fresh, empty database's name and URL.
    pub fn next_database(&self) -> (String, String) {
        let n = NEXT_DB.fetch_add(1, Ordering::SeqCst);
        let name = format!("tppguard_test_{n}");
        let url = format!("postgres://postgres@127.0.0.1:{}/{name}", self.port);
        (name, url)
    }

    /// Creates a fresh, empty database with `createdb` (blocking, no async runtime needed)
    /// and returns its URL.
    pub fn create_database(&self) -> Result<String, String> {
        let (name, url) = self.next_database();
        let mut createdb = as_pg_user(self.root, &self.bin.join("createdb"), &self.dir);
        createdb
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .arg(&name);
        run(createdb, "createdb")?;
        Ok(url)
    }
}

fn bindir() -> Result<PathBuf, String> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_tools(&dir) {
            return Ok(dir);
        }
    }
    // Debian's layout, when pg_config is the client-only one or absent.
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let dir = e.path().join("bin");
            has_tools(&dir).then_some((version, dir))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, dir)| dir).ok_or_else(|| {
        "the PostgreSQL storage tests need the PostgreSQL server binaries (initdb, pg_ctl) and \
         found none (not in `pg_config --bindir`, not under /usr/lib/postgresql/*/bin): install \
         them with `apt-get install -y postgresql` (.ci/run does this)"
            .to_owned()
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program args` as the `postgres` user when root.
fn as_pg_user(root: bool, program: &Path, dir: &Path) -> Command {
    let mut c = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    // The postgres user may not be allowed into the test's working folder.
    c.current_dir(dir);
    c
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

fn start() -> Result<Cluster, String> {
    let bin = bindir()?;
    let root = is_root();
    let dir = std::env::temp_dir().join(format!(
        "tppguard-pg-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if root {
        let mut chown = Command::new("chown");
        chown.arg("postgres:postgres").arg(&dir);
        run(chown, "chown of the cluster folder to postgres").map_err(|e| {
            format!("{e} (as root the tests run PostgreSQL as the `postgres` user, which the postgresql package creates)")
        })?;
    }
    let data = dir.join("data");
    let log = dir.join("server.log");

    // Teardown when this process exits, whatever happens to it.
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         {pgctl} -D '{data}' stop -m immediate >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        pgctl = if root {
            format!("runuser -u postgres -- '{}'", bin.join("pg_ctl").display())
        } else {
            format!("'{}'", bin.join("pg_ctl").display())
        },
        data = data.display(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the cluster's teardown watchdog: {e}"))?;

    let mut initdb = as_pg_user(root, &bin.join("initdb"), &dir);
    initdb
        .arg("-D")
        .arg(&data)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .env("LC_ALL", "C");
    run(initdb, "initdb")?;

    // A port another process may grab between our probe and the server's bind: retry.
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port()?;
        let mut pg_ctl = as_pg_user(root, &bin.join("pg_ctl"), &dir);
        pg_ctl
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(format!(
                "-k {} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                dir.display()
            ))
            .args(["-w", "-t", "60", "start"]);
        match run(pg_ctl, "pg_ctl start") {
            Ok(()) => {
                return Ok(Cluster {
                    port,
                    bin,
                    root,
                    dir,
                });
            }
            Err(e) => {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: String = tail.lines().rev().take(10).collect::<Vec<_>>().join("\n");
                last = format!("{e}\nserver log (last lines, newest first):\n{tail}");
            }
        }
    }
    Err(last)
}
