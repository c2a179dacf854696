//! The shim's side of attaching (see [`crate::attach`]): every connection to `attach.sock` gets
//! the container's output from then on, and its input goes to the container's stdin.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::console;
use crate::attach::{Kind, decode_size, encode, read_frame};

/// Frames queued for one client; one that falls this far behind is dropped rather than ever
/// slowing the container, whose output the shim must keep reading.
const QUEUE: usize = 256;
/// How long writing to a client may block before it counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// What a terminal reads as the end of input (Ctrl-D at the start of a line).
const EOT: u8 = 0x04;

/// Where the container's stdin goes.
pub(super) enum Input {
    /// Created without stdin: input is dropped.
    None,
    /// The write end of the container's stdin pipe.
    Pipe(File),
    /// The terminal's master side.
    Terminal(File),
}

/// The attached clients and the container's input.
pub(super) struct Hub {
    clients: Mutex<Vec<Client>>,
    input: Mutex<Input>,
    /// Close the container's stdin when the first client that wrote to it goes away.
    stdin_once: bool,
    /// The terminal, for resizes.
    master: Option<OwnedFd>,
}

/// One attached client's output queue and the thread writing it.
struct Client {
    queue: SyncSender<Arc<Vec<u8>>>,
    writer: JoinHandle<()>,
}

impl Hub {
    /// A hub with no clients yet.
    pub fn new(input: Input, stdin_once: bool, master: Option<OwnedFd>) -> Arc<Hub> {
        Arc::new(Hub {
            clients: Mutex::new(Vec::new()),
            input: Mutex::new(input),
            stdin_once,
            master,
        })
    }

    /// Accepts clients on `listener` in a thread of its own, for the rest of the shim's life.
    pub fn serve(self: &Arc<Self>, listener: UnixListener) {
        let hub = self.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => hub.add(stream),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                }
            }
        });
    }

    fn add(self: &Arc<Self>, stream: UnixStream) {
        let (Ok(mut out), Ok(())) = (stream.try_clone(), stream.set_write_timeout(Some(WRITE_TIMEOUT))) else {
            return;
        };
        let (queue, frames) = sync_channel::<Arc<Vec<u8>>>(QUEUE);
        let writer = std::thread::spawn(move || {
            for frame in frames {
                if out.write_all(&frame).is_err() {
                    break;
                }
            }
            let _ = out.shutdown(std::net::Shutdown::Write);
        });
        if let Ok(mut clients) = self.clients.lock() {
            clients.push(Client { queue, writer });
        }
        let hub = self.clone();
        std::thread::spawn(move || hub.read_input(stream));
    }

    /// Takes one client's frames until it goes away.
    fn read_input(&self, mut stream: UnixStream) {
        let mut wrote = false;
        loop {
            match read_frame(&mut stream) {
                Ok(Some((Kind::Stdin, data))) => {
                    wrote = true;
                    self.write_input(&data);
                }
                Ok(Some((Kind::CloseStdin, _))) => {
                    self.close_input();
                    return;
                }
                Ok(Some((Kind::Resize, size))) => {
                    if let (Some(master), Some((width, height))) = (&self.master, decode_size(&size)) {
                        let _ = console::resize(master, width, height);
                    }
                }
                Ok(Some((Kind::Stdout | Kind::Stderr, _))) => {}
                Ok(None) | Err(_) => {
                    if wrote {
                        self.close_input();
                    }
                    return;
                }
            }
        }
    }

    fn write_input(&self, data: &[u8]) {
        if let Ok(mut input) = self.input.lock() {
            let written = match &mut *input {
                Input::None => Ok(()),
                Input::Pipe(file) | Input::Terminal(file) => file.write_all(data),
            };
            // The container closed its stdin: nothing more can go there.
            if written.is_err() {
                *input = Input::None;
            }
        }
    }

    /// A client's input ended: with `stdin_once` the container's input ends too.
    fn close_input(&self) {
        if !self.stdin_once {
            return;
        }
        if let Ok(mut input) = self.input.lock() {
            // A terminal has no end of its own while the shim holds its master open: what the
            // user would type to end input stands in for it.
            if let Input::Terminal(file) = &mut *input {
                let _ = file.write_all(&[EOT]);
            }
            *input = Input::None;
        }
    }

    /// Sends what the container wrote to every client, dropping those that fell behind.
    pub fn publish(&self, kind: Kind, data: &[u8]) {
        let Ok(mut clients) = self.clients.lock() else { return };
        if clients.is_empty() {
            return;
        }
        let frame = Arc::new(encode(kind, data));
        clients.retain(|client| match client.queue.try_send(frame.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        });
    }

    /// The container ended and its output was published: lets every client read the rest and
    /// see the end of the stream.
    pub fn finish(&self) {
        let clients = match self.clients.lock() {
            Ok(mut clients) => std::mem::take(&mut *clients),
            Err(_) => return,
        };
        for Client { queue, writer } in clients {
            drop(queue);
            let _ = writer.join();
        }
    }
}
