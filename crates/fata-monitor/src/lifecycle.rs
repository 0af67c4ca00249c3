//! The vCPU thread's side of the control requests: it runs the guest between them and carries
//! them out at an exit, where the guest's state is whole.

use crate::control::{Mailbox, Order};
use crate::error::Error;
use crate::hypercall::Handler;
use crate::vm::{Ran, Vm};
use fata_control::{GuestState, Reply, Request};

/// How a guest's run here ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The guest exited with this status.
    Exit(i32),
}

/// Runs the guest, carrying out control requests as they come, until it ends.
pub fn drive(
    vm: &mut Vm<'_>,
    handler: &mut Handler<'_>,
    mailbox: &Mailbox,
    exits: &mut u64,
) -> Result<Ending, Error> {
    loop {
        match vm.run(handler, exits)? {
            Ran::Exit(status) => return Ok(Ending::Exit(status)),
            Ran::Control => {
                while let Some(order) = mailbox.take() {
                    if let Some(end) = carry_out(order, mailbox)? {
                        return Ok(end);
                    }
                }
            }
        }
    }
}

/// Carries out `order`, and while that leaves the guest paused, the requests that follow;
/// `Some` when the guest's run here ended.
fn carry_out(mut order: Order, mailbox: &Mailbox) -> Result<Option<Ending>, Error> {
    let mut paused = false;
    loop {
        let reply = match order.request {
            Request::Pause => {
                let message = if paused { "already paused" } else { "paused" };
                paused = true;
                mailbox.set_state(GuestState::Paused);
                done(message)
            }
            Request::Resume => {
                let message = if paused {
                    "resumed"
                } else {
                    "not paused: the guest runs"
                };
                paused = false;
                mailbox.set_state(GuestState::Running);
                done(message)
            }
            Request::Stop => {
                let _ = order.replies.send(done("stopped"));
                return Err(Error::StopRequested);
            }
            Request::Info | Request::Snapshot { .. } | Request::Migrate { .. } => Reply::Failed {
                message: "this monitor cannot do that yet".to_string(),
            },
        };
        // The client may have gone; the request is carried out all the same.
        let _ = order.replies.send(reply);
        if !paused {
            return Ok(None);
        }
        order = mailbox.wait();
    }
}

fn done(message: &str) -> Reply {
    Reply::Done {
        message: message.to_string(),
    }
}
