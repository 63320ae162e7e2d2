//! Signed extrinsics, version 4: the mortal era, the signed extensions filled in from the
//! metadata's list, the signing payload (hashed with BLAKE2-256 beyond 256 bytes), and the
//! length-prefixed `0x84 ‖ MultiAddress::Id ‖ MultiSignature::Sr25519 ‖ extra ‖ call`.

use parity_scale_codec::{Compact, Encode};

use super::runtime::{Arg, Runtime, blake2};
use crate::subnet::chain::ChainError;
use crate::subnet::wallet::Keypair;

/// A mortal era: valid for `period` blocks (a power of two in 4..=65536) from `birth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Era {
    pub period: u64,
    pub phase: u64,
}

impl Era {
    /// The era that starts at block `current` and lasts about `period` blocks (rounded up to a
    /// power of two, as substrate does).
    pub fn mortal(period: u64, current: u64) -> Era {
        let period = period.clamp(4, 1 << 16).next_power_of_two();
        let quantize = (period >> 12).max(1);
        let phase = current % period / quantize * quantize;
        Era { period, phase }
    }

    /// The two bytes in the extrinsic.
    pub fn encode(&self) -> [u8; 2] {
        let quantize = (self.period >> 12).max(1);
        let low = (self.period.trailing_zeros() - 1).clamp(1, 15) as u64;
        let high = (self.phase / quantize) << 4;
        ((low | high) as u16).to_le_bytes()
    }

    /// The first block this era covers, given any block within it.
    pub fn birth(&self, current: u64) -> u64 {
        (current.max(self.phase) - self.phase) / self.period * self.period + self.phase
    }
}

/// What the signer supplies beyond the call.
#[derive(Debug, Clone)]
pub struct SigningContext {
    pub spec_version: u32,
    pub transaction_version: u32,
    pub genesis_hash: [u8; 32],
    pub era: Era,
    /// The hash of the era's birth block.
    pub birth_hash: [u8; 32],
    pub nonce: u32,
    pub tip: u64,
}

/// The `extra` and `additional` bytes of every signed extension, in metadata order.
pub fn extensions(rt: &Runtime, ctx: &SigningContext) -> Result<(Vec<u8>, Vec<u8>), ChainError> {
    let (mut extra, mut additional) = (Vec::new(), Vec::new());
    for ext in rt.extensions() {
        let (e, a) = match ext.identifier.as_str() {
            "CheckMortality" | "CheckEra" => (
                Arg::Raw(ctx.era.encode().to_vec()),
                Arg::Bytes(ctx.birth_hash.to_vec()),
            ),
            "CheckNonce" => (Arg::U(ctx.nonce as u128), Arg::Unit),
            "ChargeTransactionPayment" => (Arg::U(ctx.tip as u128), Arg::Unit),
            "CheckSpecVersion" => (Arg::Unit, Arg::U(ctx.spec_version as u128)),
            "CheckTxVersion" => (Arg::Unit, Arg::U(ctx.transaction_version as u128)),
            "CheckGenesis" => (Arg::Unit, Arg::Bytes(ctx.genesis_hash.to_vec())),
            // The metadata hash is not checked (mode Disabled, hash None), as the Python SDK does.
            "CheckMetadataHash" => (Arg::Variant("Disabled"), Arg::Variant("None")),
            _ => (Arg::Unit, Arg::Unit),
        };
        let fill = |ty, arg: &Arg, out: &mut Vec<u8>| {
            rt.encode(ty, arg, out).map_err(|e| {
                ChainError::Runtime(format!(
                    "signed extension {} needs data this client cannot fill: {e}",
                    ext.identifier
                ))
            })
        };
        fill(ext.extra_ty, &e, &mut extra)?;
        fill(ext.additional_ty, &a, &mut additional)?;
    }
    Ok((extra, additional))
}

/// The bytes the signer signs: `call ‖ extra ‖ additional`, or their BLAKE2-256 when longer
/// than 256 bytes.
pub fn signing_payload(call: &[u8], extra: &[u8], additional: &[u8]) -> Vec<u8> {
    let payload = [call, extra, additional].concat();
    if payload.len() > 256 {
        blake2::<32>(&payload).to_vec()
    } else {
        payload
    }
}

/// The extrinsic from its parts and a signature over [`signing_payload`].
pub fn assemble(public: &[u8; 32], signature: &[u8; 64], extra: &[u8], call: &[u8]) -> Vec<u8> {
    let mut body = vec![0x84, 0x00]; // signed, version 4; MultiAddress::Id
    body.extend_from_slice(public);
    body.push(0x01); // MultiSignature::Sr25519
    body.extend_from_slice(signature);
    body.extend_from_slice(extra);
    body.extend_from_slice(call);
    let mut out = Compact(body.len() as u32).encode();
    out.extend(body);
    out
}

/// Signs `call` with `signer` and returns the extrinsic.
pub fn sign(
    rt: &Runtime,
    call: &[u8],
    ctx: &SigningContext,
    signer: &Keypair,
) -> Result<Vec<u8>, ChainError> {
    let (extra, additional) = extensions(rt, ctx)?;
    let signature = signer.sign(&signing_payload(call, &extra, &additional));
    Ok(assemble(&signer.public(), &signature, &extra, call))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mortal_eras_encode_like_substrate() {
        // Period 64 gives low bits 5 (log2 64 - 1), phase 42 gives 42 << 4 = 0x2a0: 0x02a5.
        let era = Era::mortal(64, 42);
        assert_eq!(
            era,
            Era {
                period: 64,
                phase: 42
            }
        );
        assert_eq!(era.encode(), [0xa5, 0x02]);
        assert_eq!(era.birth(42), 42);
        assert_eq!(era.birth(100), 42);
        // A period that is not a power of two is rounded up; large periods quantise the phase.
        assert_eq!(Era::mortal(100, 5).period, 128);
        let long = Era::mortal(1 << 16, 70_001);
        assert_eq!(long.phase % 16, 0);
        assert!(long.birth(70_001) <= 70_001);
    }

    #[test]
    fn long_payloads_are_hashed() {
        let short = signing_payload(&[1; 100], &[2; 10], &[3; 10]);
        assert_eq!(short.len(), 120);
        let long = signing_payload(&[1; 250], &[2; 10], &[3; 10]);
        assert_eq!(
            long,
            blake2::<32>(&[[1u8; 250].as_slice(), &[2; 10], &[3; 10]].concat())
        );
    }
}
