//! The ranking of top PyPI packages shipped with agentao (`top_packages.csv`), best first:
//! where the forge looks when no package is named.

const TOP_PACKAGES: &str = include_str!("top_packages.csv");

/// One entry of the shipped ranking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopPackage {
    pub rank: u32,
    pub name: String,
}

/// The shipped ranking of top PyPI packages, best first.
pub fn top_packages() -> Vec<TopPackage> {
    TOP_PACKAGES
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (rank, name) = l.split_once(',')?;
            Some(TopPackage {
                rank: rank.trim().parse().ok()?,
                name: name.trim().to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::normalize;

    #[test]
    fn the_ranking_has_two_hundred_names_in_order() {
        let top = top_packages();
        assert!(top.len() >= 200, "{}", top.len());
        assert!(top.windows(2).all(|w| w[0].rank < w[1].rank));
        let mut names: Vec<_> = top.iter().map(|p| normalize(&p.name)).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), top.len(), "duplicate names");
    }
}
