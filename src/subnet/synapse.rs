//! Synapses as the Bittensor SDK serialises them: the common fields (`name`, `timeout`, sizes,
//! `dendrite` and `axon` terminal info, `computed_body_hash`) plus each synapse's own, so a
//! Python `bt.Synapse` subclass with the same fields round-trips. Also the HTTP headers a
//! dendrite sends and the body hash it signs.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha3::{Digest, Sha3_256};

/// Version integer sent in `bt_header_dendrite_version` (newer than 7.2.0, so axons apply the
/// time-window nonce rule).
pub const PROTOCOL_VERSION: i64 = 10_005_000;

/// One side of a call (`TerminalInfo` in the SDK). Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TerminalInfo {
    pub status_code: Option<i64>,
    pub status_message: Option<String>,
    pub process_time: Option<f64>,
    pub ip: Option<String>,
    pub port: Option<i64>,
    pub version: Option<i64>,
    pub nonce: Option<i64>,
    pub uuid: Option<String>,
    pub hotkey: Option<String>,
    pub signature: Option<String>,
}

impl TerminalInfo {
    /// `bt_header_<side>_<field>` headers for the fields that are set, as Python's `str()`.
    pub fn headers(&self, side: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                out.push((format!("bt_header_{side}_{k}"), v));
            }
        };
        put("status_code", self.status_code.map(|v| v.to_string()));
        put("status_message", self.status_message.clone());
        put("process_time", self.process_time.map(py_float));
        put("ip", self.ip.clone());
        put("port", self.port.map(|v| v.to_string()));
        put("version", self.version.map(|v| v.to_string()));
        put("nonce", self.nonce.map(|v| v.to_string()));
        put("uuid", self.uuid.clone());
        put("hotkey", self.hotkey.clone());
        put("signature", self.signature.clone());
        out
    }

    /// Reads `bt_header_<side>_*` headers back (unparsable numbers are left unset).
    pub fn from_headers<'a>(
        side: &str,
        headers: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> TerminalInfo {
        let prefix = format!("bt_header_{side}_");
        let mut t = TerminalInfo::default();
        for (k, v) in headers {
            let Some(field) = k.strip_prefix(&prefix) else {
                continue;
            };
            let v = v.to_owned();
            match field {
                "status_code" => t.status_code = v.parse().ok(),
                "status_message" => t.status_message = Some(v),
                "process_time" => t.process_time = v.parse().ok(),
                "ip" => t.ip = Some(v),
                "port" => t.port = v.parse().ok(),
                "version" => t.version = v.parse().ok(),
                "nonce" => t.nonce = v.parse().ok(),
                "uuid" => t.uuid = Some(v),
                "hotkey" => t.hotkey = Some(v),
                "signature" => t.signature = Some(v),
                _ => {}
            }
        }
        t
    }
}

/// Python's `str(float)`: always a decimal point (`12.0`).
fn py_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        v.to_string()
    }
}

/// A synapse's own fields.
pub trait SynapseBody:
    Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static
{
    /// The class name (the URL path and the `name` field).
    const NAME: &'static str;
    /// Values of the fields the body hash covers, in declaration order, as Python's `str()`.
    fn hash_fields(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A whole synapse: the SDK's common fields and a body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "T: SynapseBody")]
pub struct Synapse<T: SynapseBody> {
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    #[serde(default)]
    pub total_size: i64,
    #[serde(default)]
    pub header_size: i64,
    #[serde(default)]
    pub dendrite: Option<TerminalInfo>,
    #[serde(default)]
    pub axon: Option<TerminalInfo>,
    #[serde(default)]
    pub computed_body_hash: String,
    #[serde(flatten)]
    pub body: T,
}

fn default_timeout() -> f64 {
    12.0
}

impl<T: SynapseBody> Synapse<T> {
    pub fn new(body: T, timeout: f64) -> Synapse<T> {
        Synapse {
            name: T::NAME.to_owned(),
            timeout,
            total_size: 0,
            header_size: 0,
            dendrite: Some(TerminalInfo::default()),
            axon: Some(TerminalInfo::default()),
            computed_body_hash: String::new(),
            body,
        }
    }

    /// SHA3-256 over the hashes of the required hash fields (of nothing, when none).
    pub fn body_hash(&self) -> String {
        let joined: String = self
            .body
            .hash_fields()
            .iter()
            .map(|v| sha3_hex(v))
            .collect();
        sha3_hex(&joined)
    }

    /// The headers a dendrite sends with this synapse.
    pub fn to_headers(&self) -> Vec<(String, String)> {
        let mut h = vec![
            ("name".to_owned(), self.name.clone()),
            ("timeout".to_owned(), py_float(self.timeout)),
        ];
        if let Some(a) = &self.axon {
            h.extend(a.headers("axon"));
        }
        if let Some(d) = &self.dendrite {
            h.extend(d.headers("dendrite"));
        }
        h.push(("header_size".to_owned(), self.header_size.to_string()));
        h.push(("total_size".to_owned(), self.total_size.to_string()));
        h.push(("computed_body_hash".to_owned(), self.body_hash()));
        h
    }
}

/// Hex SHA3-256 of a text.
pub fn sha3_hex(text: &str) -> String {
    hex::encode(Sha3_256::digest(text.as_bytes()))
}

/// The coding task a validator sends and a miner answers. `repo`, `problem_statement` and
/// `patch` are the original subnet's three fields (a miner written for it answers ours); the
/// rest are agentao's, all with defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CodingTask {
    #[serde(default)]
    pub repo: String,
    #[serde(default)]
    pub problem_statement: String,
    /// Filled by the miner.
    #[serde(default)]
    pub patch: Option<String>,
    #[serde(default)]
    pub task_id: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub hints: String,
    /// Seconds the miner has.
    #[serde(default)]
    pub time_limit: f64,
    /// Filled by the miner: which agent and model answered, at what cost, after how long.
    #[serde(default)]
    pub agent_name: String,
    #[serde(default)]
    pub cost: f64,
    #[serde(default)]
    pub elapsed: f64,
    /// Filled by the miner: the model behind the agent and the tokens it used.
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    /// Filled by the miner: why the agent's model stopped answering, when the episode ended
    /// in a model error (empty otherwise). Defaulted, so answers without it still read.
    #[serde(default)]
    pub model_error: String,
}

impl SynapseBody for CodingTask {
    const NAME: &'static str = "CodingTask";
}

/// A question for Cerebro-style forecasters: will an agent solve this task, and how fast.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    #[serde(default)]
    pub task_id: String,
    #[serde(default)]
    pub problem_statement: String,
    #[serde(default)]
    pub repo: String,
    /// Filled by the miner: probability the task gets solved, expected seconds, difficulty.
    #[serde(default)]
    pub solve_probability: Option<f64>,
    #[serde(default)]
    pub expected_seconds: Option<f64>,
    #[serde(default)]
    pub difficulty: Option<f64>,
}

impl SynapseBody for Forecast {
    const NAME: &'static str = "Forecast";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_shape_matches_the_python_sdk() {
        // `CodingTask(repo="a/b", problem_statement="x").model_dump_json()` from bittensor
        // 10.5.0 with the original subnet's three fields.
        let python = r#"{"name":"CodingTask","timeout":12.0,"total_size":0,"header_size":0,"dendrite":{"status_code":null,"status_message":null,"process_time":null,"ip":null,"port":null,"version":null,"nonce":null,"uuid":null,"hotkey":null,"signature":null},"axon":{"status_code":null,"status_message":null,"process_time":null,"ip":null,"port":null,"version":null,"nonce":null,"uuid":null,"hotkey":null,"signature":null},"computed_body_hash":"","repo":"a/b","problem_statement":"x","patch":""}"#;
        let s: Synapse<CodingTask> = serde_json::from_str(python).unwrap();
        assert_eq!(s.body.repo, "a/b");
        assert_eq!(s.body.patch.as_deref(), Some(""));
        let back = serde_json::to_value(&s).unwrap();
        let orig: serde_json::Value = serde_json::from_str(python).unwrap();
        for (k, v) in orig.as_object().unwrap() {
            assert_eq!(&back[k], v, "{k}");
        }
        // No required hash fields: the hash of the empty string, as the SDK computes it.
        assert_eq!(
            s.body_hash(),
            "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"
        );
    }

    #[test]
    fn headers_round_trip() {
        let mut s = Synapse::new(CodingTask::default(), 12.0);
        s.dendrite = Some(TerminalInfo {
            nonce: Some(5),
            hotkey: Some("5X".into()),
            version: Some(PROTOCOL_VERSION),
            ..TerminalInfo::default()
        });
        let h = s.to_headers();
        assert!(h.contains(&("timeout".into(), "12.0".into())));
        let t =
            TerminalInfo::from_headers("dendrite", h.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(t, s.dendrite.unwrap());
    }
}
