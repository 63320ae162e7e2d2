//! PEP 440 versions and PEP 508 markers, through the `pep440_rs`/`pep508_rs` crates: which
//! release the forge picks by itself, whether a `Requires-Python` admits the sandbox's
//! interpreter, and whether a requirement's marker holds in the sandbox.

use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::{
    ExtraName, MarkerEnvironment, MarkerEnvironmentBuilder, MarkerExpression, MarkerTree,
};

/// The sandbox's interpreter: Debian bookworm's CPython, the base image's Python.
pub const SANDBOX_PYTHON: &str = "3.11.2";

/// The version of a final release (`1.2.3`, `1.2.post1`, `1!2.0`), by which releases sort;
/// `None` for pre-releases, dev releases, local versions and anything unparsable, which the
/// forge does not pick by itself.
pub fn release_key(version: &str) -> Option<Version> {
    let v = Version::from_str(version).ok()?;
    (!v.any_prerelease() && !v.is_local()).then_some(v)
}

/// Whether a `Requires-Python` specifier admits the sandbox's interpreter
/// ([`SANDBOX_PYTHON`]). A specifier that does not parse passes: the baseline run catches the
/// rest.
pub fn supports_py311(spec: Option<&str>) -> bool {
    let Some(spec) = spec.map(str::trim).filter(|s| !s.is_empty()) else {
        return true;
    };
    let Ok(specifiers) = VersionSpecifiers::from_str(spec) else {
        return true;
    };
    specifiers.contains(&Version::from_str(SANDBOX_PYTHON).expect("a valid version"))
}

/// A requirement's environment marker (the part after `;`).
#[derive(Debug, Clone)]
pub struct Marker(MarkerTree);

impl Marker {
    /// `None` when the text is not a PEP 508 marker.
    pub fn parse(text: &str) -> Option<Marker> {
        MarkerTree::from_str(text).ok().map(Marker)
    }

    /// The extra the marker requires (`extra == "test"`), normalised, when it names one in
    /// every branch.
    pub fn extra(&self) -> Option<String> {
        match self.0.top_level_extra()? {
            MarkerExpression::Extra { name, .. } => Some(super::normalize(&name.to_string())),
            _ => None,
        }
    }

    /// Whether the marker holds in the sandbox (CPython [`SANDBOX_PYTHON`] on x86_64 Linux)
    /// with the marker's own extra requested.
    pub fn holds_in_sandbox(&self) -> bool {
        let extras: Vec<ExtraName> = self
            .extra()
            .and_then(|e| ExtraName::from_str(&e).ok())
            .into_iter()
            .collect();
        self.0.evaluate(&sandbox_environment(), &extras)
    }
}

/// The marker environment of the sandbox.
fn sandbox_environment() -> MarkerEnvironment {
    MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
        implementation_name: "cpython",
        implementation_version: SANDBOX_PYTHON,
        os_name: "posix",
        platform_machine: "x86_64",
        platform_python_implementation: "CPython",
        platform_release: "",
        platform_system: "Linux",
        platform_version: "",
        python_full_version: SANDBOX_PYTHON,
        python_version: "3.11",
        sys_platform: "linux",
    })
    .expect("valid versions")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_releases_sort_and_pre_releases_are_left_out() {
        assert!(release_key("1.10.0") > release_key("1.9.2"));
        assert!(release_key("1.2.post1") > release_key("1.2"));
        assert!(release_key("1!0.1") > release_key("2024.1"));
        assert_eq!(release_key("2.0rc1"), None);
        assert_eq!(release_key("2.0.dev3"), None);
        assert_eq!(release_key("2.0+local"), None);
    }

    #[test]
    fn python_requirements_are_read() {
        assert!(supports_py311(None));
        assert!(supports_py311(Some(">=3.8")));
        assert!(supports_py311(Some(">=3.9, <4")));
        assert!(!supports_py311(Some(">=3.12")));
        assert!(!supports_py311(Some(">=3.8,<3.11")));
        assert!(supports_py311(Some(">=2.7, !=3.0.*")));
        assert!(!supports_py311(Some("!=3.11.*")));
        assert!(supports_py311(Some("not a specifier")));
    }

    #[test]
    fn markers_are_judged_for_the_sandbox() {
        let m = |t: &str| Marker::parse(t).unwrap();
        assert_eq!(
            m("extra == \"Testing\"").extra().as_deref(),
            Some("testing")
        );
        assert!(m("extra == 'test' and python_version >= '3.8'").holds_in_sandbox());
        assert!(!m("extra == 'test' and sys_platform == 'win32'").holds_in_sandbox());
        assert!(!m("platform_python_implementation == 'PyPy'").holds_in_sandbox());
        assert!(!m("python_version < '3.11'").holds_in_sandbox());
        assert!(m("platform_system == 'Linux'").holds_in_sandbox());
        assert_eq!(m("python_version < '3.11'").extra(), None);
        assert!(Marker::parse("not ( a marker").is_none());
    }
}
