//! Calls to the OCI runtime binary (`runc`, or a compatible one such as `crun`).

use std::path::PathBuf;
use std::process::{Output, Stdio};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An OCI runtime binary and its state directory (`--root`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Runc {
    /// The binary.
    pub path: PathBuf,
    /// Its state directory, kate's own so other users of runc on the host are not disturbed.
    pub root: PathBuf,
}

impl Runc {
    /// `runc --root ROOT` as a blocking command (the shim's).
    pub fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.path);
        command.arg("--root").arg(&self.root);
        command
    }

    /// `runc --root ROOT` as an async command (kate's).
    pub fn async_command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.path);
        command.arg("--root").arg(&self.root);
        command
    }

    /// Runs `runc ARGS…`, failing with its error output when it fails.
    pub async fn run(&self, args: &[&str]) -> Result<()> {
        let output = self
            .async_command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| self.error(args, e.to_string()))?;
        self.check(args, &output)
    }

    /// Turns a failed run into an error naming the subcommand.
    pub fn check(&self, args: &[&str], output: &Output) -> Result<()> {
        if output.status.success() {
            return Ok(());
        }
        let mut message = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if message.is_empty() {
            message = String::from_utf8_lossy(&output.stdout).trim().to_string();
        }
        if message.is_empty() {
            message = output.status.to_string();
        }
        Err(self.error(args, message))
    }

    fn error(&self, args: &[&str], message: String) -> Error {
        let sub = args.iter().find(|a| !a.starts_with('-')).copied().unwrap_or("");
        Error::Command {
            command: format!("{} {sub}", self.path.display()),
            message,
        }
    }
}

/// Whether a runc error says the container does not exist (any more).
pub(crate) fn is_not_found(error: &Error) -> bool {
    matches!(error, Error::Command { message, .. } if message.contains("does not exist") || message.contains("not found"))
}
