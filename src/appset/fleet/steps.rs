//! Which clusters each step of a fleet rollout takes. Pure.

use std::collections::BTreeMap;

use crate::{api::FleetStep, appset::selector};

/// A cluster's labels, by cluster name (sorted: `maxClusters` takes the first by name).
pub type Labels = BTreeMap<String, BTreeMap<String, String>>;

/// The clusters of each step, in order. A cluster goes to the first step whose selector
/// matches it and that has room left (`maxClusters`); the clusters no step took form one more,
/// last step (only when there are any).
pub fn assign(steps: &[FleetStep], clusters: &Labels) -> Vec<Vec<String>> {
    let mut left: Vec<&String> = clusters.keys().collect();
    let mut out: Vec<Vec<String>> = Vec::with_capacity(steps.len() + 1);
    for step in steps {
        let selected: Vec<&String> =
            left.iter().copied().filter(|c| selector::matches(&step.selector, &clusters[*c])).collect();
        let room = capacity(step.max_clusters.as_deref(), selected.len());
        let taken: Vec<String> = selected.into_iter().take(room).cloned().collect();
        left.retain(|c| !taken.contains(c));
        out.push(taken);
    }
    if !left.is_empty() {
        out.push(left.into_iter().cloned().collect());
    }
    out
}

/// How many of `selected` clusters a step takes: all without `maxClusters`, else the number,
/// or the percentage of them rounded up (so that `50%` of one cluster is that cluster). A value
/// the schema would have refused takes them all rather than none: holding a cluster back on a
/// typo would stall the rollout unnoticed.
fn capacity(max_clusters: Option<&str>, selected: usize) -> usize {
    let Some(text) = max_clusters else { return selected };
    let parsed = match text.strip_suffix('%') {
        Some(percent) => percent.parse::<usize>().ok().map(|p| (selected * p.min(100)).div_ceil(100)),
        None => text.parse::<usize>().ok(),
    };
    parsed.unwrap_or(selected).min(selected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ClusterSelector;

    fn clusters(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(name, env)| {
                let labels = if env.is_empty() {
                    BTreeMap::new()
                } else {
                    BTreeMap::from([("env".to_string(), env.to_string())])
                };
                (name.to_string(), labels)
            })
            .collect()
    }

    fn step(env: &str, max: Option<&str>) -> FleetStep {
        FleetStep {
            selector: ClusterSelector {
                match_labels: BTreeMap::from([("env".to_string(), env.to_string())]),
                ..Default::default()
            },
            max_clusters: max.map(str::to_string),
            analysis: None,
            pause: false,
        }
    }

    #[test]
    fn each_cluster_goes_to_the_first_step_that_selects_it_and_the_rest_last() {
        let all = clusters(&[("prod-b", "prod"), ("staging-1", "staging"), ("prod-a", "prod"), ("dev", "")]);
        let steps = [step("staging", None), step("prod", Some("50%"))];
        assert_eq!(assign(&steps, &all), [vec!["staging-1"], vec!["prod-a"], vec!["dev", "prod-b"]]);
    }

    #[test]
    fn the_overflow_of_a_step_goes_to_a_later_step_that_selects_it() {
        let all = clusters(&[("p1", "prod"), ("p2", "prod"), ("p3", "prod"), ("p4", "prod"), ("p5", "prod")]);
        let steps = [step("prod", Some("1")), step("prod", Some("40%")), step("prod", None)];
        assert_eq!(assign(&steps, &all), [vec!["p1"], vec!["p2", "p3"], vec!["p4", "p5"]]);
    }

    #[test]
    fn no_last_step_when_every_cluster_is_taken_and_empty_steps_stay() {
        let all = clusters(&[("p1", "prod")]);
        let steps = [step("staging", None), step("prod", None)];
        assert_eq!(assign(&steps, &all), [vec![], vec!["p1".to_string()]]);
        assert_eq!(assign(&[], &all), [vec!["p1".to_string()]]);
        assert!(assign(&steps, &Labels::new()).iter().all(Vec::is_empty));
    }

    #[test]
    fn max_clusters_is_a_number_or_a_percentage_rounded_up() {
        assert_eq!(capacity(None, 7), 7);
        assert_eq!(capacity(Some("2"), 7), 2);
        assert_eq!(capacity(Some("9"), 7), 7);
        assert_eq!(capacity(Some("0"), 7), 0);
        assert_eq!(capacity(Some("25%"), 7), 2);
        assert_eq!(capacity(Some("50%"), 1), 1);
        assert_eq!(capacity(Some("0%"), 3), 0);
        assert_eq!(capacity(Some("150%"), 3), 3);
        assert_eq!(capacity(Some("x"), 3), 3);
    }
}
