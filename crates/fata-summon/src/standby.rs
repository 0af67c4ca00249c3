//! Standby monitors: a `fata` process started ahead of the next summon, waiting to be told what
//! to run.
//!
//! Starting a process costs about 1.5 ms on the nested hosts Fata is measured on (fork, exec,
//! the dynamic loader, Rust's start-up): a sixth of a restore. So the daemon keeps one
//! `fata standby FD` waiting on a socket. A summon sends it the command line and the service's
//! tap (`SCM_RIGHTS`), it runs that command as its own, and the daemon starts the next standby
//! once the service is up.
//!
//! The message is one datagram of a `SOCK_SEQPACKET` pair: the tap's descriptor number in the
//! daemon, then each argument, all NUL-terminated, with the tap attached.

use std::ffi::{OsStr, OsString};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Child, Command};

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};

/// The hidden `fata` subcommand a standby runs as: `fata standby FD`.
pub const SUBCOMMAND: &str = "standby";

/// The largest command line a standby takes.
const MESSAGE_MAX: usize = 64 * 1024;

/// A standby process and the daemon's end of its socket.
pub(crate) struct Standby {
    child: Child,
    socket: OwnedFd,
}

impl Standby {
    /// The command that starts a standby, with the end of the socket it inherits (whose
    /// close-on-exec flag the caller clears in the child), and the daemon's end.
    pub(crate) fn command(fata: &Path) -> io::Result<(Command, OwnedFd, OwnedFd)> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let mut command = Command::new(fata);
        command.arg(SUBCOMMAND).arg(theirs.as_raw_fd().to_string());
        Ok((command, theirs, ours))
    }

    /// A standby from its started process and the daemon's end of its socket.
    pub(crate) fn new(child: Child, socket: OwnedFd) -> Standby {
        Standby { child, socket }
    }

    /// Hands the standby `args` (what would follow `fata` on a command line) and the tap `tap`:
    /// the standby becomes that command's process. An error if the standby is gone; then the
    /// caller starts the command afresh.
    pub(crate) fn hand(self, args: &[OsString], tap: RawFd) -> io::Result<Child> {
        let mut message = Vec::new();
        for field in std::iter::once(OsString::from(tap.to_string())).chain(args.iter().cloned()) {
            message.extend_from_slice(field.as_bytes());
            message.push(0);
        }
        let fds = [tap];
        let sent = sendmsg::<()>(
            self.socket.as_raw_fd(),
            &[IoSlice::new(&message)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        );
        match sent {
            Ok(_) => Ok(self.child),
            Err(e) => {
                self.end();
                Err(e.into())
            }
        }
    }

    /// The standby's process id.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// Ends the standby (it runs nothing yet, so a kill loses nothing) and reaps it.
    pub(crate) fn end(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In the standby process: waits on the inherited socket `fd` for one command and returns its
/// arguments (what follows `fata`), with the tap it came with at the descriptor number the
/// daemon held it at, so that the command's `--net fd:N` names it here too. `None` if the daemon
/// closed the socket without sending one.
pub fn wait_for_command(fd: RawFd) -> io::Result<Option<Vec<OsString>>> {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    if fd <= 2 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{fd} is not an open descriptor (`fata summon` starts standbys itself)"),
        ));
    }
    // SAFETY: the descriptor is open, and `fata summon` handed it to this process alone.
    receive(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Receives the one command on `socket`.
fn receive(socket: OwnedFd) -> io::Result<Option<Vec<OsString>>> {
    let mut buf = vec![0u8; MESSAGE_MAX];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let (len, received) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let message = recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut received = Vec::new();
        for cmsg in message.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                // SAFETY: the kernel just installed these descriptors in this process for
                // this message; nothing else owns them.
                received.extend(
                    fds.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        (message.bytes, received)
    };
    drop(socket);
    if len == 0 {
        return Ok(None);
    }
    let malformed = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let body = buf[..len]
        .strip_suffix(&[0])
        .ok_or_else(|| malformed("the daemon's command does not end in NUL"))?;
    let mut fields = body.split(|&b| b == 0);
    let number: RawFd = fields
        .next()
        .and_then(|field| std::str::from_utf8(field).ok()?.parse().ok())
        .filter(|&n| n > 2)
        .ok_or_else(|| malformed("the daemon's command does not start with a descriptor number"))?;
    let [tap] = <[OwnedFd; 1]>::try_from(received)
        .map_err(|_| malformed("the daemon's command came without exactly one tap"))?;
    place(tap, number)?;
    Ok(Some(
        fields
            .map(|field| OsStr::from_bytes(field).to_os_string())
            .collect(),
    ))
}

/// Moves `fd` to descriptor `number` (left open, inherited by nothing else: the process runs the
/// command itself).
fn place(fd: OwnedFd, number: RawFd) -> io::Result<()> {
    if fd.as_raw_fd() == number {
        // Received with close-on-exec, which does not matter: nothing is executed.
        std::mem::forget(fd);
        return Ok(());
    }
    // SAFETY: dup2 onto `number`, a descriptor this process does not use (its own are 0-2 and
    // the socket, closed above); the new descriptor is owned by the command that names it.
    if unsafe { libc::dup2(fd.as_raw_fd(), number) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    #[test]
    fn a_command_and_its_descriptor_arrive_at_the_number_they_had() {
        let (ours, theirs) = pair();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"tap").unwrap();
        let args = [OsString::from("restore"), OsString::from("dir with space")];
        let mut message = b"900\0restore\0dir with space\0".to_vec();
        let fds = [file.as_raw_fd()];
        sendmsg::<()>(
            ours.as_raw_fd(),
            &[IoSlice::new(&message)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        assert_eq!(receive(theirs).unwrap().unwrap(), args);
        // SAFETY: descriptor 900 was just placed for this test, which owns it now.
        let mut moved = unsafe { std::fs::File::from_raw_fd(900) };
        moved.rewind().unwrap();
        message.clear();
        moved.read_to_end(&mut message).unwrap();
        assert_eq!(message, b"tap");
    }

    #[test]
    fn a_closed_socket_is_no_command_and_a_bad_message_is_an_error() {
        let (ours, theirs) = pair();
        drop(ours);
        assert!(receive(theirs).unwrap().is_none());

        let (ours, theirs) = pair();
        sendmsg::<()>(
            ours.as_raw_fd(),
            &[IoSlice::new(b"12\0run\0")],
            &[],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let err = receive(theirs).unwrap_err();
        assert!(err.to_string().contains("exactly one tap"), "{err}");
    }
}
