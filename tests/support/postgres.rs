//! Throw-away PostgreSQL clusters on free loopback ports, with PostgreSQL's durable defaults:
//! with durability tuned away, a crash would lose acknowledged commits and a test that checks
//! for lost orders would rightly fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{free_port, path_str, run, running_as_root};

/// PostgreSQL refuses to run as root; as root its programs run as the postgres user.
pub fn as_postgres(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

pub fn pg_bindir() -> Result<PathBuf, String> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let mut installed: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    installed.sort();
    from_pg_config
        .into_iter()
        .chain(installed.into_iter().rev())
        .find(|dir| dir.join("initdb").exists())
        .ok_or_else(|| {
            "PostgreSQL server binaries not found: sudo apt-get install postgresql".into()
        })
}

pub struct Cluster {
    pub bindir: PathBuf,
    pub dir: PathBuf,
    pub port: u16,
}

impl Cluster {
    /// A new cluster in `CARGO_TARGET_TMPDIR/<name>-<pid>`, initialised but not started, so that
    /// a test can edit its configuration first. Superuser `postgres`, trust authentication.
    pub fn init(name: &str) -> Result<Self, String> {
        let cluster = Self::empty(name)?;
        run(
            as_postgres(&cluster.bindir.join("initdb")).args([
                "-D",
                path_str(&cluster.dir),
                "-U",
                "postgres",
                "--auth=trust",
            ]),
            "initdb",
        )?;
        cluster.write_settings("")?;
        Ok(cluster)
    }

    /// `init`, then `start`.
    pub fn start_new(name: &str) -> Result<Self, String> {
        let cluster = Self::init(name)?;
        cluster.start()?;
        Ok(cluster)
    }

    /// A streaming standby of `primary` (`pg_basebackup -R`), started.
    pub fn standby_of(primary: &Cluster, name: &str) -> Result<Self, String> {
        let cluster = Self::empty(name)?;
        run(
            as_postgres(&cluster.bindir.join("pg_basebackup")).args([
                "-D",
                path_str(&cluster.dir),
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
                "-R",
                "--checkpoint=fast",
            ]),
            "pg_basebackup",
        )?;
        cluster.write_settings("")?;
        cluster.start()?;
        Ok(cluster)
    }

    fn empty(name: &str) -> Result<Self, String> {
        let bindir = pg_bindir()?;
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if running_as_root() {
            run(
                Command::new("chown").args(["postgres:", path_str(&dir)]),
                "chown",
            )?;
        }
        // PostgreSQL wants its data folder private to its owner.
        run(
            as_postgres(Path::new("chmod")).args(["700", path_str(&dir)]),
            "chmod",
        )?;
        Ok(Self {
            bindir,
            dir,
            port: free_port()?,
        })
    }

    /// Appends the port, loopback-only listening and `extra` settings to the cluster's own
    /// configuration, so that restarts keep them (a later line wins over an earlier one, and
    /// what `pg_basebackup -R` wrote there stays).
    pub fn write_settings(&self, extra: &str) -> Result<(), String> {
        let file = "postgresql.auto.conf";
        let existing = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        let settings = format!(
            "{existing}\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n{extra}",
            self.port,
            path_str(&self.dir)
        );
        self.write_file(file, &settings)
    }

    /// Writes a file into the data folder, owned by the server's user.
    pub fn write_file(&self, name: &str, contents: &str) -> Result<(), String> {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).map_err(|e| format!("{}: {e}", path.display()))?;
        if running_as_root() {
            run(
                Command::new("chown").args(["postgres:", path_str(&path)]),
                "chown",
            )?;
        }
        Ok(())
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl <args>` on this cluster, waiting for it to finish.
    pub fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        run(
            as_postgres(&self.bindir.join("pg_ctl"))
                .args(["-D", path_str(&self.dir), "-w", "-t", "30"])
                .args(["-l", path_str(&self.dir.join("server.log"))])
                .args(args)
                .stdout(Stdio::null()),
            &format!("pg_ctl {}", args.join(" ")),
        )
    }

    pub fn start(&self) -> Result<(), String> {
        self.pg_ctl(&["start"])
    }

    /// Stops at once, as a crash would look to clients.
    pub fn kill(&self) -> Result<(), String> {
        self.pg_ctl(&["-m", "immediate", "stop"])
    }

    pub fn promote(&self) -> Result<(), String> {
        self.pg_ctl(&["promote"])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bindir.join("pg_ctl"))
            .args(["-D", path_str(&self.dir), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
