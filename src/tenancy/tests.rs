use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::api::GroupKind;

fn policy(name: &str, spec: serde_json::Value) -> Arc<TenantPolicy> {
    let spec: TenantPolicySpec = serde_json::from_value(spec).expect("a policy spec");
    let mut p = TenantPolicy::new(name, spec);
    p.metadata.namespace = Some("ferry-system".into());
    Arc::new(p)
}

fn team_a() -> Arc<TenantPolicy> {
    policy(
        "team-a",
        json!({
            "applicationNamespaces": ["team-a"],
            "sourceRepos": ["https://git.example.com/team-a/*"],
        }),
    )
}

fn app(namespace: &str, spec: serde_json::Value) -> Application {
    let mut spec = spec;
    spec["source"] =
        json!({"repoURL": "https://git.example.com/team-a/deploy.git", "ref": {"branch": "main"}});
    let mut app = Application::new("shop", serde_json::from_value(spec).unwrap());
    app.metadata.namespace = Some(namespace.into());
    app
}

fn tenancy(namespace: &str, policies: &[Arc<TenantPolicy>], lockdown: Lockdown) -> Tenancy {
    Tenancy::new(namespace, policies.iter().cloned(), &lockdown)
}

fn obj<'a>(group: &'a str, kind: &'a str, name: &'a str, namespace: Option<&'a str>) -> Target<'a> {
    Target { group, kind, name, namespace }
}

#[test]
fn a_policy_governs_only_the_namespaces_it_names() {
    let glob = policy("globs", json!({"applicationNamespaces": ["team-*"], "sourceRepos": ["*"]}));
    assert!(tenancy("team-a", &[team_a()], Lockdown::default()).is_governed());
    assert!(!tenancy("team-b", &[team_a()], Lockdown::default()).is_governed());
    assert!(!tenancy("other", std::slice::from_ref(&glob), Lockdown::default()).is_governed());
    assert!(tenancy("team-b", &[glob], Lockdown::default()).is_governed());
}

#[test]
fn file_urls_are_refused_unless_the_flag_allows_them() {
    let t = tenancy("team-a", &[], Lockdown::default());
    let refused = t.check_source("file:///var/cache/ferry/repos/x").unwrap_err();
    assert_eq!(refused.reason(), "SourceNotPermitted");
    assert!(refused.to_string().contains("--allow-file-urls"), "{refused}");
    assert!(t.check_source("FILE:///srv/git").is_err(), "the scheme's case does not matter");
    assert!(t.check_source("https://git.example.com/x.git").is_ok());
    let allowed = tenancy("team-a", &[], Lockdown { allow_file_urls: true, ..Default::default() });
    assert!(allowed.check_source("file:///srv/git/a.git").is_ok());
}

#[test]
fn a_governed_namespace_reads_only_the_repositories_its_policy_allows() {
    let t = tenancy("team-a", &[team_a()], Lockdown::default());
    assert!(t.check_source("https://git.example.com/team-a/deploy.git").is_ok());
    let refused = t.check_source("https://git.example.com/team-b/deploy.git").unwrap_err();
    assert_eq!(refused.reason(), "SourceNotPermitted");
    let message = refused.to_string();
    assert!(message.contains("team-b/deploy.git") && message.contains("ferry-system/team-a"), "{message}");
    assert!(message.contains("https://git.example.com/team-a/*"), "names what is allowed: {message}");
    // Ways to make a URL that matches the glob reach somewhere else.
    for sneaky in [
        "https://git.example.com/team-a/../team-b/deploy.git",
        "https://git.example.com/team-a/./../team-b/x",
        "https://git.example.com/team-a/%2e%2e/team-b/x",
        "https://git.example.com/team-a/%2E%2E%2Fteam-b",
        "https://user:pw@git.example.com/team-a/deploy.git",
        "https://git.example.com/team-a/..\\team-b",
    ] {
        assert!(t.check_source(sneaky).is_err(), "{sneaky} was allowed");
    }
    // Ungoverned namespaces are not limited by another namespace's policy.
    assert!(tenancy("team-b", &[team_a()], Lockdown::default()).check_source("https://x/y").is_ok());
}

#[test]
fn every_governing_policy_must_allow_a_source() {
    let narrow = policy(
        "narrow",
        json!({"applicationNamespaces": ["team-*"], "sourceRepos": ["https://git.example.com/team-a/deploy.git"]}),
    );
    let t = tenancy("team-a", &[team_a(), narrow], Lockdown::default());
    assert!(t.check_source("https://git.example.com/team-a/deploy.git").is_ok());
    let refused = t.check_source("https://git.example.com/team-a/other.git").unwrap_err();
    assert!(refused.to_string().contains("ferry-system/narrow"), "{refused}");
}

#[test]
fn destinations_default_to_the_applications_own_namespace() {
    let t = tenancy("team-a", &[team_a()], Lockdown::default());
    assert!(t.check_destination("team-a").is_ok());
    let refused = t.check_destination("team-b").unwrap_err();
    assert_eq!(refused.reason(), "DestinationNotPermitted");
    assert!(refused.to_string().contains("team-b"), "{refused}");
    let objects =
        [obj("", "ConfigMap", "a", Some("team-a")), obj("apps", "Deployment", "web", Some("team-b"))];
    let refused = t.check_objects(objects).unwrap_err();
    assert_eq!(refused.reason(), "DestinationNotPermitted");
    assert!(refused.to_string().contains("Deployment team-b/web"), "{refused}");
    assert!(!refused.to_string().contains("ConfigMap"), "only what is refused is named: {refused}");
}

#[test]
fn listed_destination_namespaces_replace_the_default() {
    let p = policy(
        "wide",
        json!({"applicationNamespaces": ["team-a"], "sourceRepos": ["*"], "destinationNamespaces": ["team-a-*"]}),
    );
    let t = tenancy("team-a", &[p], Lockdown::default());
    assert!(t.check_destination("team-a-prod").is_ok());
    assert!(t.check_destination("team-a").is_err());
}

#[test]
fn cluster_scoped_objects_need_their_kind_allowed_and_a_namespace_its_name() {
    let t = tenancy("team-a", &[team_a()], Lockdown::default());
    let refused = t.check_objects([obj("", "Namespace", "team-b", None)]).unwrap_err();
    assert_eq!(refused.reason(), "ClusterScopedNotPermitted");
    assert!(refused.to_string().contains("Namespace team-b"), "{refused}");
    assert!(refused.to_string().contains("none"), "{refused}");

    let mut spec = team_a().spec.clone();
    spec.cluster_resources = vec![GroupKind { group: String::new(), kind: "Namespace".into() }];
    spec.destination_namespaces = vec!["team-a".into(), "team-a-*".into()];
    let mut p = TenantPolicy::new("ns", spec);
    p.metadata.namespace = Some("ferry-system".into());
    let t = tenancy("team-a", &[Arc::new(p)], Lockdown::default());
    assert!(t.check_objects([obj("", "Namespace", "team-a-preview", None)]).is_ok());
    let refused = t.check_objects([obj("", "Namespace", "team-b", None)]).unwrap_err();
    assert_eq!(refused.reason(), "DestinationNotPermitted", "another team's Namespace: {refused}");
    let refused =
        t.check_objects([obj("rbac.authorization.k8s.io", "ClusterRole", "admin", None)]).unwrap_err();
    assert_eq!(refused.reason(), "ClusterScopedNotPermitted");
}

#[test]
fn wildcards_in_cluster_resources() {
    let p = policy(
        "any",
        json!({"applicationNamespaces": ["*"], "sourceRepos": ["*"], "clusterResources": [{"group": "rbac.authorization.k8s.io", "kind": "*"}]}),
    );
    let t = tenancy("team-a", &[p], Lockdown::default());
    assert!(t.check_objects([obj("rbac.authorization.k8s.io", "ClusterRole", "x", None)]).is_ok());
    assert!(t.check_objects([obj("storage.k8s.io", "StorageClass", "x", None)]).is_err());
}

#[test]
fn refusals_name_at_most_three_objects() {
    let t = tenancy("team-a", &[team_a()], Lockdown::default());
    let names = ["a", "b", "c", "d", "e"];
    let refused = t.check_objects(names.iter().map(|n| obj("", "ConfigMap", n, Some("team-b")))).unwrap_err();
    assert!(refused.to_string().contains("and 2 more"), "{refused}");
}

#[test]
fn without_a_policy_only_the_flags_apply() {
    let t = tenancy("team-a", &[], Lockdown::default());
    assert!(t.check_objects([obj("", "Namespace", "kube-system", None)]).is_ok());
    assert!(t.check_destination("anywhere").is_ok());
}

#[test]
fn the_service_account_is_the_applications_else_a_policys_else_the_flags() {
    let lockdown = Lockdown { default_service_account: Some("flag-sa".into()), ..Default::default() };
    let with_default = policy(
        "b-default",
        json!({"applicationNamespaces": ["team-a"], "sourceRepos": ["*"], "defaultServiceAccount": "policy-sa"}),
    );
    let t = tenancy("team-a", &[team_a(), with_default], lockdown.clone());
    let own = app("team-a", json!({"serviceAccountName": "own"}));
    assert_eq!(t.service_account(&own).unwrap().as_deref(), Some("own"));
    assert_eq!(t.service_account(&app("team-a", json!({}))).unwrap().as_deref(), Some("policy-sa"));
    let t = tenancy("team-a", &[team_a()], lockdown);
    assert_eq!(t.service_account(&app("team-a", json!({}))).unwrap().as_deref(), Some("flag-sa"));
    let t = tenancy("team-a", &[], Lockdown::default());
    assert_eq!(t.service_account(&app("team-a", json!({}))).unwrap(), None);
}

#[test]
fn a_required_service_account_is_refused_only_when_no_default_applies() {
    let required = Lockdown { require_service_account: true, ..Default::default() };
    let t = tenancy("team-a", &[team_a()], required.clone());
    let refused = t.service_account(&app("team-a", json!({}))).unwrap_err();
    assert_eq!(refused.reason(), "ServiceAccountRequired");
    let with_default = Lockdown { default_service_account: Some("deployer".into()), ..required };
    let t = tenancy("team-a", &[], with_default);
    assert_eq!(t.service_account(&app("team-a", json!({}))).unwrap().as_deref(), Some("deployer"));
}

#[test]
fn following_another_namespace_needs_the_flags_and_every_policy() {
    let promotion = vec!["staging".to_string()];
    let t = tenancy("prod", &[], Lockdown::default());
    assert!(t.check_follow("prod", "web", &[]).is_ok(), "the own namespace is always allowed");
    assert!(t.check_follow("staging", "web", &promotion).is_ok());
    let refused = t.check_follow("staging", "web", &[]).unwrap_err();
    assert_eq!(refused.reason(), "CrossNamespaceRefNotPermitted");
    assert!(refused.to_string().contains("--promotion-namespaces=staging"), "{refused}");

    let locked = tenancy("prod", &[], Lockdown { no_cross_namespace_refs: true, ..Default::default() });
    let refused = locked.check_follow("staging", "web", &["*".to_string()]).unwrap_err();
    assert!(refused.to_string().contains("--no-cross-namespace-refs"), "{refused}");

    let closed = policy("prod", json!({"applicationNamespaces": ["prod"], "sourceRepos": ["*"]}));
    let refused = tenancy("prod", &[closed], Lockdown::default()).check_follow("staging", "web", &promotion);
    assert!(refused.unwrap_err().to_string().contains("allowCrossNamespaceRefs"));
    let open = policy(
        "prod",
        json!({"applicationNamespaces": ["prod"], "sourceRepos": ["*"], "allowCrossNamespaceRefs": true}),
    );
    assert!(tenancy("prod", &[open], Lockdown::default()).check_follow("staging", "web", &promotion).is_ok());
}

#[test]
fn a_governed_application_deploys_only_to_the_cluster_servers_its_policies_list() {
    let none = tenancy("team-a", &[team_a()], Lockdown::default());
    let refused = none.check_cluster_server("team-a/prod", "https://prod.example.com:6443").unwrap_err();
    assert_eq!(refused.reason(), "ClusterNotPermitted");
    assert!(refused.to_string().contains("none (only the cluster ferry runs in)"), "{refused}");
    let prod = policy(
        "prod",
        json!({"applicationNamespaces": ["team-a"], "sourceRepos": ["*"], "clusterServers": ["https://*.prod.example.com:6443"]}),
    );
    let listed = tenancy("team-a", std::slice::from_ref(&prod), Lockdown::default());
    assert!(listed.check_cluster_server("team-a/eu", "https://eu.prod.example.com:6443").is_ok());
    assert!(listed.check_cluster_server("team-a/x", "https://evil.example.com:6443").is_err());
    // Every governing policy must allow it.
    let both = tenancy("team-a", &[prod, team_a()], Lockdown::default());
    assert!(both.check_cluster_server("team-a/eu", "https://eu.prod.example.com:6443").is_err());
    // Ungoverned namespaces are limited by the flags only.
    assert!(
        tenancy("other", &[], Lockdown::default()).check_cluster_server("other/x", "https://x:6443").is_ok()
    );
}
