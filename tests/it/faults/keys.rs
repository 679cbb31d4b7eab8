//! Keys by role (RELIABILITY.md security rules) against a private anvil node with a deployed
//! executor: a fundless identity, a gas-only executor key and a third key owning the contract
//! pass; an identity holding funds, an executor key that owns the contract, an identity that
//! owns it, and one key in two roles are each refused with a reason naming the role.

use alloy::{
    network::EthereumWallet,
    primitives::Address,
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use cantilever::{
    app::{KeyRoleError, check_key_roles},
    contracts::Executor,
    devnet::{AnvilNode, AnvilOptions},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_roles_are_checked_on_chain_before_start() {
    let node = AnvilNode::spawn(&AnvilOptions { chain_id: 31337, ..AnvilOptions::default() })
        .expect("anvil must be installed (npm install --prefix tools)");
    let keys = node.keys().to_vec();
    let (owner, operator, funded) = (keys[0].address(), keys[2].address(), keys[3].address());
    let wallet: DynProvider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(keys[0].clone()))
        .connect_http(node.http_url().parse().unwrap())
        .erased();
    let executor = *Executor::deploy(wallet.clone(), operator).await.unwrap().address();
    let fresh = PrivateKeySigner::random().address();
    let check = |key: Option<Address>, identity: Option<Address>| {
        let p = wallet.clone();
        async move { check_key_roles(&p, "devnet", executor, key, identity).await }
    };

    // Three keys, three roles.
    let roles = check(Some(operator), Some(fresh)).await.unwrap();
    assert_eq!((roles.owner, roles.operator), (owner, operator));
    assert_eq!((roles.executor_key, roles.identity), (Some(operator), Some(fresh)));
    // No identity configured (raw submission) is fine too.
    assert!(check(Some(operator), None).await.is_ok());

    let err = check(Some(operator), Some(funded)).await.unwrap_err();
    let KeyRoleError::IdentityFunded { address, balance_wei, .. } = &err else { panic!("{err}") };
    assert_eq!(*address, funded);
    assert_eq!(*balance_wei, wallet.get_balance(funded).await.unwrap());
    assert!(err.to_string().contains("must be fundless"), "{err}");

    let err = check(Some(owner), Some(fresh)).await.unwrap_err();
    assert_eq!(
        err,
        KeyRoleError::ExecutorKeyIsOwner { chain: "devnet".into(), address: owner, executor }
    );
    assert!(err.to_string().contains("third, cold key"), "{err}");

    let err = check(Some(operator), Some(owner)).await.unwrap_err();
    assert!(matches!(err, KeyRoleError::IdentityIsOwner { address, .. } if address == owner));

    let err = check(Some(fresh), Some(fresh)).await.unwrap_err();
    assert_eq!(err, KeyRoleError::SameKey { chain: "devnet".into(), address: fresh });

    // Errors name addresses, never a key.
    for k in &keys[..4] {
        let secret = alloy::primitives::hex::encode(k.to_bytes());
        assert!(!err.to_string().contains(&secret));
    }
}
