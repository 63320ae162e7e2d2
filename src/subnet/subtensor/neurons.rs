//! The metagraph as subtensor's `NeuronInfoRuntimeApi_get_neurons_lite` returns it: a SCALE
//! `Vec<NeuronInfoLite>` (older runtimes wrap it once more in a `Vec<u8>`). The layout is the one
//! the Python SDK's `bt_decode.NeuronInfoLite` reads.

use parity_scale_codec::{Compact, Decode, Encode};

use crate::subnet::chain::{ChainError, Neuron};
use crate::subnet::wallet::ss58_encode;

/// Rao per TAO.
pub const RAO_PER_TAO: f64 = 1e9;

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct AxonInfo {
    pub block: u64,
    pub version: u32,
    pub ip: u128,
    pub port: u16,
    pub ip_type: u8,
    pub protocol: u8,
    pub placeholder1: u8,
    pub placeholder2: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PrometheusInfo {
    pub block: u64,
    pub version: u32,
    pub ip: u128,
    pub port: u16,
    pub ip_type: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct NeuronInfoLite {
    pub hotkey: [u8; 32],
    pub coldkey: [u8; 32],
    #[codec(compact)]
    pub uid: u16,
    #[codec(compact)]
    pub netuid: u16,
    pub active: bool,
    pub axon_info: AxonInfo,
    pub prometheus_info: PrometheusInfo,
    /// (coldkey, stake in rao) for every staker on this hotkey.
    pub stake: Vec<([u8; 32], Compact<u64>)>,
    #[codec(compact)]
    pub rank: u16,
    #[codec(compact)]
    pub emission: u64,
    #[codec(compact)]
    pub incentive: u16,
    #[codec(compact)]
    pub consensus: u16,
    #[codec(compact)]
    pub trust: u16,
    #[codec(compact)]
    pub validator_trust: u16,
    #[codec(compact)]
    pub dividends: u16,
    #[codec(compact)]
    pub last_update: u64,
    pub validator_permit: bool,
    #[codec(compact)]
    pub pruning_score: u16,
}

impl NeuronInfoLite {
    /// The axon's address as text: dotted IPv4 or IPv6, empty when never served.
    pub fn ip(&self) -> String {
        let a = &self.axon_info;
        match a.ip_type {
            4 => std::net::Ipv4Addr::from(a.ip as u32).to_string(),
            6 => std::net::Ipv6Addr::from(a.ip).to_string(),
            _ => String::new(),
        }
    }

    pub fn to_neuron(&self) -> Neuron {
        Neuron {
            uid: self.uid,
            hotkey: ss58_encode(&self.hotkey),
            coldkey: ss58_encode(&self.coldkey),
            stake: self.stake.iter().map(|(_, s)| s.0 as f64).sum::<f64>() / RAO_PER_TAO,
            ip: self.ip(),
            port: self.axon_info.port,
            validator_permit: self.validator_permit,
        }
    }
}

/// Decodes a `get_neurons_lite` answer, with or without the outer `Vec<u8>`.
pub fn decode_neurons(bytes: &[u8]) -> Result<Vec<NeuronInfoLite>, ChainError> {
    fn whole<T: Decode>(mut input: &[u8]) -> Option<T> {
        let v = T::decode(&mut input).ok()?;
        input.is_empty().then_some(v)
    }
    if let Some(v) = whole::<Vec<NeuronInfoLite>>(bytes) {
        return Ok(v);
    }
    whole::<Vec<u8>>(bytes)
        .and_then(|inner| whole::<Vec<NeuronInfoLite>>(&inner))
        .ok_or_else(|| {
            ChainError::Decode(format!(
                "get_neurons_lite: {} bytes that are not a Vec<NeuronInfoLite>",
                bytes.len()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(uid: u16) -> NeuronInfoLite {
        NeuronInfoLite {
            hotkey: [uid as u8 + 1; 32],
            coldkey: [0xc0; 32],
            uid,
            netuid: 62,
            active: true,
            axon_info: AxonInfo {
                block: 4_000_000,
                version: 10_002_000,
                ip: u32::from(std::net::Ipv4Addr::new(10, 0, 0, uid as u8)) as u128,
                port: 8091,
                ip_type: 4,
                protocol: 4,
                placeholder1: 0,
                placeholder2: 0,
            },
            prometheus_info: PrometheusInfo {
                block: 0,
                version: 0,
                ip: 0,
                port: 0,
                ip_type: 0,
            },
            stake: vec![
                ([0xc0; 32], Compact(1_500_000_000)),
                ([0xc1; 32], Compact(500_000_000)),
            ],
            rank: 1,
            emission: 2,
            incentive: 3,
            consensus: 4,
            trust: 5,
            validator_trust: 6,
            dividends: 7,
            last_update: 4_000_100,
            validator_permit: uid == 0,
            pruning_score: 65535,
        }
    }

    #[test]
    fn both_answer_shapes_decode() {
        let neurons = vec![sample(0), sample(1)];
        let plain = neurons.encode();
        assert_eq!(decode_neurons(&plain).unwrap(), neurons);
        let wrapped = plain.encode();
        assert_eq!(decode_neurons(&wrapped).unwrap(), neurons);
        assert!(decode_neurons(&plain[..plain.len() - 1]).is_err());
        let n = neurons[1].to_neuron();
        assert_eq!((n.ip.as_str(), n.port, n.stake), ("10.0.0.1", 8091, 2.0));
        assert!(!n.validator_permit);
    }
}
