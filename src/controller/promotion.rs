//! `ref.fromApplication`: which Applications follow which, and waking a follower when the
//! Application it follows verifies a new revision.
//!
//! The wake-up comes from the Application watch itself, after the reflector stored the event:
//! a follower woken then reads the new `verifiedRevision` from the same store. (Waking it from
//! the reconcile that wrote the status would race the watch, and the follower could read the
//! old value and go back to waiting for its interval.)

use std::collections::HashMap;

use kube::{ResourceExt, runtime::reflector::ObjectRef};

use super::referrers::Referrers;
use crate::api::Application;

/// The verified revision last seen per Application, to wake followers on a change only, and
/// who follows whom.
#[derive(Default)]
pub struct Followers {
    seen: HashMap<(String, String), String>,
    follow: Referrers,
}

impl Followers {
    /// The followers to wake for this watch event of `app`: all of them when its verified
    /// revision is new, none otherwise.
    pub fn on_event(&mut self, app: &Application) -> Vec<ObjectRef<Application>> {
        let own = app.namespace().unwrap_or_default();
        let followed = app
            .spec
            .source
            .from_application()
            .map(|r| ObjectRef::new(&r.name).within(r.namespace.as_deref().unwrap_or(&own)));
        let me = ObjectRef::from_obj(app);
        self.follow.set(&me, followed.into_iter().collect());
        let Some(verified) = app.status.as_ref().and_then(|s| s.verified_revision.as_ref()) else {
            return Vec::new();
        };
        let key = (own, app.name_any());
        if self.seen.get(&key) == Some(verified) {
            return Vec::new();
        }
        self.seen.insert(key, verified.clone());
        self.follow.of(&me)
    }

    /// Forgets a deleted Application.
    pub fn forget(&mut self, app: &Application) {
        self.seen.remove(&(app.namespace().unwrap_or_default(), app.name_any()));
        self.follow.remove(&ObjectRef::from_obj(app));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(ns: &str, name: &str, follows: Option<serde_json::Value>, verified: Option<&str>) -> Application {
        let git_ref = follows
            .map(|f| serde_json::json!({"fromApplication": f}))
            .unwrap_or(serde_json::json!({"branch": "main"}));
        let mut app: Application = serde_json::from_value(serde_json::json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"source": {"repoURL": "https://git.example.com/a.git", "ref": git_ref}}
        }))
        .unwrap();
        if let Some(v) = verified {
            app.status = Some(crate::api::ApplicationStatus {
                verified_revision: Some(v.into()),
                ..Default::default()
            });
        }
        app
    }

    #[test]
    fn followers_are_woken_once_per_newly_verified_revision() {
        let production = app("team", "production", Some(serde_json::json!({"name": "staging"})), None);
        let elsewhere =
            app("other", "prod", Some(serde_json::json!({"name": "staging", "namespace": "team"})), None);
        let unrelated = app("other", "staging-follower", Some(serde_json::json!({"name": "staging"})), None);
        let mut followers = Followers::default();
        for a in [&production, &elsewhere, &unrelated] {
            assert!(followers.on_event(a).is_empty(), "none verified yet");
        }
        assert!(followers.on_event(&app("team", "staging", None, None)).is_empty());
        let woken = followers.on_event(&app("team", "staging", None, Some("main@sha1:a")));
        let mut names: Vec<String> =
            woken.iter().map(|r| format!("{}/{}", r.namespace.clone().unwrap(), r.name)).collect();
        names.sort();
        assert_eq!(names, ["other/prod", "team/production"]);
        assert!(followers.on_event(&app("team", "staging", None, Some("main@sha1:a"))).is_empty());
        assert_eq!(followers.on_event(&app("team", "staging", None, Some("main@sha1:b"))).len(), 2);
    }
}
