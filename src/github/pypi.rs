//! From a PyPI package to its GitHub repository: the `project_urls` (and `home_page`) of the
//! index's JSON API, the first that names `github.com/<owner>/<repo>`, cached on disk so a
//! package is asked about once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::GithubError;

/// `owner/name` of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRef {
    pub owner: String,
    pub name: String,
}

impl RepoRef {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

/// Labels of `project_urls` looked at first, in this order (then every other one).
const PREFERRED: &[&str] = &[
    "source",
    "source code",
    "repository",
    "code",
    "github",
    "homepage",
    "home",
    "issues",
    "bug tracker",
    "tracker",
];

/// `owner/repo` from a URL on github.com, if it is one.
pub fn parse_github_url(url: &str) -> Option<RepoRef> {
    let rest = url.trim().split_once("://").map_or(url.trim(), |(_, r)| r);
    let rest = rest.strip_prefix("www.").unwrap_or(rest);
    let path = rest.strip_prefix("github.com/")?;
    let mut parts = path.split(['/', '#', '?']).filter(|p| !p.is_empty());
    let owner = parts.next()?;
    let name = parts.next()?.trim_end_matches(".git");
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if !plain(owner) || !plain(name) || matches!(owner, "sponsors" | "orgs" | "apps") {
        return None;
    }
    Some(RepoRef {
        owner: owner.to_owned(),
        name: name.to_owned(),
    })
}

/// The repository named by a package's metadata, or why none is.
pub fn pick_repo(
    project_urls: &BTreeMap<String, String>,
    home_page: Option<&str>,
) -> Option<RepoRef> {
    let mut ordered: Vec<&String> = Vec::new();
    for want in PREFERRED {
        ordered.extend(
            project_urls
                .iter()
                .filter(|(k, _)| k.trim().to_lowercase() == *want)
                .map(|(_, v)| v),
        );
    }
    ordered.extend(project_urls.values());
    ordered
        .into_iter()
        .map(String::as_str)
        .chain(home_page)
        .find_map(parse_github_url)
}

#[derive(Deserialize)]
struct ProjectJson {
    info: Info,
}

#[derive(Deserialize)]
struct Info {
    #[serde(default)]
    project_urls: Option<BTreeMap<String, String>>,
    #[serde(default)]
    home_page: Option<String>,
}

/// A cached answer: the repository, or why there is none.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    repo: Option<RepoRef>,
    reason: String,
}

/// The JSON API of the index whose simple API is `index_url` (`…/simple` → `…/pypi`).
fn json_url(index_url: &str, package: &str) -> String {
    let base = index_url.trim_end_matches('/');
    let base = base.strip_suffix("/simple").unwrap_or(base);
    format!("{base}/pypi/{}/json", crate::python::normalize(package))
}

fn cache_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("github").join("repos.json")
}

/// The GitHub repository of `package`, from its metadata on the index (cached under
/// `<cache>/github/repos.json`). `Err` is the reason it has none, for the harvest's log.
pub async fn github_repo_of(
    package: &str,
    index_url: &str,
    cache_dir: &Path,
) -> Result<Result<RepoRef, String>, GithubError> {
    let path = cache_path(cache_dir);
    let mut cache: BTreeMap<String, Cached> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let key = crate::python::normalize(package);
    if let Some(c) = cache.get(&key) {
        return Ok(c.repo.clone().ok_or_else(|| c.reason.clone()));
    }
    let url = json_url(index_url, package);
    let http = reqwest::Client::builder()
        .user_agent(concat!("agentao/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| GithubError::Config(e.to_string()))?;
    let resp = http.get(&url).send().await.map_err(|e| GithubError::Http {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let answer = if resp.status() == reqwest::StatusCode::NOT_FOUND {
        Cached {
            repo: None,
            reason: format!("package {key} is not on the index"),
        }
    } else if !resp.status().is_success() {
        return Err(GithubError::Status {
            url,
            status: resp.status().as_u16(),
            message: String::new(),
        });
    } else {
        let project: ProjectJson = resp.json().await.map_err(|e| GithubError::Decode {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let urls = project.info.project_urls.unwrap_or_default();
        match pick_repo(&urls, project.info.home_page.as_deref()) {
            Some(repo) => Cached {
                repo: Some(repo),
                reason: String::new(),
            },
            None => Cached {
                repo: None,
                reason: "no GitHub repository in project_urls or home_page".into(),
            },
        }
    };
    cache.insert(key, answer.clone());
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    if let Ok(text) = serde_json::to_vec_pretty(&cache)
        && std::fs::write(&tmp, text).is_ok()
    {
        let _ = std::fs::rename(&tmp, &path);
    }
    Ok(answer.repo.ok_or(answer.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_urls_name_the_repository() {
        let urls = BTreeMap::from([
            (
                "Documentation".to_owned(),
                "https://click.palletsprojects.com/".to_owned(),
            ),
            (
                "Donate".to_owned(),
                "https://github.com/sponsors/pallets".to_owned(),
            ),
            (
                "Source".to_owned(),
                "https://github.com/pallets/click/".to_owned(),
            ),
        ]);
        let r = pick_repo(&urls, None).unwrap();
        assert_eq!(r.full_name(), "pallets/click");
        assert_eq!(
            parse_github_url("git+https://www.github.com/a-b/c.d.git#egg=x")
                .unwrap()
                .full_name(),
            "a-b/c.d"
        );
        assert_eq!(parse_github_url("https://gitlab.com/a/b"), None);
        assert_eq!(parse_github_url("https://github.com/only-owner"), None);
        let none = BTreeMap::from([("Home".to_owned(), "https://example.org".to_owned())]);
        assert_eq!(
            pick_repo(&none, Some("https://github.com/x/y"))
                .unwrap()
                .name,
            "y"
        );
        assert_eq!(pick_repo(&none, None), None);
        assert_eq!(
            json_url("https://pypi.org/simple/", "Typing_Extensions"),
            "https://pypi.org/pypi/typing-extensions/json"
        );
    }
}
