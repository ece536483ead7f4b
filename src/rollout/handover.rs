//! Promotion of a replica-ratio canary by handing its ReplicaSet to the primary, as Argo Rollouts
//! promotes by relabelling ReplicaSets: no pod is created or deleted, and the primary Deployment
//! (the object Git has) is never deleted.
//!
//! The canary's pods run Git's pod template and selector as they are, so the canary's
//! ReplicaSet is one the primary's Deployment controller recognises as running the primary's
//! template once the primary has Git's. That controller adopts an orphaned ReplicaSet its
//! selector matches; it scales the one active ReplicaSet it owns to `spec.replicas` or, with
//! none active, the newest it owns; and it creates a ReplicaSet for a new template unless it is
//! paused. So, when it adopts, the primary must be paused, hold Git's template and count, and
//! own no other ReplicaSet. The stages, each read afresh from what a pass sees:
//!
//! 1. **Fill**: the canary comes up to full size beside the primary, which keeps its pods.
//! 2. **Drain**: the primary, paused, goes to 0 replicas on the stable template.
//! 3. **Release**: its ReplicaSets, all at 0 replicas, are deleted (the one object kind the
//!    hand-over deletes; a Deployment under a strategy keeps its history in Git).
//!    A step that runs the canary alone (`setWeight: 100`) drains and releases already
//!    ([`alone`]), so the usual promotion begins at 4.
//! 4. **Retemplate**: the primary takes Git's template and count, still paused: owning no
//!    ReplicaSet, it scales and creates none.
//! 5. **Orphan**: the canary Deployment is deleted with `propagationPolicy: Orphan`; the garbage
//!    collector takes its owner reference off the ReplicaSet, and the primary's controller
//!    adopts it as the ReplicaSet of its template, already at full size.
//! 6. The primary is unpaused, as Git has it: by `lifecycle`'s end of promotion once it runs
//!    Git's template at full size, or here when it adopted the ReplicaSet as an old one (a
//!    template that differs after all): it then rolls from those pods as usual.
//!
//! A stage that follows an apply of the primary waits for its controller to have seen it
//! (`observedGeneration`), so the controller never acts on a spec ferry has moved past. A
//! hand-over not done within [`DEADLINE`] of the promotion's start falls back to rolling the
//! primary, which is safe from every stage: the canary serves until the primary runs the new
//! template at full size. Pure functions of the observation.

use std::time::Duration;

use super::types::{Canary, Decision, Observed, Primary};

/// How long a hand-over may take before the primary is rolled instead.
pub(super) const DEADLINE: Duration = Duration::from_secs(60);

/// While the primary still runs the stable template (every step passed): this stage's
/// decision, or `None` to roll the primary (no hand-over possible, or past the deadline).
/// `waited`: since the promotion started.
pub(super) fn before_template(o: &Observed<'_>, waited: Duration) -> Option<Decision> {
    if !o.handover || !o.primary.exists || o.replicas <= 0 || waited > DEADLINE {
        return None;
    }
    let full = Canary::Present { replicas: o.replicas };
    let canary_full = o.canary_hash == Some(o.template_hash) && o.canary.settled_at(o.replicas);
    if !canary_full {
        return Some(Decision::new(Primary::Hold { replicas: o.primary.replicas }, full, None));
    }
    let sets = o.primary_sets.unwrap_or_default();
    if !o.primary.drained() || sets.busy > 0 {
        return Some(Decision::new(Primary::Paused { git: false }, full, None));
    }
    // Uncounted (the API server refused the list): no hand-over.
    o.primary_sets?;
    if sets.empty == 0 {
        return Some(Decision::new(Primary::Paused { git: true }, full, None));
    }
    let mut d = Decision::new(Primary::Paused { git: false }, full, None);
    d.release_primary_sets = true;
    // Nothing a watch shows changes when they go: the next stage follows at once.
    d.requeue = Some(Duration::ZERO);
    Some(d)
}

/// While a step runs the canary alone (the primary at 0 replicas): the primary as it is then,
/// and whether its ReplicaSets go this pass. Where a hand-over can follow, the primary is drained
/// paused and its empty ReplicaSets released during the step, so promotion begins at Retemplate.
/// An abort or a later step with the primary back gives it replicas unpaused, and its Deployment
/// controller a new ReplicaSet.
pub(super) fn alone(o: &Observed<'_>) -> (Primary, bool) {
    if !o.handover || !o.primary.exists {
        return (Primary::Hold { replicas: 0 }, false);
    }
    let sets = o.primary_sets.unwrap_or_default();
    (Primary::Paused { git: false }, o.primary.drained() && sets.busy == 0 && sets.empty > 0)
}

/// Once the primary has Git's template: this stage's decision while it is paused, or `None` to
/// unpause it (it adopted the canary's pods, or the deadline passed) or to go on rolling it.
pub(super) fn after_template(o: &Observed<'_>, waited: Duration) -> Option<Decision> {
    if !o.primary.paused {
        return None;
    }
    let git = Primary::Paused { git: true };
    if o.canary.deleting {
        // Being deleted as orphaning: nothing to write until the garbage collector is done.
        return Some(Decision::new(git, Canary::Orphaned, None));
    }
    if o.canary.exists {
        if waited > DEADLINE {
            return None;
        }
        let canary = match o.primary.observed {
            true => Canary::Orphaned,
            false => Canary::Present { replicas: o.canary.replicas },
        };
        return Some(Decision::new(git, canary, None));
    }
    let adopted = o.primary.observed && o.primary.total >= o.replicas;
    (!adopted && waited <= DEADLINE).then(|| Decision::new(git, Canary::Absent, None))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::rollout::{types::OwnedSets, workload::Availability};

    fn settled(replicas: i32) -> Availability {
        Availability::settled(replicas)
    }

    /// Steps done at weight 100: the canary alone at 5, the primary at 0 on the old template.
    fn at_full() -> Observed<'static> {
        Observed {
            revision: "main@sha1:2222222222222222222222222222222222222222",
            template_hash: "new",
            replicas: 5,
            primary_hash: Some("old"),
            primary: settled(0),
            canary: settled(5),
            canary_hash: Some("new"),
            last_applied_revision: None,
            request: None,
            handover: true,
            primary_sets: None,
            now: Timestamp::from_second(1_800_000_000).unwrap(),
        }
    }

    fn decided(d: Option<Decision>) -> Option<(Primary, Canary, bool)> {
        d.map(|d| (d.primary, d.canary, d.release_primary_sets))
    }

    const FULL: Canary = Canary::Present { replicas: 5 };
    const STABLE: Primary = Primary::Paused { git: false };
    const GIT: Primary = Primary::Paused { git: true };

    #[test]
    fn the_primary_is_drained_paused_released_then_given_gits_template() {
        let mut o = at_full();
        let now = Duration::from_secs(1);
        assert_eq!(decided(before_template(&o, now)), Some((STABLE, FULL, false)), "drain");
        o.primary.paused = true;
        o.primary.observed = false;
        assert_eq!(decided(before_template(&o, now)), Some((STABLE, FULL, false)), "until observed");
        o.primary.observed = true;
        o.primary_sets = Some(OwnedSets { empty: 2, busy: 0 });
        let d = before_template(&o, now).unwrap();
        assert_eq!((d.primary, d.canary, d.release_primary_sets), (STABLE, FULL, true), "release");
        assert_eq!(d.requeue, Some(Duration::ZERO));
        // A set the controller has not scaled to 0 yet: wait (no release looping at once).
        o.primary_sets = Some(OwnedSets { empty: 1, busy: 1 });
        let d = before_template(&o, now).unwrap();
        assert_eq!((d.primary, d.canary, d.release_primary_sets, d.requeue), (STABLE, FULL, false, None));
        o.primary_sets = Some(OwnedSets::default());
        assert_eq!(decided(before_template(&o, now)), Some((GIT, FULL, false)), "retemplate");
        // Sets that could not be counted: no hand-over.
        o.primary_sets = None;
        assert_eq!(decided(before_template(&o, now)), None);
    }

    #[test]
    fn a_step_with_the_canary_alone_drains_and_releases_the_primary_ahead() {
        let mut o = at_full();
        assert_eq!(alone(&o), (STABLE, false), "paused first");
        o.primary.paused = true;
        o.primary_sets = Some(OwnedSets { empty: 1, busy: 0 });
        assert_eq!(alone(&o), (STABLE, true));
        o.primary_sets = Some(OwnedSets::default());
        assert_eq!(alone(&o), (STABLE, false), "nothing left to release");
        o.handover = false;
        assert_eq!(alone(&o), (Primary::Hold { replicas: 0 }, false));
    }

    #[test]
    fn a_canary_short_of_full_size_fills_first_beside_the_primarys_pods() {
        let mut o = at_full();
        o.canary = settled(3);
        o.primary = settled(2);
        let d = decided(before_template(&o, Duration::from_secs(1)));
        assert_eq!(d, Some((Primary::Hold { replicas: 2 }, FULL, false)));
        // Pods still terminating on the primary: not drained.
        o.canary = settled(5);
        o.primary = Availability { paused: true, replicas: 0, total: 1, ..settled(0) };
        assert_eq!(decided(before_template(&o, Duration::from_secs(1))), Some((STABLE, FULL, false)));
    }

    #[test]
    fn no_hand_over_without_gits_pods_without_a_primary_or_past_the_deadline() {
        let mut o = at_full();
        o.handover = false;
        assert_eq!(decided(before_template(&o, Duration::from_secs(1))), None);
        let mut o = at_full();
        o.primary.exists = false;
        assert_eq!(decided(before_template(&o, Duration::from_secs(1))), None);
        let o = at_full();
        assert_eq!(decided(before_template(&o, DEADLINE + Duration::from_secs(1))), None);
    }

    #[test]
    fn the_canary_is_orphaned_once_the_paused_primary_saw_gits_template_then_adopted() {
        let now = Duration::from_secs(1);
        let mut o = at_full();
        o.primary_hash = Some("new");
        o.primary = Availability { paused: true, observed: false, ..settled(5) };
        o.primary.total = 0;
        assert_eq!(decided(after_template(&o, now)), Some((GIT, FULL, false)), "until observed");
        o.primary.observed = true;
        assert_eq!(decided(after_template(&o, now)), Some((GIT, Canary::Orphaned, false)));
        o.canary.deleting = true;
        assert_eq!(decided(after_template(&o, now)), Some((GIT, Canary::Orphaned, false)));
        // Gone; not adopted yet: wait, paused.
        o.canary = Availability::default();
        assert_eq!(decided(after_template(&o, now)), Some((GIT, Canary::Absent, false)));
        // Adopted (as new or as old): unpause.
        o.primary.total = 5;
        assert_eq!(decided(after_template(&o, now)), None);
        // Not adopted by the deadline: unpause, the primary rolls.
        o.primary.total = 0;
        assert_eq!(decided(after_template(&o, DEADLINE + now)), None);
        // An unpaused primary rolls as before.
        o.primary.paused = false;
        assert_eq!(decided(after_template(&o, now)), None);
    }

    #[test]
    fn past_the_deadline_a_canary_not_yet_orphaned_stays_and_the_primary_rolls() {
        let mut o = at_full();
        o.primary_hash = Some("new");
        o.primary = Availability { paused: true, ..settled(5) };
        assert_eq!(decided(after_template(&o, DEADLINE + Duration::from_secs(1))), None);
        // One being deleted is left to the garbage collector whatever the time.
        o.canary.deleting = true;
        let d = decided(after_template(&o, DEADLINE + Duration::from_secs(1)));
        assert_eq!(d, Some((GIT, Canary::Orphaned, false)));
    }
}
