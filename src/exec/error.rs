//! Errors of the execution stage. Outcomes (a relay's rejection, a miss, a fee refusal) are data
//! in their own modules, not errors; these are the failures of set-up and of local work.

use std::fmt;

use super::signer::KeyRole;

/// A key could not be loaded. Names the role and the source (keystore path and password
/// variable, or key variable); never the key or the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{role} from {location}: {kind}")]
pub struct SignerError {
    /// Which key.
    pub role: KeyRole,
    /// The source as configured (`keystore PATH (password in $VAR)` or `key in $VAR`).
    pub location: String,
    /// What went wrong.
    pub kind: SignerErrorKind,
}

/// Why a key could not be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerErrorKind {
    /// The environment variable (key or password) is unset or empty.
    EnvUnset,
    /// The key variable does not hold a valid 32-byte hex secp256k1 key.
    BadHexKey,
    /// No keystore file at the path.
    KeystoreMissing,
    /// The keystore file could not be read.
    KeystoreUnreadable,
    /// The keystore's MAC does not match: wrong password.
    WrongPassword,
    /// The file is not a valid encrypted keystore.
    KeystoreCorrupt,
}

impl fmt::Display for SignerErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EnvUnset => "the environment variable is unset or empty",
            Self::BadHexKey => "the variable does not hold a 32-byte hex private key",
            Self::KeystoreMissing => "no keystore file at that path",
            Self::KeystoreUnreadable => "the keystore file could not be read",
            Self::WrongPassword => "wrong keystore password",
            Self::KeystoreCorrupt => "not a valid encrypted keystore",
        })
    }
}

/// A transaction could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// `maxPriorityFeePerGas` above `maxFeePerGas`: nodes reject such a transaction.
    #[error("tx nonce {nonce}: priority fee {priority} wei above max fee {max} wei")]
    PriorityAboveMax {
        /// Nonce of the transaction.
        nonce: u64,
        /// The priority fee asked for.
        priority: u128,
        /// The max fee asked for.
        max: u128,
    },
    /// The signer failed.
    #[error("tx nonce {nonce}: signing failed: {reason}")]
    Signature {
        /// Nonce of the transaction.
        nonce: u64,
        /// The signer's reason.
        reason: String,
    },
}

/// A submitter could not be built from the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitSetupError {
    /// An endpoint is not a usable URL. Names the endpoint by role or relay name only.
    #[error("chain {chain}: {endpoint}: not a valid http(s) URL")]
    BadUrl {
        /// Chain name.
        chain: String,
        /// Which endpoint (`http_url`, `private_rpc_url`, or `relay NAME`).
        endpoint: String,
    },
    /// Something required by the submission mode is missing.
    #[error("chain {chain}: submission mode {mode} needs {what}")]
    Missing {
        /// Chain name.
        chain: String,
        /// The configured mode.
        mode: String,
        /// What is missing.
        what: &'static str,
    },
    /// The identity key could not be loaded.
    #[error("chain {chain}: {source}")]
    Identity {
        /// Chain name.
        chain: String,
        /// Why.
        source: SignerError,
    },
}

/// A read made while tracking inclusion failed; the tracker can simply be asked again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("inclusion tracking: {call}: {reason}")]
pub struct TrackError {
    /// The RPC that failed (`eth_getTransactionReceipt 0x…`, `balanceOf at block N`).
    pub call: String,
    /// The transport's or node's reason, with the endpoint URL removed.
    pub reason: String,
}
