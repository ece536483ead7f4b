//! Label selectors over Clusters, with Kubernetes' meaning: every `matchLabels` entry and every
//! expression must hold, and an empty selector selects everything. Pure.

use std::collections::BTreeMap;

use crate::api::{ClusterSelector, LabelExpression, LabelOperator};

/// Whether `labels` satisfy `selector`.
pub fn matches(selector: &ClusterSelector, labels: &BTreeMap<String, String>) -> bool {
    selector.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        && selector.match_expressions.iter().all(|e| holds(e, labels))
}

/// One expression. `NotIn` holds for a missing key, as in Kubernetes (`env NotIn (prod)`
/// selects clusters without an `env` label too).
fn holds(expression: &LabelExpression, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&expression.key);
    let listed = value.is_some_and(|v| expression.values.contains(v));
    match expression.operator {
        LabelOperator::In => listed,
        LabelOperator::NotIn => !listed,
        LabelOperator::Exists => value.is_some(),
        LabelOperator::DoesNotExist => value.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expression(key: &str, operator: LabelOperator, values: &[&str]) -> ClusterSelector {
        ClusterSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelExpression {
                key: key.into(),
                operator,
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
        }
    }

    #[test]
    fn an_empty_selector_selects_every_cluster() {
        assert!(matches(&ClusterSelector::default(), &labels(&[])));
        assert!(matches(&ClusterSelector::default(), &labels(&[("env", "prod")])));
    }

    #[test]
    fn match_labels_need_every_pair() {
        let selector = ClusterSelector {
            match_labels: labels(&[("env", "prod"), ("region", "eu")]),
            ..Default::default()
        };
        assert!(matches(&selector, &labels(&[("env", "prod"), ("region", "eu"), ("tier", "1")])));
        assert!(!matches(&selector, &labels(&[("env", "prod")])));
        assert!(!matches(&selector, &labels(&[("env", "prod"), ("region", "us")])));
    }

    #[test]
    fn in_needs_the_key_with_a_listed_value() {
        let selector = expression("env", LabelOperator::In, &["staging", "prod"]);
        assert!(matches(&selector, &labels(&[("env", "prod")])));
        assert!(!matches(&selector, &labels(&[("env", "dev")])));
        assert!(!matches(&selector, &labels(&[])));
    }

    #[test]
    fn not_in_holds_for_other_values_and_for_a_missing_key() {
        let selector = expression("env", LabelOperator::NotIn, &["prod"]);
        assert!(!matches(&selector, &labels(&[("env", "prod")])));
        assert!(matches(&selector, &labels(&[("env", "staging")])));
        assert!(matches(&selector, &labels(&[("region", "eu")])));
    }

    #[test]
    fn exists_and_does_not_exist_look_at_the_key_only() {
        let exists = expression("canary", LabelOperator::Exists, &[]);
        let absent = expression("canary", LabelOperator::DoesNotExist, &[]);
        let with = labels(&[("canary", "")]);
        let without = labels(&[("env", "prod")]);
        assert!(matches(&exists, &with) && !matches(&exists, &without));
        assert!(!matches(&absent, &with) && matches(&absent, &without));
    }

    #[test]
    fn labels_and_expressions_must_all_hold() {
        let mut selector = expression("region", LabelOperator::In, &["eu"]);
        selector.match_labels = labels(&[("env", "prod")]);
        assert!(matches(&selector, &labels(&[("env", "prod"), ("region", "eu")])));
        assert!(!matches(&selector, &labels(&[("env", "prod"), ("region", "us")])));
        assert!(!matches(&selector, &labels(&[("env", "staging"), ("region", "eu")])));
    }
}
