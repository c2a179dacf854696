//! The container's terminal: runc creates the pty and sends its master side to a socket the
//! shim listens on (`runc create --console-socket`).

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
use rustix::termios::{Winsize, tcsetwinsize};

/// The console socket, in the container's directory.
pub(super) const SOCKET: &str = "console.sock";

/// Takes the pty master that runc sent on `listener`. runc sends it before `runc create`
/// returns and the message waits in the socket, so this is called after runc succeeded and does
/// not block.
pub(super) fn receive_master(listener: &UnixListener) -> io::Result<OwnedFd> {
    listener.set_nonblocking(true)?;
    let (stream, _) = listener.accept()?;
    stream.set_nonblocking(false)?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    // runc sends the terminal's name along with the descriptor.
    let mut name = [0u8; 256];
    recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut name)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err(io::Error::other("runc sent no terminal on the console socket"))
}

/// Sets the terminal's size, as a client's resize asks.
pub(super) fn resize(master: &OwnedFd, width: u16, height: u16) -> io::Result<()> {
    let size = Winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    tcsetwinsize(master, size).map_err(io::Error::from)
}
