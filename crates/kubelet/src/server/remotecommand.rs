//! `exec` and `attach`, apart from the transport: a command's (or a container's) streams
//! become [`Output`] for the client and take the client's stdin and terminal sizes, whether
//! they travel as WebSocket channels or as SPDY streams. The last output is always a
//! `metav1.Status` saying how it ended, as upstream's `v4.channel.k8s.io` and later report it.

use std::process::Stdio;
use std::sync::Arc;

use bytes::Bytes;
use kate_runtime::{AttachInput, AttachOutput, Output as ContainerOutput};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::pty::Pty;
use super::spdy;

/// Which streams the client asked for (upstream's StreamOptions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// The client sends stdin.
    pub stdin: bool,
    /// The client wants stdout.
    pub stdout: bool,
    /// The client wants stderr (never with a TTY, whose output is all on stdout).
    pub stderr: bool,
    /// The client asked for a terminal.
    pub tty: bool,
}

/// A terminal size the client sent (the JSON of upstream's TerminalSize).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TermSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// What goes to the client, in order; [`Output::Status`] comes last.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Bytes of standard output.
    Stdout(Bytes),
    /// Bytes of standard error.
    Stderr(Bytes),
    /// How it ended: a `metav1.Status`.
    Status(Value),
}

/// The client's side of a remote command, as the transport hands it over.
pub struct Streams {
    /// The client's stdin, when it asked to send it; ends at its end of input.
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    /// Terminal sizes, when it asked for a terminal.
    pub resize: Option<mpsc::Receiver<TermSize>>,
    /// Where output goes.
    pub output: mpsc::Sender<Output>,
    /// Fires (or is dropped) when the client went away.
    pub gone: oneshot::Receiver<()>,
}

/// `{"status":"Success"}`.
pub fn success() -> Value {
    json!({"metadata": {}, "status": "Success"})
}

/// The Status of a command that exited with `code` (kubectl exits with the same code).
pub fn exit_status(argv: &[String], code: i32) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command {argv:?}, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The Status of a failure before or while running, as upstream's InternalError.
pub fn error_status(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

/// The Status of a command that ran, from how waiting for it ended.
fn command_status(argv: &[String], waited: std::io::Result<std::process::ExitStatus>) -> Value {
    match waited {
        Ok(s) if s.success() => success(),
        Ok(s) => match s.code() {
            Some(code) => exit_status(argv, code),
            None => error_status(&format!("the command ended without an exit code ({s})")),
        },
        Err(e) => error_status(&format!("waiting for the command: {e}")),
    }
}

/// Copies a pipe to the client until it ends.
async fn pump<R: AsyncRead + Unpin>(mut reader: R, wrap: fn(Bytes) -> Output, output: mpsc::Sender<Output>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if output.send(wrap(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs `command` (a prepared `runc exec`) with the client's streams; `argv` is what it runs,
/// for the exit message.
pub async fn exec(mut command: tokio::process::Command, argv: Vec<String>, opts: StreamOptions, streams: Streams) {
    let Streams {
        stdin,
        resize: _,
        output,
        mut gone,
    } = streams;
    let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    command
        .stdin(piped(stdin.is_some()))
        .stdout(piped(opts.stdout))
        .stderr(piped(opts.stderr));
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = output
                .send(Output::Status(error_status(&format!("starting the command: {e}"))))
                .await;
            return;
        }
    };
    let stdin_task = match (child.stdin.take(), stdin) {
        (Some(mut pipe), Some(mut rx)) => Some(tokio::spawn(async move {
            while let Some(data) = rx.recv().await {
                if pipe.write_all(&data).await.is_err() {
                    break;
                }
            }
            // Dropping the pipe is the command's end of input.
        })),
        _ => None,
    };
    let stdout_task = child
        .stdout
        .take()
        .map(|p| tokio::spawn(pump(p, Output::Stdout, output.clone())));
    let stderr_task = child
        .stderr
        .take()
        .map(|p| tokio::spawn(pump(p, Output::Stderr, output.clone())));
    let waited = tokio::select! {
        status = child.wait() => status,
        _ = &mut gone => {
            tracing::debug!("the client went away; stopping the command");
            let _ = child.kill().await;
            if let Some(t) = stdin_task { t.abort(); }
            return;
        }
    };
    if let Some(t) = stdin_task {
        t.abort();
    }
    // A process it left behind may hold the pipes open: wait for them as long as the client does.
    let drained = async {
        for task in [stdout_task, stderr_task].into_iter().flatten() {
            let _ = task.await;
        }
    };
    tokio::select! {
        _ = drained => {}
        _ = &mut gone => return,
    }
    let _ = output.send(Output::Status(command_status(&argv, waited))).await;
}

/// How long a TTY exec waits for the client's terminal size before it starts the command.
const FIRST_SIZE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs `command` on a terminal of its own (`exec -t`): the client's input goes to it, its
/// output (stdout and stderr alike) comes back on stdout, and resizes follow the client's.
pub async fn exec_tty(command: tokio::process::Command, argv: Vec<String>, streams: Streams) {
    let Streams {
        stdin,
        mut resize,
        output,
        mut gone,
    } = streams;
    // The client sends its terminal's size first thing: the command starts with it.
    let first = match &mut resize {
        Some(rx) => tokio::time::timeout(FIRST_SIZE_WAIT, rx.recv()).await.ok().flatten(),
        None => None,
    };
    let (cols, rows) = first.map_or((0, 0), |s| (s.width, s.height));
    let (pty, mut child) = match Pty::spawn(command, cols, rows) {
        Ok((pty, child)) => (Arc::new(pty), child),
        Err(e) => {
            let _ = output
                .send(Output::Status(error_status(&format!(
                    "starting the command on a terminal: {e}"
                ))))
                .await;
            return;
        }
    };
    let mut helpers = Vec::new();
    if let Some(mut rx) = stdin {
        let pty = pty.clone();
        helpers.push(tokio::spawn(async move {
            while let Some(data) = rx.recv().await {
                if pty.write_all(&data).await.is_err() {
                    break;
                }
            }
        }));
    }
    if let Some(mut rx) = resize {
        let pty = pty.clone();
        helpers.push(tokio::spawn(async move {
            while let Some(size) = rx.recv().await {
                if let Err(e) = pty.resize(size.width, size.height) {
                    tracing::debug!(error = %e, "resizing the terminal failed");
                }
            }
        }));
    }
    let reader = {
        let (pty, output) = (pty.clone(), output.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = pty.read(&mut buf).await {
                if n == 0
                    || output
                        .send(Output::Stdout(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                {
                    break;
                }
            }
        })
    };
    let stop = |helpers: Vec<tokio::task::JoinHandle<()>>| helpers.iter().for_each(|h| h.abort());
    let waited = tokio::select! {
        status = child.wait() => status,
        _ = &mut gone => {
            tracing::debug!("the client went away; stopping the command");
            let _ = child.kill().await;
            reader.abort();
            stop(helpers);
            return;
        }
    };
    stop(helpers);
    tokio::select! {
        _ = reader => {}
        _ = &mut gone => return,
    }
    let _ = output.send(Output::Status(command_status(&argv, waited))).await;
}

/// Attaches the client to a running container through its shim: the container's output from
/// now until it ends, and the client's stdin and terminal sizes to it.
pub async fn attach(conn: (AttachOutput, AttachInput), opts: StreamOptions, streams: Streams) {
    let Streams {
        mut stdin,
        mut resize,
        output,
        mut gone,
    } = streams;
    let (mut from, mut to) = conn;
    let input = tokio::spawn(async move {
        while stdin.is_some() || resize.is_some() {
            tokio::select! {
                data = next(&mut stdin) => match data {
                    Some(data) => if to.stdin(&data).await.is_err() { return },
                    None => {
                        stdin = None;
                        let _ = to.close_stdin().await;
                    }
                },
                size = next(&mut resize) => match size {
                    Some(size) => if to.resize(size.width, size.height).await.is_err() { return },
                    None => resize = None,
                },
            }
        }
    });
    let status = loop {
        let chunk = tokio::select! {
            chunk = from.next() => chunk,
            _ = &mut gone => {
                input.abort();
                return;
            }
        };
        let out = match chunk {
            Ok(Some(ContainerOutput::Stdout(data))) if opts.stdout => Output::Stdout(data.into()),
            Ok(Some(ContainerOutput::Stderr(data))) if opts.stderr => Output::Stderr(data.into()),
            // A client with a terminal has no stderr stream: a container without one still has.
            Ok(Some(ContainerOutput::Stderr(data))) if opts.stdout && opts.tty => Output::Stdout(data.into()),
            Ok(Some(_)) => continue,
            Ok(None) => break success(),
            Err(e) => break error_status(&format!("reading the container's output: {e}")),
        };
        if output.send(out).await.is_err() {
            input.abort();
            return;
        }
    };
    input.abort();
    let _ = output.send(Output::Status(status)).await;
}

/// The next item of a stream the client may not have; never, without it.
async fn next<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Ends a session at once with a failure Status.
pub async fn fail(streams: Streams, message: &str) {
    let _ = streams.output.send(Output::Status(error_status(message))).await;
}

/// How long a SPDY client may take to open the streams it asked for.
const STREAM_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves a remote command's streams over a SPDY session: waits for the client to open the
/// streams its options call for (`error`, and `stdin`, `stdout`, `stderr`, `resize` as asked),
/// then returns the [`Streams`] for the command and moves the data in the background.
pub async fn over_spdy(mut incoming: mpsc::Receiver<spdy::Stream>, opts: StreamOptions) -> Result<Streams, String> {
    let (mut error, mut stdin, mut stdout, mut stderr, mut resize) = (None, None, None, None, None);
    let deadline = tokio::time::sleep(STREAM_WAIT);
    tokio::pin!(deadline);
    let complete = |e: &Option<spdy::Stream>,
                    i: &Option<spdy::Stream>,
                    o: &Option<spdy::Stream>,
                    r: &Option<spdy::Stream>,
                    z: &Option<spdy::Stream>| {
        e.is_some()
            && i.is_some() == opts.stdin
            && o.is_some() == opts.stdout
            && r.is_some() == opts.stderr
            && z.is_some() == opts.tty
    };
    while !complete(&error, &stdin, &stdout, &stderr, &resize) {
        let stream = tokio::select! {
            s = incoming.recv() => s.ok_or("the client closed the connection before opening its streams")?,
            _ = &mut deadline => return Err("timed out waiting for the client to open its streams".into()),
        };
        let slot = match stream.header("streamtype") {
            Some("error") => &mut error,
            Some("stdin") if opts.stdin => &mut stdin,
            Some("stdout") if opts.stdout => &mut stdout,
            Some("stderr") if opts.stderr => &mut stderr,
            Some("resize") if opts.tty => &mut resize,
            other => {
                tracing::debug!(streamtype = ?other, "remote command: unexpected SPDY stream");
                stream.writer.reset().await;
                continue;
            }
        };
        *slot = Some(stream);
    }
    let Some(error) = error else {
        return Err("no error stream".into());
    };
    let (gone_tx, gone_rx) = oneshot::channel();
    // The session's end (the client hung up) ends the accept channel.
    tokio::spawn(async move {
        while let Some(extra) = incoming.recv().await {
            extra.writer.reset().await;
        }
        let _ = gone_tx.send(());
    });
    let resize_rx = resize.map(|mut stream| {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            // A stream of JSON objects, split anywhere.
            let mut pending: Vec<u8> = Vec::new();
            while let Some(data) = stream.data.recv().await {
                pending.extend_from_slice(&data);
                let mut sizes = serde_json::Deserializer::from_slice(&pending).into_iter::<TermSize>();
                let mut used = 0;
                while let Some(Ok(size)) = sizes.next() {
                    used = sizes.byte_offset();
                    if tx.send(size).await.is_err() {
                        return;
                    }
                }
                pending.drain(..used);
            }
        });
        rx
    });
    let (out_tx, mut out_rx) = mpsc::channel::<Output>(16);
    let writers = (stdout.map(|s| s.writer), stderr.map(|s| s.writer));
    tokio::spawn(async move {
        let (stdout, stderr) = writers;
        while let Some(out) = out_rx.recv().await {
            match out {
                Output::Stdout(b) => {
                    if let Some(w) = &stdout {
                        let _ = w.write(b).await;
                    }
                }
                Output::Stderr(b) => {
                    if let Some(w) = &stderr {
                        let _ = w.write(b).await;
                    }
                }
                Output::Status(status) => {
                    for w in [&stdout, &stderr].into_iter().flatten() {
                        w.finish().await;
                    }
                    let _ = error
                        .writer
                        .write(Bytes::from(serde_json::to_vec(&status).unwrap_or_default()))
                        .await;
                    error.writer.finish().await;
                    return;
                }
            }
        }
    });
    Ok(Streams {
        stdin: stdin.map(|s| s.data),
        resize: resize_rx,
        output: out_tx,
        gone: gone_rx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every stream, without a terminal.
    const PIPES: StreamOptions = StreamOptions {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };

    fn streams(
        stdin: bool,
    ) -> (
        Streams,
        mpsc::Sender<Bytes>,
        mpsc::Receiver<Output>,
        oneshot::Sender<()>,
    ) {
        let (in_tx, in_rx) = mpsc::channel(4);
        let (out_tx, out_rx) = mpsc::channel(16);
        let (gone_tx, gone_rx) = oneshot::channel();
        (
            Streams {
                stdin: stdin.then_some(in_rx),
                resize: None,
                output: out_tx,
                gone: gone_rx,
            },
            in_tx,
            out_rx,
            gone_tx,
        )
    }

    async fn collect(mut rx: mpsc::Receiver<Output>) -> (String, String, Value) {
        let (mut out, mut err) = (String::new(), String::new());
        while let Some(o) = rx.recv().await {
            match o {
                Output::Stdout(b) => out.push_str(&String::from_utf8_lossy(&b)),
                Output::Stderr(b) => err.push_str(&String::from_utf8_lossy(&b)),
                Output::Status(s) => return (out, err, s),
            }
        }
        panic!("no status")
    }

    #[tokio::test]
    async fn a_command_reports_output_and_exit_code() {
        let argv: Vec<String> = ["sh", "-c", "cat; echo err >&2; exit 3"].map(String::from).to_vec();
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        let (s, stdin, out, _gone) = streams(true);
        let run = tokio::spawn(exec(cmd, argv, PIPES, s));
        stdin.send(Bytes::from_static(b"in\n")).await.unwrap();
        drop(stdin);
        let (o, e, status) = collect(out).await;
        run.await.unwrap();
        assert_eq!(o, "in\n");
        assert_eq!(e, "err\n");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
    }

    #[tokio::test]
    async fn success_and_missing_programs() {
        let mut cmd = tokio::process::Command::new("true");
        cmd.kill_on_drop(true);
        let (s, _stdin, out, _gone) = streams(false);
        tokio::spawn(exec(cmd, vec!["true".into()], StreamOptions::default(), s));
        assert_eq!(collect(out).await.2, success());

        let cmd = tokio::process::Command::new("/nonexistent/program");
        let (s, _stdin, out, _gone) = streams(false);
        tokio::spawn(exec(cmd, vec![], StreamOptions::default(), s));
        assert_eq!(collect(out).await.2["reason"], "InternalError");
    }

    #[tokio::test]
    async fn attach_relays_the_shims_frames_both_ways() {
        let (kubelet_end, mut shim) = tokio::net::UnixStream::pair().unwrap();
        let (s, stdin, out, _gone) = streams(true);
        let task = tokio::spawn(attach(kate_runtime::attach_stream(kubelet_end), PIPES, s));
        // Frames: a kind byte (1 stdout, 2 stderr; 0 stdin, 3 its end), a big-endian length.
        shim.write_all(b"\x01\x00\x00\x00\x06hello\n\x02\x00\x00\x00\x05oops\n")
            .await
            .unwrap();
        stdin.send(Bytes::from_static(b"abc")).await.unwrap();
        drop(stdin);
        let mut input = [0u8; 13];
        shim.read_exact(&mut input).await.unwrap();
        assert_eq!(&input, b"\x00\x00\x00\x00\x03abc\x03\x00\x00\x00\x00");
        // The container ended: the shim closes the connection.
        drop(shim);
        let (o, e, status) = collect(out).await;
        task.await.unwrap();
        assert_eq!(o, "hello\n");
        assert_eq!(e, "oops\n");
        assert_eq!(status, success());
    }
}
