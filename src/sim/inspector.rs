//! The one inspector the simulator runs: who calls back into the executor.

use alloy::primitives::Address;
use revm::{
    Inspector,
    interpreter::{CallInputs, CallOutcome},
};

/// Records every caller of `target` other than the transaction's sender (flash-loan callbacks and
/// anything else that calls in). Costs one comparison per call frame.
#[derive(Clone, Debug, Default)]
pub struct CallWatch {
    target: Address,
    sender: Address,
    /// The callers seen, deduplicated, in order of first call.
    pub callers: Vec<Address>,
}

impl CallWatch {
    /// Watches calls into `target` made by anyone but `sender`.
    pub const fn new(target: Address, sender: Address) -> Self {
        Self { target, sender, callers: Vec::new() }
    }
}

impl<CTX> Inspector<CTX> for CallWatch {
    fn call(&mut self, _context: &mut CTX, inputs: &mut CallInputs) -> Option<CallOutcome> {
        if !self.target.is_zero()
            && inputs.target_address == self.target
            && inputs.caller != self.sender
            && !self.callers.contains(&inputs.caller)
        {
            self.callers.push(inputs.caller);
        }
        None
    }
}
