//! Reading pytest's JUnit XML (structured results, never log text) and matching its test
//! cases to pytest node ids.

use std::collections::BTreeMap;

use quick_xml::Reader;
use quick_xml::events::Event;
use serde::{Deserialize, Serialize};

/// The status of one test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TestStatus {
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
    let mut reader = Reader::from_str(xml);
    let mut out = BTreeMap::new();
    // The test case being read: its key and worst status so far.
    let mut current: Option<(String, TestStatus)> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| JunitError(format!("at byte {}: {e}", reader.buffer_position())))?;
        match event {
            Event::Empty(e) if e.name().as_ref() == "testcase" => {
                merge(&mut out, testcase_key(&e)?, TestStatus::Passed);
            }
            Event::Start(e) if e.name().as_ref() == "testcase" => {
                current = Some((testcase_key(&e)?, TestStatus::Passed));
            }
            Event::Start(e) | Event::Empty(e) => {
                if let Some((_, status)) = current.as_mut() {
                    let seen = match e.name().as_ref() {
                        "failure" => Some(TestStatus::Failed),
                        "error" => Some(TestStatus::Error),
                        "skipped" => Some(TestStatus::Skipped),
                        _ => None,
                    };
                    if let Some(seen) = seen {
                        *status = worse(*status, seen);
                    }
                }
            }
            Event::End(e) if e.name().as_ref() == "testcase" => {
                if let Some((k, s)) = current.take() {
                    merge(&mut out, k, s);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// `classname::name` of a `<testcase>` element.
fn testcase_key(e: &quick_xml::events::BytesStart<'_>) -> Result<String, JunitError> {
    let (mut class, mut name) = (String::new(), String::new());
    for attr in e.attributes().flatten() {
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| JunitError(e.to_string()))?
            .into_owned();
        match attr.key.as_ref() {
            "classname" => class = value,
            "name" => name = value,
            _ => {}
        }
    }
    Ok(format!("{class}::{name}"))
}

/// A test that appears twice (setup error after a pass, reruns) keeps its worst status.
fn merge(out: &mut BTreeMap<String, TestStatus>, key: String, status: TestStatus) {
    out.entry(key)
        .and_modify(|s| *s = worse(*s, status))
        .or_insert(status);
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

fn worse(a: TestStatus, b: TestStatus) -> TestStatus {
    if rank(b) > rank(a) { b } else { a }
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
