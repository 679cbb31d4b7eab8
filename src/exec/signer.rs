//! Keys and synchronous signing.
//!
//! A [`SignerRef`] from the configuration names where a key lives (an encrypted keystore plus the
//! environment variable holding its password, or an environment variable holding a hex key);
//! [`load_signer`] reads it once at start-up. Errors name the role and the source (path or
//! variable name), never the key or the password: `PrivateKeySigner`'s own `Debug` prints only
//! its address.
//!
//! [`TxSigner`] signs EIP-1559 transactions synchronously on the engine thread (no `await`, no
//! RPC): alloy's consensus types build, hash and 2718-encode the transaction; the ECDSA step runs
//! on libsecp256k1 (the `secp256k1` crate, RFC 6979 nonces like k256, so the signature is
//! byte-identical to alloy's `PrivateKeySigner` and about twice as fast). The k256 path stays
//! available as [`SigningBackend::K256`] for comparison.

use std::fmt;

use alloy::{
    consensus::{SignableTransaction, Signed, TxEip1559},
    eips::eip2718::Encodable2718,
    network::TxSignerSync,
    primitives::{Address, B256, Bytes, Signature, TxKind, U256, keccak256},
    signers::local::PrivateKeySigner,
};
use secp256k1::{Message, SECP256K1, SecretKey};

use super::error::{SignError, SignerError, SignerErrorKind};
use crate::config::SignerRef;

/// What a key is used for; named in every error about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRole {
    /// The fundless relay identity that signs `X-Flashbots-Signature` headers.
    Identity,
    /// The gas-only executor EOA that signs the bot's transactions.
    Executor,
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Identity => "identity key",
            Self::Executor => "executor key",
        })
    }
}

/// Loads the key `source` points at, reading variables from the process environment.
///
/// # Errors
/// [`SignerError`] naming `role` and the keystore path or variable name: variable unset or
/// empty, not a 32-byte hex key, keystore unreadable, wrong password or corrupt. Never contains
/// the key or the password.
pub fn load_signer(source: &SignerRef, role: KeyRole) -> Result<PrivateKeySigner, SignerError> {
    load_signer_with(source, role, |name| std::env::var(name).ok())
}

/// [`load_signer`] with the environment lookup supplied by the caller (tests, secret stores).
///
/// # Errors
/// As [`load_signer`].
pub fn load_signer_with(
    source: &SignerRef,
    role: KeyRole,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PrivateKeySigner, SignerError> {
    let fail = |kind| SignerError { role, location: source.to_string(), kind };
    let read = |var: &str| env(var).filter(|v| !v.trim().is_empty());
    match source {
        SignerRef::Env { key_env } => {
            let key = read(key_env.as_str()).ok_or_else(|| fail(SignerErrorKind::EnvUnset))?;
            // The parse error of alloy may quote a character of the input: map it to a fixed
            // message so no part of the key can reach a log.
            key.trim().parse::<PrivateKeySigner>().map_err(|_| fail(SignerErrorKind::BadHexKey))
        }
        SignerRef::Keystore { path, password_env } => {
            let password =
                read(password_env.as_str()).ok_or_else(|| fail(SignerErrorKind::EnvUnset))?;
            if !path.is_file() {
                return Err(fail(SignerErrorKind::KeystoreMissing));
            }
            PrivateKeySigner::decrypt_keystore(path, password.as_bytes())
                .map_err(|e| fail(keystore_error_kind(&e)))
        }
    }
}

/// Classifies a keystore failure without keeping the library's message.
fn keystore_error_kind(e: &alloy::signers::local::LocalSignerError) -> SignerErrorKind {
    use alloy::signers::local::LocalSignerError as E;
    match e {
        E::EthKeystoreError(inner) if inner.to_string().contains("Mac Mismatch") => {
            SignerErrorKind::WrongPassword
        }
        E::EthKeystoreError(inner) if inner.to_string().starts_with("IO:") => {
            SignerErrorKind::KeystoreUnreadable
        }
        E::IoError(_) => SignerErrorKind::KeystoreUnreadable,
        _ => SignerErrorKind::KeystoreCorrupt,
    }
}

/// The fields of one EIP-1559 transaction, everything but the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxParams {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Sender nonce (reserved from the [`NonceManager`](super::NonceManager)).
    pub nonce: u64,
    /// Called contract (the executor) or recipient.
    pub to: Address,
    /// Calldata.
    pub input: Bytes,
    /// Gas limit ([`GasMargin::gas_limit`](super::GasMargin::gas_limit)).
    pub gas_limit: u64,
    /// `maxFeePerGas` in wei.
    pub max_fee_per_gas: u128,
    /// `maxPriorityFeePerGas` in wei.
    pub max_priority_fee_per_gas: u128,
    /// Native value sent, in wei.
    pub value: U256,
}

/// A signed, 2718-encoded EIP-1559 transaction ready for `eth_sendRawTransaction` or a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    /// The EIP-2718 encoding (`0x02 ‖ rlp(...)`), what nodes and relays take.
    pub raw: Bytes,
    /// The transaction hash (keccak256 of `raw`).
    pub hash: B256,
    /// The signer's address.
    pub from: Address,
    /// Sender nonce.
    pub nonce: u64,
    /// Chain id.
    pub chain_id: u64,
    /// Gas limit.
    pub gas_limit: u64,
    /// `maxFeePerGas` in wei.
    pub max_fee_per_gas: u128,
    /// `maxPriorityFeePerGas` in wei.
    pub max_priority_fee_per_gas: u128,
}

impl SignedTx {
    /// The most this transaction can cost in gas: `gas_limit × max_fee_per_gas`, in wei.
    pub fn worst_case_gas_cost_wei(&self) -> U256 {
        super::fees::worst_case_gas_cost_wei(self.gas_limit, self.max_fee_per_gas)
    }
}

/// Which ECDSA implementation signs (the result is the same signature either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningBackend {
    /// libsecp256k1 through the `secp256k1` crate (the default, fastest).
    Libsecp256k1,
    /// k256 through alloy's `PrivateKeySigner` (the reference).
    K256,
}

/// A local key that signs transactions synchronously (the executor EOA on the engine thread).
///
/// `Debug` shows the address only.
#[derive(Clone)]
pub struct TxSigner {
    key: PrivateKeySigner,
    /// The same key for libsecp256k1 (`None` only if libsecp256k1 refused a key k256 accepted,
    /// which a valid secp256k1 scalar never is: the k256 path signs then).
    fast: Option<SecretKey>,
    address: Address,
}

impl fmt::Debug for TxSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxSigner").field("address", &self.address).finish_non_exhaustive()
    }
}

impl TxSigner {
    /// Wraps a loaded key.
    pub fn new(key: PrivateKeySigner) -> Self {
        let fast = SecretKey::from_byte_array(key.to_bytes().0).ok();
        let address = key.address();
        Self { key, fast, address }
    }

    /// The signing address.
    pub const fn address(&self) -> Address {
        self.address
    }

    /// The underlying key (for alloy APIs that take a signer).
    pub const fn as_key(&self) -> &PrivateKeySigner {
        &self.key
    }

    /// Builds and signs an EIP-1559 transaction. Synchronous, no I/O: about one ECDSA signature
    /// (libsecp256k1).
    ///
    /// # Errors
    /// [`SignError`] when the priority fee exceeds the max fee, or the signature fails.
    pub fn sign_eip1559(&self, p: &TxParams) -> Result<SignedTx, SignError> {
        self.sign_eip1559_with(p, SigningBackend::Libsecp256k1)
    }

    /// [`TxSigner::sign_eip1559`] on a chosen ECDSA backend (benches and equivalence tests).
    ///
    /// # Errors
    /// As [`TxSigner::sign_eip1559`].
    pub fn sign_eip1559_with(
        &self,
        p: &TxParams,
        backend: SigningBackend,
    ) -> Result<SignedTx, SignError> {
        if p.max_priority_fee_per_gas > p.max_fee_per_gas {
            return Err(SignError::PriorityAboveMax {
                nonce: p.nonce,
                priority: p.max_priority_fee_per_gas,
                max: p.max_fee_per_gas,
            });
        }
        let mut tx = TxEip1559 {
            chain_id: p.chain_id,
            nonce: p.nonce,
            gas_limit: p.gas_limit,
            max_fee_per_gas: p.max_fee_per_gas,
            max_priority_fee_per_gas: p.max_priority_fee_per_gas,
            to: TxKind::Call(p.to),
            value: p.value,
            access_list: Default::default(),
            input: p.input.clone(),
        };
        let signature = match (backend, &self.fast) {
            (SigningBackend::Libsecp256k1, Some(sk)) => sign_prehash(sk, &tx.signature_hash()),
            _ => self
                .key
                .sign_transaction_sync(&mut tx)
                .map_err(|e| SignError::Signature { nonce: p.nonce, reason: e.to_string() })?,
        };
        // Encoded once; the hash is of the encoding (`into_signed` would encode a second time).
        let raw = Signed::new_unhashed(tx, signature).encoded_2718();
        let hash = keccak256(&raw);
        Ok(SignedTx {
            raw: Bytes::from(raw),
            hash,
            from: self.address,
            nonce: p.nonce,
            chain_id: p.chain_id,
            gas_limit: p.gas_limit,
            max_fee_per_gas: p.max_fee_per_gas,
            max_priority_fee_per_gas: p.max_priority_fee_per_gas,
        })
    }
}

/// ECDSA over a 32-byte prehash with libsecp256k1: RFC 6979 nonce, low `s`, the recovery id's
/// parity bit as `y_parity` (what k256's `sign_prehash_recoverable` gives for the same key).
fn sign_prehash(sk: &SecretKey, hash: &B256) -> Signature {
    let sig = SECP256K1.sign_ecdsa_recoverable(Message::from_digest(hash.0), sk);
    let (recid, bytes) = sig.serialize_compact();
    let r = U256::from_be_slice(&bytes[..32]);
    let s = U256::from_be_slice(&bytes[32..]);
    Signature::new(r, s, i32::from(recid) & 1 == 1)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use alloy::{
        consensus::{Transaction as _, TxEnvelope},
        eips::eip2718::Decodable2718,
        signers::k256::elliptic_curve::rand_core::OsRng,
    };

    use super::*;
    use crate::config::EnvVarName;

    const KEY_HEX: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
    const PASSWORD: &str = "correct horse battery staple";

    fn var(name: &str) -> EnvVarName {
        EnvVarName::new(name).unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    fn key_bytes() -> Vec<u8> {
        alloy::hex::decode(KEY_HEX).unwrap()
    }

    /// Asserts neither the key (any case, with or without 0x) nor the password is in `text`.
    fn assert_no_secret(text: &str) {
        let bare = KEY_HEX.trim_start_matches("0x");
        assert!(!text.to_lowercase().contains(bare), "key leaked: {text}");
        assert!(!text.contains(&bare[..16]), "part of the key leaked: {text}");
        assert!(!text.contains(PASSWORD), "password leaked: {text}");
        assert!(!text.contains("horse"), "part of the password leaked: {text}");
    }

    fn keystore(dir: &std::path::Path) -> PathBuf {
        let (signer, _) = PrivateKeySigner::encrypt_keystore(
            dir,
            &mut OsRng,
            key_bytes(),
            PASSWORD,
            Some("executor.json"),
        )
        .unwrap();
        assert_eq!(signer.to_bytes().as_slice(), key_bytes().as_slice());
        dir.join("executor.json")
    }

    #[test]
    fn keystore_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = keystore(dir.path());
        let source = SignerRef::Keystore { path, password_env: var("EXEC_PW") };
        let signer =
            load_signer_with(&source, KeyRole::Executor, env(&[("EXEC_PW", PASSWORD)])).unwrap();
        let expected: PrivateKeySigner = KEY_HEX.parse().unwrap();
        assert_eq!(signer.address(), expected.address());
        assert_no_secret(&format!("{signer:?}"));
    }

    #[test]
    fn keystore_errors_name_the_source_not_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = keystore(dir.path());
        let source = SignerRef::Keystore { path: path.clone(), password_env: var("EXEC_PW") };

        let wrong = load_signer_with(&source, KeyRole::Executor, env(&[("EXEC_PW", "not it")]))
            .unwrap_err();
        assert_eq!(wrong.kind, SignerErrorKind::WrongPassword);
        let text = wrong.to_string();
        assert!(text.contains("executor key"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("EXEC_PW"), "{text}");
        assert!(!text.contains("not it"), "{text}");
        assert_no_secret(&format!("{text} {wrong:?}"));

        let unset = load_signer_with(&source, KeyRole::Executor, env(&[])).unwrap_err();
        assert_eq!(unset.kind, SignerErrorKind::EnvUnset);
        assert!(unset.to_string().contains("EXEC_PW"));

        let missing = SignerRef::Keystore {
            path: dir.path().join("nope.json"),
            password_env: var("EXEC_PW"),
        };
        let e = load_signer_with(&missing, KeyRole::Identity, env(&[("EXEC_PW", PASSWORD)]))
            .unwrap_err();
        assert_eq!(e.kind, SignerErrorKind::KeystoreMissing);
        assert!(e.to_string().contains("nope.json") && e.to_string().contains("identity key"));
        assert_no_secret(&format!("{e} {e:?}"));

        let corrupt_path = dir.path().join("corrupt.json");
        std::fs::write(&corrupt_path, "{\"not\": \"a keystore\"}").unwrap();
        let corrupt = SignerRef::Keystore { path: corrupt_path, password_env: var("EXEC_PW") };
        let e = load_signer_with(&corrupt, KeyRole::Executor, env(&[("EXEC_PW", PASSWORD)]))
            .unwrap_err();
        assert_eq!(e.kind, SignerErrorKind::KeystoreCorrupt);
        assert_no_secret(&format!("{e} {e:?}"));
    }

    #[test]
    fn env_key_loads_with_or_without_prefix() {
        let expected: PrivateKeySigner = KEY_HEX.parse().unwrap();
        let source = SignerRef::Env { key_env: var("EXEC_KEY") };
        for value in [KEY_HEX, KEY_HEX.trim_start_matches("0x"), &format!(" {KEY_HEX}\n")] {
            let s =
                load_signer_with(&source, KeyRole::Executor, env(&[("EXEC_KEY", value)])).unwrap();
            assert_eq!(s.address(), expected.address());
        }
    }

    #[test]
    fn env_key_errors_never_echo_the_value() {
        let source = SignerRef::Env { key_env: var("EXEC_KEY") };
        // One bad character in an otherwise real key: the error must not quote it or the rest.
        let bad = format!("{}g", &KEY_HEX[..KEY_HEX.len() - 1]);
        let e =
            load_signer_with(&source, KeyRole::Executor, env(&[("EXEC_KEY", &bad)])).unwrap_err();
        assert_eq!(e.kind, SignerErrorKind::BadHexKey);
        let text = format!("{e} {e:?}");
        assert!(text.contains("EXEC_KEY"), "{text}");
        assert!(!text.contains("'g'"), "{text}");
        assert_no_secret(&text);

        let short = load_signer_with(&source, KeyRole::Executor, env(&[("EXEC_KEY", "0x1234")]))
            .unwrap_err();
        assert_eq!(short.kind, SignerErrorKind::BadHexKey);
        let empty =
            load_signer_with(&source, KeyRole::Executor, env(&[("EXEC_KEY", " ")])).unwrap_err();
        assert_eq!(empty.kind, SignerErrorKind::EnvUnset);
    }

    /// libsecp256k1 and k256 (alloy's `PrivateKeySigner`) give the same bytes: random keys,
    /// nonces, fees, values and calldata.
    #[test]
    fn libsecp256k1_signatures_are_byte_identical_to_k256() {
        let mut rng = fastrand::Rng::with_seed(0x5ec9_256b);
        for i in 0..300u32 {
            let signer = TxSigner::new(PrivateKeySigner::random());
            let mut input = vec![0u8; rng.usize(0..400)];
            rng.fill(&mut input);
            let max_fee = u128::from(rng.u64(1..u64::MAX));
            let params = TxParams {
                chain_id: rng.u64(1..100_000),
                nonce: rng.u64(..),
                to: Address::from_slice(&rng.u128(..).to_be_bytes().repeat(2)[..20]),
                input: Bytes::from(input),
                gas_limit: rng.u64(21_000..30_000_000),
                max_fee_per_gas: max_fee,
                max_priority_fee_per_gas: rng.u128(0..=max_fee),
                value: U256::from(rng.u128(..)),
            };
            let fast = signer.sign_eip1559_with(&params, SigningBackend::Libsecp256k1).unwrap();
            let reference = signer.sign_eip1559_with(&params, SigningBackend::K256).unwrap();
            assert_eq!(fast, reference, "case {i}");
            assert_eq!(signer.sign_eip1559(&params).unwrap(), fast, "default backend, case {i}");
            // And what alloy itself builds from the same fields.
            let mut tx = TxEip1559 {
                chain_id: params.chain_id,
                nonce: params.nonce,
                gas_limit: params.gas_limit,
                max_fee_per_gas: params.max_fee_per_gas,
                max_priority_fee_per_gas: params.max_priority_fee_per_gas,
                to: TxKind::Call(params.to),
                value: params.value,
                access_list: Default::default(),
                input: params.input.clone(),
            };
            let sig = signer.as_key().sign_transaction_sync(&mut tx).unwrap();
            let envelope = TxEnvelope::from(tx.into_signed(sig));
            assert_eq!(fast.raw.as_ref(), envelope.encoded_2718().as_slice(), "case {i}");
            assert_eq!(fast.hash, *envelope.tx_hash(), "case {i}");
        }
    }

    #[test]
    fn signer_debug_shows_the_address_only() {
        let signer = TxSigner::new(KEY_HEX.parse().unwrap());
        let text = format!("{signer:?}");
        assert!(text.contains(&format!("{:?}", signer.address())), "{text}");
        assert_no_secret(&text);
    }

    #[test]
    fn signs_a_decodable_eip1559_tx() {
        let signer = TxSigner::new(KEY_HEX.parse().unwrap());
        let params = TxParams {
            chain_id: 138,
            nonce: 7,
            to: Address::repeat_byte(0x11),
            input: Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]),
            gas_limit: 300_000,
            max_fee_per_gas: 30_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            value: U256::from(5u64),
        };
        let signed = signer.sign_eip1559(&params).unwrap();
        assert_eq!(signed.raw[0], 0x02, "EIP-1559 type byte");
        assert_eq!(signed.hash, keccak256(&signed.raw));
        assert_eq!(signed.worst_case_gas_cost_wei(), U256::from(300_000u64 * 30_000_000_000));
        let decoded = TxEnvelope::decode_2718(&mut signed.raw.as_ref()).unwrap();
        let inner = decoded.as_eip1559().unwrap();
        let from = inner.signature().recover_address_from_prehash(&inner.signature_hash());
        assert_eq!(from.unwrap(), signer.address());
        assert_eq!(decoded.nonce(), 7);
        assert_eq!(decoded.chain_id(), Some(138));
        assert_eq!(decoded.to(), Some(Address::repeat_byte(0x11)));
        assert_eq!(decoded.input().as_ref(), &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(decoded.max_fee_per_gas(), 30_000_000_000);
        assert_eq!(decoded.max_priority_fee_per_gas(), Some(1_000_000_000));
        assert_eq!(decoded.value(), U256::from(5u64));

        let bad = TxParams { max_priority_fee_per_gas: 31_000_000_000, ..params };
        assert!(matches!(signer.sign_eip1559(&bad), Err(SignError::PriorityAboveMax { .. })));
    }
}
