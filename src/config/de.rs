//! Field deserializers whose error messages never echo the value.

use alloy::primitives::Address;
use serde::{Deserialize, Deserializer, de::Error as _};

/// Parses `0x` + 40 hex digits; a mixed-case address must carry a valid EIP-55 checksum.
pub(crate) fn parse_address(s: &str) -> Result<Address, &'static str> {
    let hex = s.strip_prefix("0x").ok_or("expected an address: `0x` followed by 40 hex digits")?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("expected an address: `0x` followed by 40 hex digits");
    }
    let mixed =
        hex.bytes().any(|b| b.is_ascii_lowercase()) && hex.bytes().any(|b| b.is_ascii_uppercase());
    if mixed {
        Address::parse_checksummed(s, None).map_err(|_| {
            "address fails its EIP-55 checksum (a typo?); copy it again or write it all lowercase"
        })
    } else {
        s.parse::<Address>().map_err(|_| "expected an address: `0x` followed by 40 hex digits")
    }
}

/// `deserialize_with` for an [`Address`] field.
pub(crate) fn address<'de, D: Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
    let s = String::deserialize(d)?;
    parse_address(&s).map_err(D::Error::custom)
}

/// `deserialize_with` for an optional [`Address`] field (use with `#[serde(default)]`).
pub(crate) fn opt_address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Address>, D::Error> {
    address(d).map(Some)
}
