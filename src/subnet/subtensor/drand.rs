//! Timelocked weights for commit-reveal subnets (commit-reveal version 4): the payload the
//! chain decrypts, encrypted to a drand quicknet round (identity-based encryption on
//! BLS12-381 through the `timelock` crate, AES-GCM for the body), and the round the reveal
//! waits for. The chain reveals the weights itself once the round's signature is on chain, so
//! there is no reveal step here.
//!
//! The constants and the round arithmetic are the ones of `bittensor-drand` 2.0.0, the
//! Python SDK's reference implementation; `tests/it/subtensor_cr.rs` checks both against it.

use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use parity_scale_codec::Encode;
use rand_core::{CryptoRng, RngCore};
use sha2::Digest;
use timelock::curves::drand::TinyBLS381;
use timelock::ibe::fullident::Identity;
use timelock::stream_ciphers::AESGCMStreamCipherProvider;
use timelock::tlock::{EngineBLS, TLECiphertext, tld, tle};

use crate::subnet::chain::ChainError;

/// The quicknet beacon's public key (G2, compressed): the chain's drand pallet verifies
/// pulses against it, so weights encrypted to it are revealed there.
pub const QUICKNET_PUBLIC_KEY: &str = "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a";
/// Quicknet's first round, in Unix seconds.
pub const QUICKNET_GENESIS: u64 = 1_692_803_367;
/// Seconds between quicknet rounds.
pub const QUICKNET_PERIOD: u64 = 3;
/// Blocks past the predicted reveal block the round is aimed at, so its pulse has reached
/// the chain by then (the SDK's margin).
pub const SECURITY_BLOCKS: u64 = 3;
/// The commit-reveal version the SDK sends with timelocked weights.
pub const COMMIT_REVEAL_VERSION: u16 = 4;

/// What the chain decrypts at the reveal round: SCALE-encoded in this field order.
#[derive(Debug, Clone, PartialEq, Eq, Encode, parity_scale_codec::Decode)]
pub struct WeightsPayload {
    /// The committing hotkey's public key (32 bytes).
    pub hotkey: Vec<u8>,
    pub uids: Vec<u16>,
    pub values: Vec<u16>,
    pub version_key: u64,
}

/// The drand round whose pulse reveals weights the chain reveals at `reveal_block`, seen from
/// `current_block` at `now` (Unix seconds) with blocks of `block_time` seconds: the round due
/// `SECURITY_BLOCKS` blocks after the reveal block, rounded down, at least 1.
pub fn reveal_round(reveal_block: u64, current_block: u64, block_time: f64, now: f64) -> u64 {
    let blocks = (reveal_block + SECURITY_BLOCKS).saturating_sub(current_block);
    let at = now + blocks as f64 * block_time;
    // A negative quotient saturates to 0 in the cast; round 0 does not exist.
    let round = ((at - QUICKNET_GENESIS as f64) / QUICKNET_PERIOD as f64).floor() as u64;
    round.max(1)
}

/// When `round`'s pulse is published (Unix seconds).
pub fn round_time(round: u64) -> u64 {
    QUICKNET_GENESIS + round * QUICKNET_PERIOD
}

/// The identity a round's signature opens: SHA-256 of the round number, big-endian.
fn identity(round: u64) -> Identity {
    let digest = sha2::Sha256::digest(round.to_be_bytes());
    Identity::new(b"", vec![digest.to_vec()])
}

fn crypto_err(what: &str, e: impl std::fmt::Debug) -> ChainError {
    ChainError::Timelock(format!("{what}: {e:?}"))
}

/// `plaintext` encrypted so that quicknet's signature of `round` decrypts it: the compressed
/// ark-serialize encoding of the ciphertext, as the chain stores and decodes it.
pub fn encrypt<R: RngCore + CryptoRng>(
    plaintext: &[u8],
    round: u64,
    rng: &mut R,
) -> Result<Vec<u8>, ChainError> {
    let key = hex::decode(QUICKNET_PUBLIC_KEY).map_err(|e| crypto_err("public key", e))?;
    let key = <TinyBLS381 as EngineBLS>::PublicKeyGroup::deserialize_compressed(&key[..])
        .map_err(|e| crypto_err("public key", e))?;
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let ct = tle::<TinyBLS381, AESGCMStreamCipherProvider, _>(
        key,
        secret,
        plaintext,
        identity(round),
        &mut *rng,
    )
    .map_err(|e| crypto_err("encryption", e))?;
    let mut out = Vec::new();
    ct.serialize_compressed(&mut out)
        .map_err(|e| crypto_err("ciphertext", e))?;
    Ok(out)
}

/// Opens `ciphertext` with a round's signature (48 bytes, compressed G1), as the chain does at
/// the reveal.
pub fn decrypt(ciphertext: &[u8], signature: &[u8]) -> Result<Vec<u8>, ChainError> {
    let ct = TLECiphertext::<TinyBLS381>::deserialize_compressed(ciphertext)
        .map_err(|e| crypto_err("ciphertext", e))?;
    let sig = <TinyBLS381 as EngineBLS>::SignatureGroup::deserialize_compressed(signature)
        .map_err(|e| crypto_err("signature", e))?;
    tld::<TinyBLS381, AESGCMStreamCipherProvider>(ct, sig).map_err(|e| crypto_err("decryption", e))
}

/// The timelocked commit of `payload` for `round`.
pub fn commit<R: RngCore + CryptoRng>(
    payload: &WeightsPayload,
    round: u64,
    rng: &mut R,
) -> Result<Vec<u8>, ChainError> {
    encrypt(&payload.encode(), round, rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parity_scale_codec::Decode;

    /// Quicknet's published pulse for round 1000 (public chain data).
    const ROUND: u64 = 1000;
    const SIGNATURE: &str = "b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125e342b73a8dd2bacbe47e4b6b63ed5e39";

    #[test]
    fn a_commit_opens_with_its_rounds_signature_only() {
        let payload = WeightsPayload {
            hotkey: vec![7; 32],
            uids: vec![0, 1, 3],
            values: vec![9362, 18724, 65535],
            version_key: 7,
        };
        let ct = commit(&payload, ROUND, &mut rand_core::OsRng).unwrap();
        let sig = hex::decode(SIGNATURE).unwrap();
        let plain = decrypt(&ct, &sig).unwrap();
        assert_eq!(WeightsPayload::decode(&mut &plain[..]).unwrap(), payload);
        // Another round's identity: the same signature opens nothing.
        let other = commit(&payload, ROUND + 1, &mut rand_core::OsRng).unwrap();
        assert!(decrypt(&other, &sig).is_err());
        // Two commits of the same payload differ (fresh randomness each time).
        assert_ne!(ct, commit(&payload, ROUND, &mut rand_core::OsRng).unwrap());
    }

    #[test]
    fn the_reveal_round_follows_the_clock_and_the_blocks() {
        // 4 rounds per 12 s block; the round of `now` itself when the block is due now.
        let now = round_time(5000) as f64 + 1.0;
        assert_eq!(reveal_round(100, 103, 12.0, now), 5000);
        assert_eq!(reveal_round(101, 103, 12.0, now), 5004);
        assert_eq!(reveal_round(100, 200, 12.0, now), 5000);
        assert_eq!(reveal_round(0, 0, 12.0, 0.0), 1);
    }
}
