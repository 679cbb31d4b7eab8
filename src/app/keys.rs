//! Keys by role (RELIABILITY.md, security rules): a fundless identity key signs relay requests,
//! a gas-only executor key signs the bot's transactions, and a third, cold key owns the executor
//! contract. [`check_key_roles`] reads the chain before an engine starts and refuses a set-up
//! that mixes the roles, so a leaked hot key can neither drain the executor nor spend the
//! identity's funds. Errors name addresses (public) and never a key.

use alloy::{
    primitives::{Address, U256},
    providers::Provider,
};

use crate::contracts::Executor;

/// The roles as found on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRoles {
    /// The executor contract.
    pub executor: Address,
    /// Its owner (`owner()`): the cold key.
    pub owner: Address,
    /// Its operator (`operator()`): the address allowed to call it.
    pub operator: Address,
    /// The executor key's address, when one is configured.
    pub executor_key: Option<Address>,
    /// The relay identity's address, when one is configured.
    pub identity: Option<Address>,
}

/// A key set-up the bot refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRoleError {
    /// The relay identity holds funds (it must be fundless: it only signs headers).
    #[error(
        "chain `{chain}`: the relay identity key ({address}) holds {balance_wei} wei; it must be \
         fundless (use a fresh key for `submission.identity`)"
    )]
    IdentityFunded {
        /// Chain.
        chain: String,
        /// The identity's address.
        address: Address,
        /// Its balance.
        balance_wei: U256,
    },
    /// The executor key owns the executor contract (a leaked hot key could sweep it).
    #[error(
        "chain `{chain}`: the executor key ({address}) is the owner of the executor contract \
         {executor}; the owner must be a third, cold key"
    )]
    ExecutorKeyIsOwner {
        /// Chain.
        chain: String,
        /// The key's address.
        address: Address,
        /// The executor contract.
        executor: Address,
    },
    /// The relay identity owns the executor contract.
    #[error(
        "chain `{chain}`: the relay identity key ({address}) is the owner of the executor \
         contract {executor}; the owner must be a third, cold key"
    )]
    IdentityIsOwner {
        /// Chain.
        chain: String,
        /// The key's address.
        address: Address,
        /// The executor contract.
        executor: Address,
    },
    /// One key configured for two roles.
    #[error(
        "chain `{chain}`: the executor key and the relay identity are the same key ({address}); \
         each role needs its own key"
    )]
    SameKey {
        /// Chain.
        chain: String,
        /// The shared address.
        address: Address,
    },
    /// The chain could not be read.
    #[error("chain `{chain}`: checking key roles: {what} could not be read: {reason}")]
    Unreadable {
        /// Chain.
        chain: String,
        /// What was read.
        what: &'static str,
        /// Why it failed (no URL).
        reason: String,
    },
}

/// Checks the three roles on `chain` through `provider`: the identity holds nothing, neither hot
/// key owns `executor`, and the two hot keys differ.
///
/// # Errors
/// The first [`KeyRoleError`] found.
pub async fn check_key_roles<P: Provider>(
    provider: &P,
    chain: &str,
    executor: Address,
    executor_key: Option<Address>,
    identity: Option<Address>,
) -> Result<KeyRoles, KeyRoleError> {
    let unreadable = |what: &'static str| {
        move |e: alloy::contract::Error| KeyRoleError::Unreadable {
            chain: chain.to_owned(),
            what,
            reason: describe(&e.to_string()),
        }
    };
    if let (Some(a), Some(b)) = (executor_key, identity)
        && a == b
    {
        return Err(KeyRoleError::SameKey { chain: chain.to_owned(), address: a });
    }
    let contract = Executor::new(executor, provider);
    let owner = contract.owner().call().await.map_err(unreadable("the executor's owner()"))?;
    let operator =
        contract.operator().call().await.map_err(unreadable("the executor's operator()"))?;
    if let Some(address) = executor_key
        && address == owner
    {
        return Err(KeyRoleError::ExecutorKeyIsOwner {
            chain: chain.to_owned(),
            address,
            executor,
        });
    }
    if let Some(address) = identity {
        if address == owner {
            return Err(KeyRoleError::IdentityIsOwner {
                chain: chain.to_owned(),
                address,
                executor,
            });
        }
        let balance_wei =
            provider.get_balance(address).await.map_err(|e| KeyRoleError::Unreadable {
                chain: chain.to_owned(),
                what: "the identity's balance",
                reason: describe(&e.to_string()),
            })?;
        if !balance_wei.is_zero() {
            return Err(KeyRoleError::IdentityFunded {
                chain: chain.to_owned(),
                address,
                balance_wei,
            });
        }
    }
    Ok(KeyRoles { executor, owner, operator, executor_key, identity })
}

/// An error text cut short, with anything that looks like a URL removed (it may embed a key).
fn describe(text: &str) -> String {
    let kept: Vec<&str> =
        text.split_whitespace().map(|w| if w.contains("://") { "<url>" } else { w }).collect();
    let mut out = kept.join(" ");
    if out.len() > 300 {
        let mut cut = 300;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}
