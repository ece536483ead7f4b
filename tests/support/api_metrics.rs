//! Counting requests through the API server's own metrics (`apiserver_request_total`): how tests
//! prove that a steady-state reconcile writes nothing, without a proxy in between.

use std::collections::BTreeMap;

use super::Cluster;

/// Verbs that change state. Dry runs are excluded: they write nothing.
pub const WRITE_VERBS: &[&str] = &["POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION"];

/// Sums `apiserver_request_total` samples whose labels satisfy `keep`.
pub fn sum_requests(metrics: &str, keep: impl Fn(&BTreeMap<&str, &str>) -> bool) -> u64 {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("apiserver_request_total{"))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once("} ")?;
            let labels: BTreeMap<&str, &str> = labels
                .split("\",")
                .filter_map(|kv| kv.split_once("=\""))
                .map(|(k, v)| (k, v.trim_end_matches('"')))
                .collect();
            keep(&labels).then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .map(|v| v as u64)
        .sum()
}

/// Whether a sample counts as a real write to one of `resources` (all resources when empty).
pub fn is_write_to(labels: &BTreeMap<&str, &str>, resources: &[&str]) -> bool {
    WRITE_VERBS.contains(labels.get("verb").unwrap_or(&""))
        && labels.get("dry_run").is_none_or(|d| d.is_empty())
        && (resources.is_empty() || resources.contains(labels.get("resource").unwrap_or(&"")))
}

impl Cluster {
    /// Writes the API server has served so far to these resources (e.g. `["configmaps"]`).
    /// Compare two readings around the code under test.
    pub fn write_requests(&self, resources: &[&str]) -> u64 {
        let metrics = self.kubectl_ok(&["get", "--raw", "/metrics"]);
        sum_requests(&metrics, |l| is_write_to(l, resources))
    }
}
