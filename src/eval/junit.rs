//! Reading pytest's JUnit XML (structured results, never log text) and matching its test
//! cases to pytest node ids.

use std::collections::BTreeMap;

use quick_xml::Reader;
use quick_xml::events::Event;
use serde::{Deserialize, Serialize};

/// The status of one test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TestStatus {
    #[default]
    Passed,
    Failed,
    Error,
    Skipped,
    /// Selected but absent from the report (collection error, crash, renamed test).
    Missing,
}

impl TestStatus {
    /// Only a pass counts as a pass.
    pub fn passed(self) -> bool {
        self == TestStatus::Passed
    }
}

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable JUnit XML: {0}")]
pub struct JunitError(String);

/// Test cases of a JUnit report keyed by `classname::name`.
pub fn parse_junit(xml: &str) -> Result<BTreeMap<String, TestStatus>, JunitError> {
    Ok(parse_junit_details(xml)?
        .into_iter()
        .map(|(k, r)| (k, r.status))
        .collect())
}

/// Longest failure text kept per test.
const DETAIL_CAP: usize = 4096;

/// One test case's result with what pytest said about a failure.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TestResult {
    pub status: TestStatus,
    /// The `message` attribute of the failure or error (e.g. `AssertionError: assert 1 == 2`).
    pub message: String,
    /// The start of the failure's text (pytest's short traceback).
    pub text: String,
    /// Seconds the test took.
    pub time: f64,
}

/// Like [`parse_junit`], keeping failure messages, traceback text and times.
pub fn parse_junit_details(xml: &str) -> Result<BTreeMap<String, TestResult>, JunitError> {
    let mut reader = Reader::from_str(xml);
    let mut out: BTreeMap<String, TestResult> = BTreeMap::new();
    // The test case being read, and whether we are inside its failure/error element.
    let mut current: Option<(String, TestResult)> = None;
    let mut in_failure = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| JunitError(format!("at byte {}: {e}", reader.buffer_position())))?;
        let is_start = matches!(event, Event::Start(_));
        match event {
            Event::Empty(e) if e.name().as_ref() == "testcase" => {
                let (key, time) = testcase_key(&e)?;
                merge(
                    &mut out,
                    key,
                    TestResult {
                        time,
                        ..TestResult::default()
                    },
                );
            }
            Event::Start(e) if e.name().as_ref() == "testcase" => {
                let (key, time) = testcase_key(&e)?;
                current = Some((
                    key,
                    TestResult {
                        time,
                        ..TestResult::default()
                    },
                ));
            }
            Event::Start(e) | Event::Empty(e) => {
                if let Some((_, result)) = current.as_mut() {
                    let seen = match e.name().as_ref() {
                        "failure" => Some(TestStatus::Failed),
                        "error" => Some(TestStatus::Error),
                        "skipped" => Some(TestStatus::Skipped),
                        _ => None,
                    };
                    if let Some(seen) = seen {
                        if rank(seen) > rank(result.status) {
                            result.status = seen;
                            if seen != TestStatus::Skipped {
                                result.message = attribute(&e, "message")?.unwrap_or_default();
                                result.text.clear();
                            }
                        }
                        in_failure = is_start && seen != TestStatus::Skipped;
                    }
                }
            }
            Event::Text(t) if in_failure => {
                if let Some((_, result)) = current.as_mut()
                    && result.text.len() < DETAIL_CAP
                {
                    let text = t.xml_content(quick_xml::XmlVersion::Implicit1_0);
                    let room = DETAIL_CAP - result.text.len();
                    result.text.push_str(truncate(&text, room));
                }
            }
            // Entities (`&lt;`, `&#10;`) arrive as events of their own.
            Event::GeneralRef(r) if in_failure => {
                if let Some((_, result)) = current.as_mut() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => result.text.push(c),
                        _ => {
                            let name = r.xml_content(quick_xml::XmlVersion::Implicit1_0);
                            let resolved = quick_xml::escape::resolve_predefined_entity(&name);
                            result.text.push_str(resolved.unwrap_or(""));
                        }
                    }
                }
            }
            Event::End(e) if matches!(e.name().as_ref(), "failure" | "error") => {
                in_failure = false;
            }
            Event::End(e) if e.name().as_ref() == "testcase" => {
                in_failure = false;
                if let Some((k, r)) = current.take() {
                    merge(&mut out, k, r);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn attribute(
    e: &quick_xml::events::BytesStart<'_>,
    name: &str,
) -> Result<Option<String>, JunitError> {
    for attr in e.attributes().flatten() {
        if attr.key.as_ref() == name {
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| JunitError(e.to_string()))?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

/// `classname::name` and time of a `<testcase>` element.
fn testcase_key(e: &quick_xml::events::BytesStart<'_>) -> Result<(String, f64), JunitError> {
    let class = attribute(e, "classname")?.unwrap_or_default();
    let name = attribute(e, "name")?.unwrap_or_default();
    let time = attribute(e, "time")?
        .and_then(|t| t.parse().ok())
        .unwrap_or(0.0);
    Ok((format!("{class}::{name}"), time))
}

/// A test that appears twice (setup error after a pass, reruns) keeps its worst status.
fn merge(out: &mut BTreeMap<String, TestResult>, key: String, result: TestResult) {
    match out.get_mut(&key) {
        Some(old) => {
            old.time += result.time;
            if rank(result.status) > rank(old.status) {
                old.status = result.status;
                old.message = result.message;
                old.text = result.text;
            }
        }
        None => {
            out.insert(key, result);
        }
    }
}

fn rank(s: TestStatus) -> u8 {
    match s {
        TestStatus::Passed => 0,
        TestStatus::Skipped => 1,
        TestStatus::Failed => 2,
        TestStatus::Error => 3,
        TestStatus::Missing => 4,
    }
}

/// The JUnit key pytest writes for a node id: `tests/test_m.py::TestC::test_x[1]` →
/// `tests.test_m.TestC::test_x[1]`.
pub fn junit_key(node_id: &str) -> String {
    let mut parts: Vec<&str> = node_id.split("::").collect();
    let name = parts.pop().unwrap_or("");
    let mut class = String::new();
    if let Some(file) = parts.first() {
        class.push_str(&file.trim_end_matches(".py").replace('/', "."));
    }
    for p in parts.iter().skip(1) {
        class.push('.');
        class.push_str(p);
    }
    format!("{class}::{name}")
}

/// Status of each selected node id in a parsed report (absent → `Missing`).
pub fn statuses_for(
    report: &BTreeMap<String, TestStatus>,
    node_ids: &[String],
) -> BTreeMap<String, TestStatus> {
    node_ids
        .iter()
        .map(|id| {
            let status = report
                .get(&junit_key(id))
                .copied()
                .unwrap_or(TestStatus::Missing);
            (id.clone(), status)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5">
<testcase classname="tests.test_calc" name="test_add" file="tests/test_calc.py" line="3" time="0.001" />
<testcase classname="tests.test_calc" name="test_sub" time="0.001"><failure message="assert 1 == 2">trace &lt;here&gt;</failure></testcase>
<testcase classname="tests.test_calc.TestDiv" name="test_div[2-1]" time="0.001"><skipped type="pytest.skip" message="no">skip</skipped></testcase>
<testcase classname="tests.test_calc.TestDiv" name="test_zero" time="0.001"></testcase>
<testcase classname="tests.test_calc.TestDiv" name="test_zero" time="0.001"><error message="teardown">boom</error></testcase>
</testsuite></testsuites>"#;

    #[test]
    fn failure_messages_and_text_are_kept() {
        let d = parse_junit_details(XML).unwrap();
        let sub = &d["tests.test_calc::test_sub"];
        assert_eq!(sub.status, TestStatus::Failed);
        assert_eq!(sub.message, "assert 1 == 2");
        assert_eq!(sub.text, "trace <here>");
        let zero = &d["tests.test_calc.TestDiv::test_zero"];
        assert_eq!(
            (zero.status, zero.message.as_str()),
            (TestStatus::Error, "teardown")
        );
        assert!((zero.time - 0.002).abs() < 1e-9);
        assert!(
            d["tests.test_calc.TestDiv::test_div[2-1]"]
                .message
                .is_empty()
        );
    }

    #[test]
    fn statuses_are_read_and_matched_to_node_ids() {
        let report = parse_junit(XML).unwrap();
        let ids: Vec<String> = [
            "tests/test_calc.py::test_add",
            "tests/test_calc.py::test_sub",
            "tests/test_calc.py::TestDiv::test_div[2-1]",
            "tests/test_calc.py::TestDiv::test_zero",
            "tests/test_calc.py::test_gone",
        ]
        .map(String::from)
        .to_vec();
        let s = statuses_for(&report, &ids);
        let expected = [
            TestStatus::Passed,
            TestStatus::Failed,
            TestStatus::Skipped,
            TestStatus::Error,
            TestStatus::Missing,
        ];
        for (id, want) in ids.iter().zip(expected) {
            assert_eq!(s[id], want, "{id}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_pass() {
        assert!(parse_junit("<testsuite><testcase name='x'></testsuite>").is_err());
    }
}
