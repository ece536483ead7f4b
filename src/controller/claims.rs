//! Objects that two Applications claim. The claimer is refused (its sync applies nothing); the
//! owner is told through an Event. Kept in memory: the claimer re-registers on its next
//! reconcile after a restart.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Mutex,
};

use crate::apply::AppRef;

/// (owner, object description) -> the Applications that also claim it.
#[derive(Default)]
pub struct Claims {
    by_owner: Mutex<BTreeMap<(AppRef, String), BTreeSet<AppRef>>>,
}

impl Claims {
    /// Replaces everything `claimer` claims with `claims` (owner, object). Returns the claims that
    /// are new, so the owners can be told once.
    pub fn set(&self, claimer: &AppRef, claims: &[(AppRef, String)]) -> Vec<(AppRef, String)> {
        let mut map = self.by_owner.lock().expect("claims lock");
        let wanted: BTreeSet<&(AppRef, String)> = claims.iter().collect();
        for (key, claimers) in map.iter_mut() {
            if !wanted.contains(key) {
                claimers.remove(claimer);
            }
        }
        let mut new = Vec::new();
        for claim in claims {
            if map.entry(claim.clone()).or_default().insert(claimer.clone()) {
                new.push(claim.clone());
            }
        }
        map.retain(|_, claimers| !claimers.is_empty());
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_claims_are_reported_and_released_claims_are_forgotten() {
        let claims = Claims::default();
        let a = AppRef { namespace: "t".into(), name: "a".into() };
        let b = AppRef { namespace: "t".into(), name: "b".into() };
        let cm = (a.clone(), "ConfigMap t/shared".to_string());
        assert_eq!(claims.set(&b, std::slice::from_ref(&cm)), vec![cm.clone()]);
        assert!(claims.set(&b, std::slice::from_ref(&cm)).is_empty(), "the same claim is not new");
        assert!(claims.set(&b, &[]).is_empty());
        assert_eq!(claims.set(&b, std::slice::from_ref(&cm)), vec![cm], "released, then new again");
    }
}
