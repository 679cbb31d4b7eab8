//! A clonable handle that sends operator commands to one engine (for coordinators and tools).

use crossbeam_channel::Sender;

use super::{Control, Input};

/// Sends [`Control`] commands to a running engine.
#[derive(Clone, Debug)]
pub struct ControlSender(pub(crate) Sender<Input>);

impl ControlSender {
    /// Sends `c`; false when the engine has stopped.
    pub fn send(&self, c: Control) -> bool {
        self.0.send(Input::Control(c)).is_ok()
    }
}
