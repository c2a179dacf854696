//! The shim: the small supervisor each container runs under, outside kate, so containers keep
//! running (and their output keeps being logged) while kate restarts.
//!
//! `Runtime::start_container` runs `<shim_exe> shim start DIR` and waits for it. That process
//! starts `<shim_exe> shim run DIR` in a new session with its stdio on /dev/null except a status
//! pipe, reads the report from the pipe, and exits with it: the supervisor is orphaned and
//! adopted by init, so it outlives kate and is never kate's zombie.
//!
//! The supervisor (`shim run`) becomes a child subreaper, listens on the attach socket, runs
//! `runc create` with two pipes as the container's stdout and stderr (and one as its stdin when
//! it keeps stdin open), or with a terminal that runc creates and sends back on the console
//! socket, starts copying the output to the log file in the CRI format and to attached clients
//! ([`hub`]), runs `runc start`, records `started.json` and reports success. The container's init process,
//! orphaned when `runc create` exits, is then its child: it waits for it, reads the memory
//! cgroup's OOM-kill count, records `exit.json` atomically, and deletes the container from runc.
//! Plain threads, no async runtime.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{WaitOptions, getpid, set_child_subreaper, wait};

use crate::attach;
use crate::cgroup;
use crate::container::{ContainerRecord, Exited, Started, proc_start_time};
use crate::crilog::{self, Stream};
use crate::error::{Error, IoContext, Result};
use crate::state::{read_json, write_json_atomic};

mod console;
mod hub;

use hub::{Hub, Input};

/// How long to wait for the container's output to drain after its init process ended.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The `shim` subcommand: `start DIR` or `run DIR` (see the module documentation). `args` are
/// the arguments after `shim`; returns the process's exit code.
pub fn shim_main(args: &[OsString]) -> i32 {
    match args {
        [mode, dir] if mode == "start" => start(Path::new(dir)),
        [mode, dir] if mode == "run" => run(Path::new(dir)),
        _ => {
            eprintln!("usage: kate shim start|run CONTAINER_DIR");
            2
        }
    }
}

/// `shim start`: launches the detached supervisor and relays its report.
fn start(dir: &Path) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("finding the shim's own executable: {e}");
            return 1;
        }
    };
    let mut command = Command::new(exe);
    command
        .args([OsStr::new("shim"), OsStr::new("run"), dir.as_os_str()])
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| rustix::process::setsid().map(drop).map_err(io::Error::from));
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("starting the shim: {e}");
            return 1;
        }
    };
    let mut report = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut report);
    }
    let report = report.trim();
    if report == "ok" {
        // Not waited for: it outlives this process and is adopted by init.
        return 0;
    }
    let _ = child.wait();
    let report = report.strip_prefix("error: ").unwrap_or(report);
    if report.is_empty() {
        eprintln!("the shim exited without reporting");
    } else {
        eprintln!("{report}");
    }
    1
}

/// `shim run`: starts the container, reports on stdout, then supervises it.
fn run(dir: &Path) -> i32 {
    let mut report = io::stdout();
    match Supervisor::start(dir) {
        Err(e) => {
            let _ = writeln!(report, "error: {e}");
            1
        }
        Ok(supervisor) => {
            let _ = writeln!(report, "ok");
            let _ = report.flush();
            // Close the status pipe so `shim start` sees its end and exits.
            if let Ok(null) = OpenOptions::new().write(true).open("/dev/null") {
                let _ = rustix::stdio::dup2_stdout(&null);
            }
            supervisor.supervise();
            0
        }
    }
}

/// A started container being supervised.
struct Supervisor {
    record: ContainerRecord,
    dir: PathBuf,
    pid: i32,
    /// One message per output copier that finished.
    drained: Receiver<()>,
    /// How many output copiers there are: stdout and stderr, or the terminal.
    outputs: usize,
    /// The attached clients.
    hub: Arc<Hub>,
}

impl Supervisor {
    fn start(dir: &Path) -> Result<Self> {
        set_child_subreaper(Some(getpid())).map_err(|e| Error::Io {
            context: "becoming a child subreaper".to_string(),
            error: e.into(),
        })?;
        let record: ContainerRecord = read_json(&dir.join("container.json"))?
            .ok_or_else(|| Error::ContainerNotFound(dir.display().to_string()))?;
        let id = record.container.id.clone();
        let runc_log = dir.join("runc.log");
        let runc = |sub: &str| {
            let mut command = record.runc.command();
            command
                .arg("--log")
                .arg(&runc_log)
                .args(["--log-format", "json", sub])
                .current_dir(dir);
            command
        };
        let pipe = || {
            pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::Io {
                context: "creating a pipe".to_string(),
                error: e.into(),
            })
        };
        // Sockets are bound and passed to runc through this descriptor: see `crate::attach`.
        let dir_fd = attach::open_dir(dir, true)?;
        let bind = |name: &str| {
            let path = attach::short_path(&dir_fd, name);
            let _ = std::fs::remove_file(&path);
            UnixListener::bind(&path).ctx("listening on", &dir.join(name))
        };
        let attach_listener = bind(attach::SOCKET)?;
        let stdio = record.stdio;
        let pid_file = dir.join("init.pid");
        let mut create = runc("create");
        create
            .arg("--bundle")
            .arg(dir)
            .arg("--pid-file")
            .arg(&pid_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let console_listener = if stdio.tty {
            create
                .arg("--console-socket")
                .arg(attach::short_path(&dir_fd, console::SOCKET));
            Some(bind(console::SOCKET)?)
        } else {
            None
        };
        // The container's own ends of its pipes go to runc and are dropped with the command
        // after it ran, so the pipes end when the container's processes are gone.
        let mut outputs = Vec::new();
        let mut input = Input::None;
        if !stdio.tty {
            for stream in [Stream::Stdout, Stream::Stderr] {
                let (read, write) = pipe()?;
                match stream {
                    Stream::Stdout => create.stdout(Stdio::from(write)),
                    Stream::Stderr => create.stderr(Stdio::from(write)),
                };
                outputs.push((File::from(read), stream));
            }
            if stdio.stdin {
                let (read, write) = pipe()?;
                create.stdin(Stdio::from(read));
                input = Input::Pipe(File::from(write));
            }
        }
        let created = create.arg(&id).status().ctx("running", &record.runc.path)?;
        drop(create);
        if !created.success() {
            let _ = runc("delete").args(["--force", &id]).output();
            return Err(Error::Command {
                command: "runc create".to_string(),
                message: last_error(&runc_log).unwrap_or_else(|| created.to_string()),
            });
        }
        let mut master = None;
        if let Some(listener) = console_listener {
            let terminal = console::receive_master(&listener)
                .and_then(|fd| Ok((fd.try_clone()?, fd.try_clone()?, fd)))
                .ctx("receiving the terminal from", &dir.join(console::SOCKET));
            let (output, writer, resizer) = match terminal {
                Ok(fds) => fds,
                Err(e) => {
                    let _ = runc("delete").args(["--force", &id]).output();
                    return Err(e);
                }
            };
            outputs.push((File::from(output), Stream::Stdout));
            if stdio.stdin {
                input = Input::Terminal(File::from(writer));
            }
            master = Some(resizer);
        }
        drop(dir_fd);
        let hub = Hub::new(input, stdio.stdin_once, master);
        hub.serve(attach_listener);

        let log_path = &record.container.log_path;
        let log = crilog::RotatingLog::open(log_path).ctx("opening", log_path)?;
        let log = Arc::new(Mutex::new(log));
        let (done, drained) = mpsc::channel();
        let outputs_count = outputs.len();
        for (reader, stream) in outputs {
            let log = log.clone();
            let done = done.clone();
            let hub = hub.clone();
            let kind = match stream {
                Stream::Stdout => attach::Kind::Stdout,
                Stream::Stderr => attach::Kind::Stderr,
            };
            std::thread::spawn(move || {
                crilog::copy(reader, stream, &log, |data| hub.publish(kind, data));
                let _ = done.send(());
            });
        }

        // Taken before: the process may write (and the log entries be stamped) before runc returns.
        let started_at = Timestamp::now();
        let started = runc("start")
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .ctx("running", &record.runc.path)?;
        if !started.status.success() {
            let _ = runc("delete").args(["--force", &id]).output();
            let stderr = String::from_utf8_lossy(&started.stderr).trim().to_string();
            return Err(Error::Command {
                command: "runc start".to_string(),
                message: last_error(&runc_log).unwrap_or(stderr),
            });
        }
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .ctx("reading", &pid_file)?
            .trim()
            .parse()
            .map_err(|_| Error::Invalid(format!("{} holds no PID", pid_file.display())))?;
        let shim_pid = std::process::id();
        let record_started = Started {
            pid: pid as u32,
            pid_start: proc_start_time(pid as u32).unwrap_or(0),
            shim_pid,
            shim_start: proc_start_time(shim_pid).unwrap_or(0),
            started_at,
        };
        write_json_atomic(&dir.join("started.json"), &record_started)?;
        Ok(Self {
            record,
            dir: dir.to_path_buf(),
            pid,
            drained,
            outputs: outputs_count,
            hub,
        })
    }

    /// Waits for the container's init process, records how it ended, and cleans up.
    fn supervise(self) {
        let status = loop {
            match wait(WaitOptions::empty()) {
                Ok(Some((pid, status))) if pid.as_raw_nonzero().get() == self.pid => break Some(status),
                // Another orphan of the container, reaped.
                Ok(_) | Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break None,
            }
        };
        let finished_at = Timestamp::now();
        let exit_code = match status {
            Some(s) => s
                .exit_status()
                .or_else(|| s.terminating_signal().map(|sig| 128 + sig))
                .unwrap_or(255),
            None => 255,
        };
        // The rest of the output, once every process holding the pipes is gone.
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        for _ in 0..self.outputs {
            if self
                .drained
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_err()
            {
                break;
            }
        }
        self.hub.finish();
        let oom_killed = cgroup::oom_kills(self.record.cgroup_mode, &self.record.cgroups_path).is_some_and(|n| n > 0);
        let exited = Exited {
            exit_code,
            oom_killed,
            finished_at,
        };
        let _ = write_json_atomic(&self.dir.join("exit.json"), &exited);
        let _ = self
            .record
            .runc
            .command()
            .args(["delete", "--force", &self.record.container.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The message of the last error runc logged (its log is JSON lines with `level` and `msg`).
fn last_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|line| {
        let entry: serde_json::Value = serde_json::from_str(line).ok()?;
        (entry["level"] == "error").then(|| entry["msg"].as_str().map(str::to_string))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_errors_are_read_from_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runc.log");
        std::fs::write(
            &log,
            "{\"level\":\"warning\",\"msg\":\"meh\",\"time\":\"t\"}\n\
             {\"level\":\"error\",\"msg\":\"exec: \\\"nope\\\": executable file not found in $PATH\",\"time\":\"t\"}\n\
             {\"level\":\"info\",\"msg\":\"bye\",\"time\":\"t\"}\n",
        )
        .unwrap();
        assert_eq!(
            last_error(&log).as_deref(),
            Some("exec: \"nope\": executable file not found in $PATH")
        );
        assert_eq!(last_error(&dir.path().join("missing")), None);
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert_eq!(shim_main(&[]), 2);
        assert_eq!(shim_main(&["pause".into(), "x".into()]), 2);
    }
}
