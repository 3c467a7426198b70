//! The server binary that cargo built for the test, as a child process on a free port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts the server on `database_url` with `env` on top of the test defaults, and waits
    /// until it listens. Its log goes to `CARGO_TARGET_TMPDIR/<name>-server.log`.
    pub fn start(name: &str, database_url: &str, env: &[(&str, &str)]) -> Result<Self, String> {
        let mut server = Self::spawn(name, database_url, env)?;
        let port = server.port();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            if let Some(status) = server.exited() {
                return Err(format!(
                    "the server exited at start-up ({status}): {}",
                    server.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("the server did not start listening within 30 s".into())
    }

    /// Starts the server and expects it to stop by itself at start-up: its exit status and log.
    pub fn start_up_failure(
        name: &str,
        database_url: &str,
        env: &[(&str, &str)],
    ) -> Result<(ExitStatus, String), String> {
        let mut server = Self::spawn(name, database_url, env)?;
        let status = server.wait(Duration::from_secs(30))?;
        Ok((status, server.log_text()))
    }

    fn spawn(name: &str, database_url: &str, env: &[(&str, &str)]) -> Result<Self, String> {
        let port = free_port()?;
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-server.log"));
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = Command::new(env!("CARGO_BIN_EXE_order-service"))
            .env_clear()
            .env("DATABASE_URL", database_url)
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("DB_POOL_TIMEOUT", "2s")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?;
        Ok(Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        })
    }

    fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("base URL ends with the port")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM, as an orchestrator stopping the instance would.
    pub fn terminate(&self) -> Result<(), String> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if sent {
            Ok(())
        } else {
            Err("could not send SIGTERM".into())
        }
    }

    pub fn wait(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("the server did not exit within {limit:?}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
