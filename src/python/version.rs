//! PEP 440 versions: which release the forge picks by itself and whether a `Requires-Python`
//! admits the sandbox's interpreter.

/// and anything else the forge does not pick by itself.
pub fn release_key(version: &str) -> Option<Vec<u64>> {
    let mut key = Vec::new();
    for part in version.split('.') {
        if let Some(post) = part.strip_prefix("post") {
            key.push(u64::MAX / 2);
            key.push(post.parse().ok()?);
        } else {
            key.push(part.parse().ok()?);
        }
    }
    Some(key)
}

/// Whether a `Requires-Python` specifier admits CPython 3.11 (the base image's Python). Only
/// lower bounds above 3.11 and upper bounds at or below it are recognised; anything else
/// passes, and the baseline run catches the rest.
pub fn supports_py311(spec: Option<&str>) -> bool {
    let Some(spec) = spec else { return true };
    for clause in spec.split(',').map(str::trim) {
        let (op, v) = ["<=", ">=", "==", "~=", "<", ">"]
            .iter()
            .find_map(|op| clause.strip_prefix(op).map(|v| (*op, v.trim())))
            .unwrap_or(("", ""));
        let mut parts = v
            .split('.')
            .map(|p| p.trim_end_matches(".*").parse::<u32>());
        let (Some(Ok(major)), minor) = (parts.next(), parts.next()) else {
            continue;
        };
        let minor = minor.and_then(Result::ok).unwrap_or(0);
        let other = (major, minor);
        let ok = match op {
            ">=" | "~=" => (3, 11) >= other,
            ">" => (3, 11) > other || (other == (3, 11) && v.split('.').count() > 2),
            "<" => (3, 11) < other,
            "<=" => (3, 11) <= other,
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Unpacks a `.tar.gz` sdist into `dest` (which must not exist), dropping the archive's
/// top-level folder. Refuses absolute paths, `..`, and links that leave the tree; other links

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_releases_sort_and_pre_releases_are_left_out() {
        assert!(release_key("1.10.0") > release_key("1.9.2"));
        assert!(release_key("1.2.post1") > release_key("1.2"));
        assert_eq!(release_key("2.0rc1"), None);
        assert_eq!(release_key("2.0.dev3"), None);
    }

    #[test]
    fn python_requirements_are_read() {
        assert!(supports_py311(None));
        assert!(supports_py311(Some(">=3.8")));
        assert!(supports_py311(Some(">=3.9, <4")));
        assert!(!supports_py311(Some(">=3.12")));
        assert!(!supports_py311(Some(">=3.8,<3.11")));
        assert!(supports_py311(Some(">=2.7, !=3.0.*")));
    }
}
