//! A pseudo-terminal for `exec -t`. `runc exec --tty` makes the container's terminal itself
//! and copies between it and its own stdio, which must be a terminal too: so the command gets
//! the slave side of a pty of ours as its stdio and controlling terminal, and the client's
//! bytes go through the master. A resize of our terminal reaches runc as SIGWINCH (it is the
//! terminal's foreground process), and runc resizes the container's.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use tokio::io::unix::AsyncFd;

/// The master side of a pseudo-terminal.
pub struct Pty {
    master: AsyncFd<OwnedFd>,
}

impl Pty {
    /// Opens a pty of `cols`×`rows` (80×24 when zero) and starts `command` on its slave side,
    /// as a session leader with it as controlling terminal.
    pub fn spawn(
        mut command: tokio::process::Command,
        cols: u16,
        rows: u16,
    ) -> io::Result<(Pty, tokio::process::Child)> {
        let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
        rustix::pty::grantpt(&master)?;
        rustix::pty::unlockpt(&master)?;
        let slave = rustix::pty::ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
        set_size(&slave, cols, rows)?;
        let flags = rustix::fs::fcntl_getfl(&master)?;
        rustix::fs::fcntl_setfl(&master, flags | rustix::fs::OFlags::NONBLOCK)?;
        let stdio = |fd: &OwnedFd| fd.try_clone().map(std::process::Stdio::from);
        command
            .stdin(stdio(&slave)?)
            .stdout(stdio(&slave)?)
            .stderr(stdio(&slave)?);
        // SAFETY: setsid(2) and ioctl(2) are async-signal-safe and touch no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                rustix::process::setsid()?;
                rustix::process::ioctl_tiocsctty(std::io::stdin())?;
                Ok(())
            });
        }
        let child = command.spawn()?;
        // Our copies of the slave side (and the command's) close here: the master's reads end
        // once the command's processes closed theirs.
        drop((slave, command));
        // SAFETY: the OwnedFd owns its descriptor and always reports that same one, open until
        // the AsyncFd drops it.
        let master = unsafe { AsyncFd::register(master) }?;
        Ok((Pty { master }, child))
    }

    /// Reads what the command wrote; 0 once it and its children closed the terminal.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.master.readable().await?;
            match guard.try_io(|fd| rustix::io::read(fd.get_ref(), &mut *buf).map_err(io::Error::from)) {
                Ok(Ok(n)) => return Ok(n),
                // EIO: no slave side is open any more.
                Ok(Err(e)) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => return Ok(0),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes the client's input.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.master.writable().await?;
            match guard.try_io(|fd| rustix::io::write(fd.get_ref(), data).map_err(io::Error::from)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sets the terminal size.
    pub fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        set_size(self.master.get_ref(), cols, rows)
    }
}

fn set_size(fd: impl AsFd, cols: u16, rows: u16) -> io::Result<()> {
    let (cols, rows) = if cols == 0 || rows == 0 { (80, 24) } else { (cols, rows) };
    rustix::termios::tcsetwinsize(
        fd,
        Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_runs_on_the_terminal() {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "test -t 0 && stty size && read x && echo got $x"]);
        let (pty, mut child) = Pty::spawn(cmd, 100, 30).unwrap();
        pty.write_all(b"hi\n").await.unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = pty.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert!(child.wait().await.unwrap().success());
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("30 100"), "{text:?}");
        assert!(text.contains("got hi"), "{text:?}");
        pty.resize(120, 40).unwrap();
    }
}
