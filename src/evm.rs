//! A local EVM: revm over an in-memory [`CacheDB`], for executing contract code off-chain.
//!
//! Used wherever cantilever needs the contract's own answer next to its native math: the property
//! tests (native venue math against the fixture contracts, to the wei), the benches, and the `quote`
//! command (a pool's code executed on state fetched from a node). Setup transactions commit; views
//! run without commit on a read-only reference, reusing one EVM.
//!
//! The simulator of the engine (`sim`) is a different, per-block construction; this type favours
//! simplicity over throughput.

use alloy::{
    primitives::{Address, Bytes, TxKind, U256},
    sol_types::SolCall,
};
use revm::{
    Context, DatabaseRef, ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext,
    context::{BlockEnv, TxEnv, result::ExecutionResult},
    database::{CacheDB, EmptyDB},
    primitives::hardfork::SpecId,
    state::AccountInfo,
};

/// Why a local execution failed.
#[derive(Debug, thiserror::Error)]
pub enum EvmError {
    /// The transaction was invalid (revm refused to run it).
    #[error("invalid transaction: {0}")]
    Invalid(String),
    /// The call reverted; `reason` is the decoded revert string when there is one.
    #[error("reverted: {reason}")]
    Reverted {
        /// Decoded `Error(string)` reason, or the raw data in hex.
        reason: String,
        /// Raw revert data.
        data: Bytes,
    },
    /// The call halted (out of gas, invalid opcode, ...).
    #[error("halted: {0}")]
    Halted(String),
    /// The return data did not decode.
    #[error("undecodable return data: {0}")]
    Decode(String),
    /// The database failed.
    #[error("database: {0}")]
    Db(String),
}

impl EvmError {
    /// The revert reason, when the call reverted.
    pub fn revert_reason(&self) -> Option<&str> {
        match self {
            Self::Reverted { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// A local chain: one state, a block environment and a default sender.
#[derive(Debug)]
pub struct LocalEvm<DB: DatabaseRef = EmptyDB> {
    db: CacheDB<DB>,
    block: BlockEnv,
    /// The account that sends setup transactions and deploys.
    pub sender: Address,
    nonce: u64,
}

impl Default for LocalEvm<EmptyDB> {
    fn default() -> Self {
        Self::new(CacheDB::new(EmptyDB::default()))
    }
}

impl<DB: DatabaseRef> LocalEvm<DB>
where
    DB::Error: std::fmt::Debug,
{
    /// A local chain over `db`, sending from a funded default account.
    pub fn new(mut db: CacheDB<DB>) -> Self {
        let sender = Address::with_last_byte(0xd0);
        db.insert_account_info(
            sender,
            AccountInfo { balance: U256::from(10u64).pow(U256::from(30)), ..Default::default() },
        );
        let block = BlockEnv {
            number: U256::from(1u64),
            timestamp: U256::from(1_750_000_000u64),
            basefee: 0,
            gas_limit: 1_000_000_000,
            ..Default::default()
        };
        Self { db, block, sender, nonce: 0 }
    }

    /// The state.
    pub const fn db(&self) -> &CacheDB<DB> {
        &self.db
    }

    /// The state, mutable (set storage, balances, code).
    pub const fn db_mut(&mut self) -> &mut CacheDB<DB> {
        &mut self.db
    }

    /// Sets the block number and timestamp used from now on.
    pub fn set_block(&mut self, number: u64, timestamp: u64) {
        self.block.number = U256::from(number);
        self.block.timestamp = U256::from(timestamp);
    }

    /// Current block timestamp.
    pub fn timestamp(&self) -> u64 {
        self.block.timestamp.saturating_to()
    }

    /// Writes a storage slot directly.
    ///
    /// # Errors
    /// [`EvmError::Db`] when the account cannot be loaded from the underlying database.
    pub fn set_storage(
        &mut self,
        address: Address,
        slot: U256,
        value: U256,
    ) -> Result<(), EvmError> {
        self.db
            .insert_account_storage(address, slot, value)
            .map_err(|e| EvmError::Db(format!("{e:?}")))
    }

    /// Deploys `init_code ++ args` from the sender.
    ///
    /// # Errors
    /// When the deployment reverts or halts.
    pub fn deploy(&mut self, init_code: &[u8], args: &[u8]) -> Result<Address, EvmError> {
        let address = self.sender.create(self.nonce);
        let mut data = Vec::with_capacity(init_code.len() + args.len());
        data.extend_from_slice(init_code);
        data.extend_from_slice(args);
        self.commit(self.sender, TxKind::Create, data.into())?;
        Ok(address)
    }

    /// Sends a committing call from `from`; returns the return data.
    ///
    /// # Errors
    /// When the call reverts, halts or is invalid; the state is unchanged on error.
    pub fn send<C: SolCall>(
        &mut self,
        from: Address,
        to: Address,
        call: &C,
    ) -> Result<C::Return, EvmError> {
        let out = self.commit(from, TxKind::Call(to), call.abi_encode().into())?;
        C::abi_decode_returns(&out).map_err(|e| EvmError::Decode(e.to_string()))
    }

    /// Runs a call from `from` without committing; returns the decoded result.
    ///
    /// # Errors
    /// When the call reverts, halts or is invalid.
    pub fn view<C: SolCall>(
        &self,
        from: Address,
        to: Address,
        call: &C,
    ) -> Result<C::Return, EvmError> {
        let out = self.call_raw(from, to, call.abi_encode().into())?;
        C::abi_decode_returns(&out).map_err(|e| EvmError::Decode(e.to_string()))
    }

    /// Runs raw calldata without committing.
    ///
    /// # Errors
    /// When the call reverts, halts or is invalid.
    pub fn call_raw(&self, from: Address, to: Address, data: Bytes) -> Result<Bytes, EvmError> {
        let mut evm = Context::mainnet()
            .modify_cfg_chained(|c| {
                c.set_spec_and_mainnet_gas_params(SpecId::PRAGUE);
                c.disable_nonce_check = true;
            })
            .with_block(self.block.clone())
            .with_ref_db(&self.db)
            .build_mainnet();
        let tx = TxEnv::builder()
            .caller(from)
            .kind(TxKind::Call(to))
            .data(data)
            .gas_limit(30_000_000)
            .gas_price(0)
            .chain_id(None)
            .build()
            .map_err(|e| EvmError::Invalid(format!("{e:?}")))?;
        let out = evm.transact(tx).map_err(|e| EvmError::Invalid(format!("{e:?}")))?;
        outcome(out.result)
    }

    fn commit(&mut self, from: Address, kind: TxKind, data: Bytes) -> Result<Bytes, EvmError> {
        if from != self.sender {
            // Any caller may send: give it gas money and skip its nonce.
            let info = self.db.basic_ref(from).map_err(|e| EvmError::Db(format!("{e:?}")))?;
            if info.is_none() {
                self.db.insert_account_info(from, AccountInfo::default());
            }
        }
        let nonce = if from == self.sender { self.nonce } else { 0 };
        let block = self.block.clone();
        let mut evm = Context::mainnet()
            .modify_cfg_chained(|c| {
                c.set_spec_and_mainnet_gas_params(SpecId::PRAGUE);
                c.disable_nonce_check = from != self.sender;
            })
            .with_block(block)
            .with_db(&mut self.db)
            .build_mainnet();
        let tx = TxEnv::builder()
            .caller(from)
            .nonce(nonce)
            .kind(kind)
            .data(data)
            .gas_limit(30_000_000)
            .gas_price(0)
            .chain_id(None)
            .build()
            .map_err(|e| EvmError::Invalid(format!("{e:?}")))?;
        let res = evm.transact_commit(tx).map_err(|e| EvmError::Invalid(format!("{e:?}")))?;
        if from == self.sender {
            self.nonce += 1;
        }
        outcome(res)
    }
}

fn outcome(res: ExecutionResult) -> Result<Bytes, EvmError> {
    match res {
        ExecutionResult::Success { output, .. } => Ok(output.into_data()),
        ExecutionResult::Revert { output, .. } => {
            let reason = alloy::sol_types::decode_revert_reason(&output)
                .unwrap_or_else(|| alloy::hex::encode_prefixed(&output));
            Err(EvmError::Reverted { reason, data: output })
        }
        ExecutionResult::Halt { reason, .. } => Err(EvmError::Halted(format!("{reason:?}"))),
    }
}
