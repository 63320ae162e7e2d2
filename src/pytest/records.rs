//! Reading a run's signed records as its stdout streams: signatures, sequence numbers, phases
//! and limits checked line by line; whatever does not check out is an anomaly.

use std::collections::BTreeMap;

use super::results::{TestResult, TestStatus};
use super::runner::{
    DISK_FULL_BYTES, MAX_ID, MAX_LINE, MAX_RECORDS, MAX_TESTS, RECORD_PREFIX, RunKey,
};

/// The end record.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    /// pytest's exit status.
    pub exit: i64,
    /// Free bytes in `/tmp` at the end (-1 when unknown).
    pub tmp_free: i64,
}

/// What the verified records of one run say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRecords {
    /// Final result per node id.
    pub results: BTreeMap<String, TestResult>,
    /// Collected node ids (collect-only runs).
    pub items: Vec<String>,
    /// Collection errors: (node id, message).
    pub collect_errors: Vec<(String, String)>,
    /// Tampering the plugin saw.
    pub tamper: Vec<String>,
    /// Records that did not check out (forged, out of order, oversized, too many).
    pub anomalies: Vec<String>,
    /// Whether the start record arrived.
    pub started: bool,
    pub end: Option<RunEnd>,
}

impl RunRecords {
    /// The status of `id` (`Missing` when no report named it).
    pub fn status(&self, id: &str) -> TestStatus {
        self.results
            .get(id)
            .map(|r| r.status)
            .unwrap_or(TestStatus::Missing)
    }

    /// Statuses of `ids`.
    pub fn statuses(&self, ids: &[String]) -> BTreeMap<String, TestStatus> {
        ids.iter().map(|id| (id.clone(), self.status(id))).collect()
    }

    /// Whether the run hit its disk limit.
    pub fn disk_full(&self) -> bool {
        self.end
            .as_ref()
            .is_some_and(|e| e.tmp_free >= 0 && e.tmp_free < DISK_FULL_BYTES)
    }

    /// Why these records cannot be trusted as a complete run, if they cannot.
    pub fn untrusted(&self) -> Option<String> {
        if let Some(t) = self.tamper.first() {
            return Some(format!("tampering seen during the run: {t}"));
        }
        if let Some(a) = self.anomalies.first() {
            return Some(format!("the run's results do not check out: {a}"));
        }
        if !self.started {
            return Some("the test run never started its reporter".into());
        }
        if self.end.is_none() {
            return Some("the test run ended without its final record".into());
        }
        None
    }
}

/// Per-test phases seen so far.
#[derive(Debug, Default)]
struct Phases {
    setup: Option<Phase>,
    call: Option<Phase>,
    teardown: Option<Phase>,
    /// The first failed subtest, if any (it fails the test).
    failed_subtest: Option<Phase>,
    time: f64,
}

#[derive(Debug)]
struct Phase {
    outcome: String,
    message: String,
    text: String,
}

/// Reads the signed records out of a run's stdout as it streams.
pub struct RecordReader {
    key: RunKey,
    /// When set, reports may name only these tests.
    expected: Option<std::collections::BTreeSet<String>>,
    line: Vec<u8>,
    overlong: bool,
    next_seq: u64,
    phases: BTreeMap<String, Phases>,
    out: RunRecords,
}

impl RecordReader {
    pub fn new(key: RunKey) -> RecordReader {
        RecordReader {
            key,
            expected: None,
            line: Vec::new(),
            overlong: false,
            next_seq: 1,
            phases: BTreeMap::new(),
            out: RunRecords::default(),
        }
    }

    /// Reports may name only `ids` (the tests that were asked for); any other is an anomaly.
    pub fn expecting(mut self, ids: &[String]) -> RecordReader {
        self.expected = Some(ids.iter().cloned().collect());
        self
    }

    /// Feeds a chunk of stdout.
    pub fn feed(&mut self, bytes: &[u8]) {
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let complete = chunk.ends_with(b"\n");
            let part = if complete {
                &chunk[..chunk.len() - 1]
            } else {
                chunk
            };
            if !self.overlong {
                if self.line.len() + part.len() > MAX_LINE {
                    self.overlong = true;
                    if self.line.starts_with(RECORD_PREFIX) || part.starts_with(RECORD_PREFIX) {
                        self.anomaly("an oversized record".into());
                    }
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(part);
                }
            }
            if complete {
                if !self.overlong {
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line);
                }
                self.overlong = false;
                self.line.clear();
            }
        }
    }

    /// The verified records.
    pub fn finish(mut self) -> RunRecords {
        if !self.line.is_empty() && !self.overlong {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line);
        }
        for (id, p) in std::mem::take(&mut self.phases) {
            self.out.results.insert(id, p.result());
        }
        self.out
    }

    fn anomaly(&mut self, what: String) {
        if self.out.anomalies.len() < 20 {
            self.out.anomalies.push(what);
        }
    }

    fn line_done(&mut self, line: &[u8]) {
        let Some(rest) = line.strip_prefix(RECORD_PREFIX) else {
            return;
        };
        let rest = String::from_utf8_lossy(rest);
        let mut parts = rest.splitn(3, ' ');
        let (Some(seq), Some(mac), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            self.anomaly("a malformed record".into());
            return;
        };
        let expected = self.key.mac(format!("{seq} {body}").as_bytes());
        if hex::decode(mac).ok().as_deref() != Some(&expected[..]) {
            self.anomaly(format!("a record with a forged signature (seq {seq})"));
            return;
        }
        let Ok(seq) = seq.parse::<u64>() else {
            self.anomaly("a record with a bad sequence number".into());
            return;
        };
        if seq != self.next_seq {
            self.anomaly(format!(
                "record {seq} arrived where {} was due",
                self.next_seq
            ));
        }
        self.next_seq = seq.max(self.next_seq) + 1;
        if seq > MAX_RECORDS {
            self.anomaly("too many records".into());
            return;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(body.trim_end()) else {
            self.anomaly(format!("record {seq} is not JSON"));
            return;
        };
        if self.out.end.is_some() {
            self.anomaly(format!("record {seq} came after the end record"));
        }
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
        match v.get("t").and_then(|t| t.as_str()) {
            Some("start") => self.out.started = true,
            Some("report") => {
                let id = text("id");
                if id.len() > MAX_ID {
                    self.anomaly(format!("record {seq} names an oversized test id"));
                    return;
                }
                if self.expected.as_ref().is_some_and(|e| !e.contains(&id)) {
                    self.anomaly(format!(
                        "record {seq} reports a test that was not asked for"
                    ));
                    return;
                }
                if !self.phases.contains_key(&id) && self.phases.len() >= MAX_TESTS {
                    self.anomaly("too many tests reported".into());
                    return;
                }
                let when = text("w");
                let p = self.phases.entry(id.clone()).or_default();
                let seen = match when.as_str() {
                    "setup" => p.setup.is_some(),
                    "call" => p.call.is_some(),
                    _ => p.teardown.is_some(),
                };
                if seen {
                    self.anomaly(format!("{id} was reported twice for its {when}"));
                    return;
                }
                let p = self.phases.entry(id).or_default();
                p.time += v.get("d").and_then(|d| d.as_f64()).unwrap_or(0.0);
                let mut outcome = text("o");
                if v.get("x").is_some() && outcome == "passed" && text("w") == "call" {
                    // An unexpected pass of a non-strict xfail: JUnit calls it a pass too.
                    outcome = "passed".into();
                }
                let phase = Phase {
                    outcome,
                    message: text("m"),
                    text: text("l"),
                };
                match text("w").as_str() {
                    "setup" => p.setup = Some(phase),
                    "call" => p.call = Some(phase),
                    _ => p.teardown = Some(phase),
                }
            }
            Some("subtest") => {
                let id = text("id");
                if id.len() > MAX_ID || self.expected.as_ref().is_some_and(|e| !e.contains(&id)) {
                    self.anomaly(format!(
                        "record {seq} reports a subtest that was not asked for"
                    ));
                    return;
                }
                if !self.phases.contains_key(&id) && self.phases.len() >= MAX_TESTS {
                    self.anomaly("too many tests reported".into());
                    return;
                }
                let p = self.phases.entry(id).or_default();
                if text("o") == "failed" && p.failed_subtest.is_none() {
                    p.failed_subtest = Some(Phase {
                        outcome: "failed".into(),
                        message: text("m"),
                        text: text("l"),
                    });
                }
            }
            Some("collect") => {
                if self.out.collect_errors.len() < 1000 {
                    self.out.collect_errors.push((text("id"), text("m")));
                }
            }
            Some("item") => {
                if self.out.items.len() < MAX_TESTS {
                    self.out.items.push(text("id"));
                }
            }
            Some("tamper") => self.out.tamper.push(text("why")),
            Some("end") => {
                self.out.end = Some(RunEnd {
                    exit: v.get("exit").and_then(|x| x.as_i64()).unwrap_or(-1),
                    tmp_free: v.get("tmp_free").and_then(|x| x.as_i64()).unwrap_or(-1),
                })
            }
            _ => self.anomaly(format!("record {seq} has an unknown type")),
        }
    }
}

impl Phases {
    /// One status per test, as JUnit (xunit1) would give it: a failed setup or teardown is
    /// an error, a failed call a failure, a skip (or expected failure) a skip, and a pass
    /// only when the call passed and nothing around it failed.
    fn result(self) -> TestResult {
        let failed = |p: &Option<Phase>| p.as_ref().is_some_and(|p| p.outcome == "failed");
        let skipped = |p: &Option<Phase>| p.as_ref().is_some_and(|p| p.outcome == "skipped");
        let (status, from) = if failed(&self.call) {
            (TestStatus::Failed, &self.call)
        } else if self.failed_subtest.is_some() {
            (TestStatus::Failed, &self.failed_subtest)
        } else if failed(&self.setup) {
            (TestStatus::Error, &self.setup)
        } else if failed(&self.teardown) {
            (TestStatus::Error, &self.teardown)
        } else if skipped(&self.setup) || skipped(&self.call) {
            (TestStatus::Skipped, &None)
        } else if self.call.as_ref().is_some_and(|p| p.outcome == "passed") {
            (TestStatus::Passed, &None)
        } else {
            (TestStatus::Missing, &None)
        };
        let (message, text) = from
            .as_ref()
            .map(|p| (p.message.clone(), p.text.clone()))
            .unwrap_or_default();
        TestResult {
            status,
            message,
            text,
            time: self.time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pytest::runner::hmac_sha256;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn signed(key: &RunKey, seq: u64, body: &str) -> String {
        let mac = hex::encode(key.mac(format!("{seq} {body}").as_bytes()));
        format!("\nAGENTAO1 {seq} {mac} {body}\n")
    }

    #[test]
    fn only_signed_records_in_sequence_count() {
        let key = RunKey::random();
        let mut r = RecordReader::new(key.clone());
        let stream = [
            signed(&key, 1, r#"{"t":"start"}"#),
            "noise from the tests\n".to_owned(),
            signed(
                &key,
                2,
                r#"{"t":"report","id":"t.py::a","w":"call","o":"failed","m":"boom"}"#,
            ),
            // Forged by the tested code: wrong key.
            signed(
                &RunKey::random(),
                3,
                r#"{"t":"report","id":"t.py::a","w":"call","o":"passed"}"#,
            ),
            signed(&key, 3, r#"{"t":"end","exit":1,"tmp_free":5000000}"#),
        ]
        .concat();
        // Split mid-record to exercise reassembly.
        let (a, b) = stream.as_bytes().split_at(40);
        r.feed(a);
        r.feed(b);
        let out = r.finish();
        assert_eq!(out.status("t.py::a"), TestStatus::Failed);
        assert_eq!(out.results["t.py::a"].message, "boom");
        assert_eq!(out.anomalies.len(), 1, "{:?}", out.anomalies);
        assert!(out.untrusted().unwrap().contains("forged"));
        assert!(!out.disk_full());
    }

    #[test]
    fn a_clean_run_is_trusted_and_phases_combine() {
        let key = RunKey::random();
        let mut r = RecordReader::new(key.clone());
        let bodies = [
            r#"{"t":"start"}"#,
            r#"{"t":"report","id":"a","w":"setup","o":"passed"}"#,
            r#"{"t":"report","id":"a","w":"call","o":"passed"}"#,
            r#"{"t":"report","id":"a","w":"teardown","o":"failed","m":"td"}"#,
            r#"{"t":"report","id":"b","w":"setup","o":"passed"}"#,
            r#"{"t":"report","id":"b","w":"call","o":"passed"}"#,
            r#"{"t":"report","id":"b","w":"teardown","o":"passed"}"#,
            r#"{"t":"report","id":"c","w":"setup","o":"skipped"}"#,
            r#"{"t":"end","exit":1,"tmp_free":100}"#,
        ];
        for (i, b) in bodies.iter().enumerate() {
            r.feed(signed(&key, i as u64 + 1, b).as_bytes());
        }
        let out = r.finish();
        assert_eq!(out.untrusted(), None);
        assert_eq!(out.status("a"), TestStatus::Error);
        assert_eq!(out.status("b"), TestStatus::Passed);
        assert_eq!(out.status("c"), TestStatus::Skipped);
        assert_eq!(out.status("d"), TestStatus::Missing);
        assert!(out.disk_full());
    }

    #[test]
    fn gaps_replays_and_missing_ends_are_anomalies() {
        let key = RunKey::random();
        let mut r = RecordReader::new(key.clone());
        r.feed(signed(&key, 1, r#"{"t":"start"}"#).as_bytes());
        r.feed(signed(&key, 1, r#"{"t":"start"}"#).as_bytes());
        r.feed(signed(&key, 5, r#"{"t":"start"}"#).as_bytes());
        let out = r.finish();
        assert_eq!(out.anomalies.len(), 2, "{:?}", out.anomalies);
        assert!(out.end.is_none());
        let mut r = RecordReader::new(key.clone());
        r.feed(signed(&key, 1, r#"{"t":"start"}"#).as_bytes());
        assert!(r.finish().untrusted().unwrap().contains("final record"));
    }

    #[test]
    fn a_failed_subtest_fails_its_test() {
        let key = RunKey::random();
        let mut r = RecordReader::new(key.clone());
        let bodies = [
            r#"{"t":"start"}"#,
            r#"{"t":"report","id":"a","w":"setup","o":"passed"}"#,
            r#"{"t":"subtest","id":"a","o":"passed"}"#,
            r#"{"t":"subtest","id":"a","o":"failed","m":"sub boom"}"#,
            r#"{"t":"report","id":"a","w":"call","o":"passed"}"#,
            r#"{"t":"report","id":"b","w":"call","o":"passed"}"#,
            r#"{"t":"subtest","id":"b","o":"passed"}"#,
            r#"{"t":"end","exit":1}"#,
        ];
        for (i, b) in bodies.iter().enumerate() {
            r.feed(signed(&key, i as u64 + 1, b).as_bytes());
        }
        let out = r.finish();
        assert_eq!(out.untrusted(), None);
        assert_eq!(out.status("a"), TestStatus::Failed);
        assert_eq!(out.results["a"].message, "sub boom");
        assert_eq!(out.status("b"), TestStatus::Passed);
    }

    #[test]
    fn duplicate_and_unasked_reports_are_anomalies() {
        let key = RunKey::random();
        let mut r = RecordReader::new(key.clone()).expecting(&["a".into()]);
        let bodies = [
            r#"{"t":"start"}"#,
            r#"{"t":"report","id":"a","w":"call","o":"passed"}"#,
            r#"{"t":"report","id":"a","w":"call","o":"failed"}"#,
            r#"{"t":"report","id":"zzz","w":"call","o":"passed"}"#,
            r#"{"t":"end","exit":0}"#,
        ];
        for (i, b) in bodies.iter().enumerate() {
            r.feed(signed(&key, i as u64 + 1, b).as_bytes());
        }
        let out = r.finish();
        assert_eq!(out.anomalies.len(), 2, "{:?}", out.anomalies);
        assert!(out.anomalies[0].contains("twice"));
        assert!(out.anomalies[1].contains("not asked for"));
    }

    #[test]
    fn oversized_lines_are_dropped_without_growing() {
        let key = RunKey::random();
        let mut r = RecordReader::new(key.clone());
        r.feed(b"AGENTAO1 ");
        for _ in 0..100 {
            r.feed(&[b'x'; 64 * 1024]);
        }
        assert!(r.line.len() <= MAX_LINE);
        r.feed(b"\n");
        r.feed(signed(&key, 1, r#"{"t":"start"}"#).as_bytes());
        let out = r.finish();
        assert!(out.started);
        assert_eq!(out.anomalies, vec!["an oversized record".to_owned()]);
    }
}
