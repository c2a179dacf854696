//! Attaching to a running container's own stdio, as `kubectl attach` and `kubectl run -it` do.
//!
//! Each container's shim listens on `attach.sock` in the container's directory. A connection
//! receives everything the container writes from then on and may write to its stdin (when the
//! container was created with `stdin`) and resize its terminal (with `tty`). Both directions carry
//! frames: a kind byte, the payload's length as a big-endian `u32`, the payload.
//!
//! Socket paths are limited to 108 bytes and container directories are longer, so both ends
//! reach the socket through `/proc/self/fd/N/`, N being a descriptor of the directory.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::container::ContainerState;
use crate::error::{Error, IoContext, Result};
use crate::runtime::Runtime;

/// The shim's attach socket, in the container's directory.
pub(crate) const SOCKET: &str = "attach.sock";
/// The largest payload a frame may carry; longer input is sent as several frames.
const MAX_PAYLOAD: usize = 64 * 1024;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Client → shim: bytes for the container's stdin.
    Stdin = 0,
    /// Shim → client: bytes the container wrote to stdout (or its terminal).
    Stdout = 1,
    /// Shim → client: bytes the container wrote to stderr.
    Stderr = 2,
    /// Client → shim: this client's input ended.
    CloseStdin = 3,
    /// Client → shim: the terminal's new size, width then height as big-endian `u16`s.
    Resize = 4,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::Stdin,
            1 => Kind::Stdout,
            2 => Kind::Stderr,
            3 => Kind::CloseStdin,
            4 => Kind::Resize,
            _ => return None,
        })
    }
}

/// One frame, header included.
pub(crate) fn encode(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(kind as u8);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The kind and payload length of a frame header.
fn decode_header(header: [u8; 5]) -> io::Result<(Kind, usize)> {
    let kind = Kind::from_byte(header[0])
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("unknown frame kind {}", header[0])))?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes"),
        ));
    }
    Ok((kind, len))
}

/// Reads one frame; `None` at the end of the stream.
pub(crate) fn read_frame(reader: &mut impl io::Read) -> io::Result<Option<(Kind, Vec<u8>)>> {
    let mut header = [0u8; 5];
    match reader.read_exact(&mut header) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    let (kind, len) = decode_header(header)?;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload)?;
    Ok(Some((kind, payload)))
}

/// A terminal size as a [`Kind::Resize`] payload.
pub(crate) fn decode_size(payload: &[u8]) -> Option<(u16, u16)> {
    match payload {
        [w0, w1, h0, h1] => Some((u16::from_be_bytes([*w0, *w1]), u16::from_be_bytes([*h0, *h1]))),
        _ => None,
    }
}

/// A path to `name` in `dir` short enough for a socket address, valid while `dir_fd` is open
/// in this process.
pub(crate) fn short_path(dir_fd: &OwnedFd, name: &str) -> String {
    format!("/proc/self/fd/{}/{name}", dir_fd.as_raw_fd())
}

/// Opens `dir` for [`short_path`]; `inheritable` keeps the descriptor open across exec, for
/// child processes that are handed such a path.
pub(crate) fn open_dir(dir: &Path, inheritable: bool) -> Result<OwnedFd> {
    let mut flags = OFlags::PATH | OFlags::DIRECTORY;
    if !inheritable {
        flags |= OFlags::CLOEXEC;
    }
    rustix::fs::open(dir, flags, Mode::empty())
        .map_err(io::Error::from)
        .ctx("opening", dir)
}

/// What a running container wrote, as read from an attach connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bytes on its stdout, or on its terminal.
    Stdout(Vec<u8>),
    /// Bytes on its stderr.
    Stderr(Vec<u8>),
}

/// The output side of an attach connection, from [`Runtime::attach`].
pub struct AttachOutput(OwnedReadHalf);

impl AttachOutput {
    /// The next output; `None` once the container has ended and all of its output was read.
    pub async fn next(&mut self) -> io::Result<Option<Output>> {
        loop {
            let mut header = [0u8; 5];
            match self.0.read_exact(&mut header).await {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                other => other?,
            };
            let (kind, len) = decode_header(header)?;
            let mut payload = vec![0u8; len];
            self.0.read_exact(&mut payload).await?;
            match kind {
                Kind::Stdout => return Ok(Some(Output::Stdout(payload))),
                Kind::Stderr => return Ok(Some(Output::Stderr(payload))),
                // Not sent by a shim; skipped rather than trusted.
                Kind::Stdin | Kind::CloseStdin | Kind::Resize => continue,
            }
        }
    }
}

/// The input side of an attach connection, from [`Runtime::attach`].
pub struct AttachInput(OwnedWriteHalf);

impl AttachInput {
    /// Writes to the container's stdin (ignored by a container created without `stdin`, or
    /// whose `stdin_once` input was closed already).
    pub async fn stdin(&mut self, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(MAX_PAYLOAD) {
            self.0.write_all(&encode(Kind::Stdin, chunk)).await?;
        }
        Ok(())
    }

    /// Says this client's input ended: a container created with `stdin_once` sees the end of
    /// its stdin.
    pub async fn close_stdin(&mut self) -> io::Result<()> {
        self.0.write_all(&encode(Kind::CloseStdin, &[])).await
    }

    /// Resizes the container's terminal (for a container created with `tty`).
    pub async fn resize(&mut self, width: u16, height: u16) -> io::Result<()> {
        let mut size = width.to_be_bytes().to_vec();
        size.extend_from_slice(&height.to_be_bytes());
        self.0.write_all(&encode(Kind::Resize, &size)).await
    }
}

/// Splits a connected attach socket into its two sides (the shim's end speaks the protocol).
pub fn attach_stream(stream: UnixStream) -> (AttachOutput, AttachInput) {
    let (read, write) = stream.into_split();
    (AttachOutput(read), AttachInput(write))
}

impl Runtime {
    /// Attaches to the running container `id`: its output from now on, and its stdin and
    /// terminal as it was created with them.
    pub async fn attach(&self, id: &str) -> Result<(AttachOutput, AttachInput)> {
        let record = self.record(id)?;
        if self.container_status(id)?.state != ContainerState::Running {
            return Err(Error::NotRunning(id.to_string()));
        }
        let dir = open_dir(&record.container.dir, false)?;
        let path = short_path(&dir, SOCKET);
        let stream = UnixStream::connect(&path)
            .await
            .ctx("connecting to", &record.container.dir.join(SOCKET))?;
        Ok(attach_stream(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut wire = encode(Kind::Stdin, b"hello");
        wire.extend(encode(Kind::CloseStdin, &[]));
        let mut reader = wire.as_slice();
        assert_eq!(read_frame(&mut reader).unwrap(), Some((Kind::Stdin, b"hello".to_vec())));
        assert_eq!(read_frame(&mut reader).unwrap(), Some((Kind::CloseStdin, vec![])));
        assert_eq!(read_frame(&mut reader).unwrap(), None);
    }

    #[test]
    fn bad_frames_are_refused() {
        let mut unknown = [9u8, 0, 0, 0, 0].as_slice();
        assert!(read_frame(&mut unknown).is_err());
        let mut huge = [0u8, 0xff, 0xff, 0xff, 0xff].as_slice();
        assert!(read_frame(&mut huge).is_err());
        let mut cut = [0u8, 0, 0, 0, 4, b'a'].as_slice();
        assert!(read_frame(&mut cut).is_err());
    }

    #[test]
    fn sizes_are_width_then_height() {
        assert_eq!(decode_size(&[0, 80, 0, 24]), Some((80, 24)));
        assert_eq!(decode_size(&[0, 80]), None);
    }
}
