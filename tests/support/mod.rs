//! What the process-level tests share: throw-away PostgreSQL clusters, the real server binary
//! as a child process, and a retrying, idempotent create load whose every acknowledged order is
//! read back. Each test binary uses a part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod load;
pub mod postgres;
pub mod server;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

pub fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs `command` to completion; its standard error becomes the failure's text.
pub fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{what}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
