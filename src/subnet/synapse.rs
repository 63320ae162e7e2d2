//! Synapses as the Bittensor SDK serialises them: the common fields (`name`, `timeout`, sizes,
//! `dendrite` and `axon` terminal info, `computed_body_hash`) plus each synapse's own, so a
//! Python `bt.Synapse` subclass with the same fields round-trips. Also the HTTP headers a
//! dendrite sends and the body hash it signs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
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

/// Python's `str(float)` (= `repr`): the shortest digits that round-trip, in fixed notation
/// with at least one decimal (`12.0`, `0.0001`) for exponents from -4 to 15, else scientific
/// with a signed two-digit exponent (`1e+16`, `1e-05`); `nan`, `inf`, `-inf`.
pub fn py_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits too: `6.05e2`, `-1e-5`.
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let m = if rest.is_empty() {
            first.to_owned()
        } else {
            format!("{first}.{rest}")
        };
        let e_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{e_sign}{:02}", exp.abs())
    }
}

/// The body hash of a synapse that hashes no fields (SHA3-256 of the empty string): what every
/// SDK class without `required_hash_fields` computes, the original subnet's `CodingTask` among
/// them.
pub const HASH_OF_NOTHING: &str =
    "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a";

/// A synapse's own fields.
pub trait SynapseBody:
    Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static
{
    /// The class name (the URL path and the `name` field).
    const NAME: &'static str;
    /// The fields the body hash covers, in this order: the SDK class's `required_hash_fields`.
    /// A Python class speaking this synapse declares the same tuple, so both sides compute the
    /// same hash and a signed request cannot carry another body.
    const REQUIRED_HASH_FIELDS: &'static [&'static str] = &[];
    /// The original subnet's class of this synapse hashes no fields: its axons refuse our hash
    /// and want [`HASH_OF_NOTHING`]. Our dendrite then retries with that hash, and our axon
    /// accepts it for a body of the original shape only ([`SynapseBody::original_shape`]).
    const ORIGINAL_HASHES_NOTHING: bool = false;
    /// Values of [`SynapseBody::REQUIRED_HASH_FIELDS`], in that order, as Python's `str()`.
    fn hash_fields(&self) -> Vec<String> {
        Vec::new()
    }
    /// True when the body carries nothing the original class lacks, so the hash of nothing
    /// (which binds no field) gives away nothing of ours.
    fn original_shape(&self) -> bool {
        false
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

    /// SHA3-256 over the hashes of the required hash fields (of nothing, when none), as the
    /// SDK's `Synapse.body_hash`.
    pub fn body_hash(&self) -> String {
        let joined: String = self
            .body
            .hash_fields()
            .iter()
            .map(|v| sha3_hex(v))
            .collect();
        sha3_hex(&joined)
    }

    /// The headers a dendrite sends with this synapse (and an axon answers with), as the SDK's
    /// `Synapse.to_headers`: `name`, `timeout`, the terminals, one `bt_header_input_obj_<field>`
    /// per body field that is set, the sizes and `computed_body_hash`.
    ///
    /// The SDK's axon builds its synapse from these headers before it reads the body, so a
    /// class with fields that have no default (the original `CodingTask`'s `repo` and
    /// `problem_statement`) fails to parse without them. Like the SDK's dendrite, the header
    /// holds the empty value of the field's type (base64 of `json.dumps(type())`, e.g. `""`);
    /// the real value travels in the body. We send one for every field, since we cannot know
    /// which ones the other side's class requires.
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
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&self.body) {
            for (field, value) in fields {
                if let Some(empty) = empty_like(&value) {
                    h.push((
                        format!("bt_header_input_obj_{field}"),
                        BASE64.encode(empty.as_bytes()),
                    ));
                }
            }
        }
        h.push(("header_size".to_owned(), self.header_size.to_string()));
        h.push(("total_size".to_owned(), self.total_size.to_string()));
        let hash = if self.computed_body_hash.is_empty() {
            self.body_hash()
        } else {
            self.computed_body_hash.clone()
        };
        h.push(("computed_body_hash".to_owned(), hash));
        h
    }
}

/// `json.dumps(type(value)())` for a JSON value: the empty value of its type; none for null.
fn empty_like(value: &serde_json::Value) -> Option<&'static str> {
    use serde_json::Value;
    Some(match value {
        Value::Null => return None,
        Value::Bool(_) => "false",
        Value::Number(n) if n.is_f64() => "0.0",
        Value::Number(_) => "0",
        Value::String(_) => "\"\"",
        Value::Array(_) => "[]",
        Value::Object(_) => "{}",
    })
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
    /// The portable task description (`tasks::spec`, versioned by its `spec_version`): what a
    /// miner on another machine rebuilds the task from. Null for a task the miner is only
    /// named (the original protocol; a miner sharing the validator's store).
    #[serde(default)]
    pub spec: Option<serde_json::Value>,
    /// The description's hash. The validator sends it (the signed body hash covers it); the
    /// miner answers with the hash of the description it worked on, and an answer for another
    /// description is not taken.
    #[serde(default)]
    pub spec_hash: String,
    /// The workspace bundle the description names, inline: base64 of a zstd tar.
    #[serde(default)]
    pub bundle: String,
    /// Filled by the miner: the agent's trajectory (its steps and the conversation with its
    /// model), for the dataset; at most [`MAX_TRAJECTORY_BYTES`] of JSON. Null when the miner
    /// sent none (the original protocol, the repair baseline).
    #[serde(default)]
    pub trajectory: Option<serde_json::Value>,
}

/// Most bytes of trajectory JSON a miner sends and a validator keeps.
pub const MAX_TRAJECTORY_BYTES: usize = 1 << 20;

impl SynapseBody for CodingTask {
    const NAME: &'static str = "CodingTask";
    const REQUIRED_HASH_FIELDS: &'static [&'static str] = &[
        "repo",
        "problem_statement",
        "task_id",
        "version",
        "hints",
        "time_limit",
        "spec_hash",
    ];
    const ORIGINAL_HASHES_NOTHING: bool = true;
    fn hash_fields(&self) -> Vec<String> {
        vec![
            self.repo.clone(),
            self.problem_statement.clone(),
            self.task_id.clone(),
            self.version.clone(),
            self.hints.clone(),
            py_float(self.time_limit),
            self.spec_hash.clone(),
        ]
    }
    /// The original class has `repo`, `problem_statement` and `patch`: none of the task fields
    /// agentao adds may be set.
    fn original_shape(&self) -> bool {
        self.task_id.is_empty()
            && self.version.is_empty()
            && self.hints.is_empty()
            && self.time_limit == 0.0
            && self.spec.is_none()
            && self.spec_hash.is_empty()
            && self.bundle.is_empty()
    }
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
        // The original class hashes no fields: the hash of the empty string.
        assert_eq!(sha3_hex(""), HASH_OF_NOTHING);
        assert!(s.body.original_shape());
    }

    #[test]
    fn floats_print_as_python_prints_them() {
        for (v, python) in [
            (12.0, "12.0"),
            (605.0, "605.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (123456789.125, "123456789.125"),
            (1.5e300, "1.5e+300"),
            (-2.5e-7, "-2.5e-07"),
            (-0.0, "-0.0"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(py_float(v), python, "{v:?}");
        }
    }

    #[test]
    fn the_body_hash_is_the_sdks_over_the_required_fields() {
        // `CodingTask(...).body_hash` from bittensor 10.5.0 with
        // `required_hash_fields = ("repo", "problem_statement", "task_id", "version", "hints",
        // "time_limit", "spec_hash")`, for several time limits (the float's `str()` is hashed).
        for (time_limit, python) in [
            (
                605.0,
                "ffed88d7722a2895df49ae2e6345ecedc324c285a7a2f95de33bd7a359ed2004",
            ),
            (
                0.1,
                "d4ec7176c60117c71446828cb533f47375b59d5ceda1a7958a0bdb2c0659006f",
            ),
            (
                1e16,
                "08f70519a121bef3405e69beb17a86e889db51a1942372460a942ad5b15ec4dc",
            ),
            (
                1e-5,
                "5bd6b16ccfd3ec609ffbd2bf04967d611c903e170f41d7e0fe667173f3695cfe",
            ),
        ] {
            let s = Synapse::new(
                CodingTask {
                    repo: "pypi/idna".into(),
                    problem_statement: "fix \u{fc} \"it\"\n".into(),
                    task_id: "idna-3.10-x".into(),
                    version: "3.10".into(),
                    hints: "h".into(),
                    time_limit,
                    ..CodingTask::default()
                },
                12.0,
            );
            assert_eq!(s.body_hash(), python, "{time_limit}");
            assert!(!s.body.original_shape());
        }
        // Any hashed field changes the hash.
        let base = CodingTask {
            repo: "a/b".into(),
            ..CodingTask::default()
        };
        let h = Synapse::new(base.clone(), 12.0).body_hash();
        for changed in [
            CodingTask {
                problem_statement: "x".into(),
                ..base.clone()
            },
            CodingTask {
                task_id: "t".into(),
                ..base.clone()
            },
            CodingTask {
                time_limit: 1.0,
                ..base.clone()
            },
            CodingTask {
                spec_hash: "ab".repeat(32),
                ..base.clone()
            },
        ] {
            assert_ne!(Synapse::new(changed, 12.0).body_hash(), h);
        }
    }

    #[test]
    fn the_description_hash_is_signed() {
        // bittensor 10.5.0, the class of `src/cli/bench/coding_task.py`:
        // `CodingTask(repo="pypi/idna", problem_statement="x", spec_hash="ab"*32).body_hash`.
        let s = Synapse::new(
            CodingTask {
                repo: "pypi/idna".into(),
                problem_statement: "x".into(),
                spec_hash: "ab".repeat(32),
                ..CodingTask::default()
            },
            12.0,
        );
        assert_eq!(
            s.body_hash(),
            "bf7b8ed21cb6a9cadf57920afc3d6f84698c6c48532db845ef02fd9fb6765fb6"
        );
        assert!(!s.body.original_shape());
    }

    #[test]
    fn input_obj_headers_hold_the_empty_value_of_each_field_as_the_sdk_sends_them() {
        // From bittensor 10.5.0: `CodingTask(repo="a", problem_statement="b").to_headers()`
        // with the original class sends `bt_header_input_obj_repo: IiI=` (base64 of `""`).
        let s = Synapse::new(
            CodingTask {
                repo: "pypi/x".into(),
                problem_statement: "long text".into(),
                time_limit: 600.0,
                ..CodingTask::default()
            },
            12.0,
        );
        let h = s.to_headers();
        let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("bt_header_input_obj_repo"), Some("IiI="));
        assert_eq!(get("bt_header_input_obj_problem_statement"), Some("IiI="));
        assert_eq!(
            get("bt_header_input_obj_patch"),
            None,
            "patch is None: no header"
        );
        assert_eq!(get("bt_header_input_obj_time_limit"), Some("MC4w"), "0.0");
        assert_eq!(get("bt_header_input_obj_prompt_tokens"), Some("MA=="), "0");
        assert_eq!(get("computed_body_hash"), Some(s.body_hash().as_str()));
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
