//! The vCPU thread's side of the control requests: it runs the guest between them and carries
//! them out at an exit, where the guest's state is whole.

use crate::error::Error;
use crate::hypercall::Handler;
use crate::kv::Kvs;
use crate::mailbox::{Freeze, Mailbox, Order, Verdict};
use crate::vm::{Ran, Vm};
use fata_control::{GuestState, Reply, Request};
use fata_hvt_abi::ABI_VERSION;
use fata_snapshot::{DeviceState, RunSettings, Snapshot};

/// How a guest's run here ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The guest exited with this status.
    Exit(i32),
    /// The guest went elsewhere (a snapshot with `--stop`, a migration); the note says where.
    Left(String),
}

/// How long a freeze waits for the host to finish the block requests it has.
const QUIESCE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// What the vCPU thread drives: the VM, the devices, and what a snapshot carries of the run.
pub struct Run<'r, 'ram> {
    /// The VM.
    pub vm: &'r mut Vm<'ram>,
    /// The hypercall handler, with the network and block devices.
    pub handler: &'r mut Handler<'ram>,
    /// The key-value stores.
    pub kvs: &'r Kvs,
    /// The name the guest runs under.
    pub name: &'r str,
    /// How the monitor runs it.
    pub settings: &'r RunSettings,
}

/// Runs the guest, carrying out control requests as they come, until it ends.
pub fn drive(run: &mut Run<'_, '_>, mailbox: &Mailbox, exits: &mut u64) -> Result<Ending, Error> {
    loop {
        match run.vm.run(run.handler, exits)? {
            Ran::Exit(status) => return Ok(Ending::Exit(status)),
            Ran::Control => {
                while let Some(order) = mailbox.take() {
                    if let Some(end) = carry_out(run, order, mailbox)? {
                        return Ok(end);
                    }
                }
            }
        }
    }
}

/// Freezes the guest for `freeze`: finishes every block request the host has, captures the
/// vCPU and the devices, hands them over, and waits for the verdict with the guest stopped.
fn freeze(run: &mut Run<'_, '_>, freeze: Freeze) -> Verdict {
    let frozen = capture(run);
    let captured = frozen.is_ok();
    if freeze.frozen.send(frozen).is_err() || !captured {
        return Verdict::CarryOn;
    }
    // A control thread that went away without a verdict cannot have taken the guest anywhere.
    freeze.verdict.recv().unwrap_or(Verdict::CarryOn)
}

/// The guest as a snapshot, its memory extents still empty.
fn capture(run: &mut Run<'_, '_>) -> Result<Snapshot, String> {
    let ram = run.handler.ram;
    let deadline = std::time::Instant::now() + QUIESCE_WITHIN;
    (run.handler.blocks.quiesce(ram, deadline))
        .map_err(|e| format!("cannot finish the block requests in flight: {e:?}"))?;
    let vcpu = run.vm.capture().map_err(|e| e.to_string())?;
    let mut devices: Vec<DeviceState> = (run.handler.nets.save().into_iter())
        .map(DeviceState::Net)
        .collect();
    devices.extend(
        run.handler
            .blocks
            .save()
            .into_iter()
            .map(DeviceState::Block),
    );
    devices.extend(run.kvs.save().into_iter().map(DeviceState::Kv));
    let taken_wall_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Ok(Snapshot {
        abi_version: ABI_VERSION,
        mem_bytes: ram.size(),
        name: run.name.to_string(),
        taken_wall_ns,
        vcpu,
        devices,
        run: run.settings.clone(),
        ..Snapshot::default()
    })
}

/// Carries out `order`, and while that leaves the guest paused, the requests that follow;
/// `Some` when the guest's run here ended.
fn carry_out(
    run: &mut Run<'_, '_>,
    mut order: Order,
    mailbox: &Mailbox,
) -> Result<Option<Ending>, Error> {
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
            Request::Snapshot { .. } | Request::Migrate { .. } if order.freeze.is_some() => {
                let link = order.freeze.take().expect("checked above");
                let before = if paused {
                    GuestState::Paused
                } else {
                    GuestState::Running
                };
                mailbox.set_state(GuestState::Paused);
                let verdict = freeze(run, link);
                mailbox.set_state(before);
                if let Verdict::End(note) = verdict {
                    return Ok(Some(Ending::Left(note)));
                }
                // The control thread answers the client.
                if !paused {
                    return Ok(None);
                }
                order = mailbox.wait();
                continue;
            }
            Request::Info | Request::Snapshot { .. } | Request::Migrate { .. } => Reply::Failed {
                message: "the control thread answers this itself".to_string(),
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
