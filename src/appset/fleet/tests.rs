//! The fleet rollout's state machine, pass by pass, over three clusters: `staging-1`
//! (env=staging), `prod-a` and `prod-b` (env=prod); steps env=staging, then env=prod at 50%,
//! then the rest (`prod-b`).

use std::{future::Future, sync::Mutex, time::Duration};

use serde_json::{Value, json};

use super::{progress::tests::*, *};
use crate::rollout::types::MeasureError;

const T0: &str = "2026-03-01T10:00:00Z";

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn strategy(extra: Value) -> FleetStrategy {
    let mut steps = json!([
        {"selector": {"matchLabels": {"env": "staging"}}},
        {"selector": {"matchLabels": {"env": "prod"}}, "maxClusters": "50%"},
    ]);
    if let Some(first) = extra.get("first") {
        steps[0].as_object_mut().unwrap().extend(first.as_object().unwrap().clone());
    }
    serde_json::from_value(
        json!({"steps": steps, "progressDeadline": extra.get("deadline").cloned().unwrap_or(json!("10m"))}),
    )
    .unwrap()
}

fn labels() -> Labels {
    let env = |e: &str| BTreeMap::from([("env".to_string(), e.to_string())]);
    Labels::from([
        ("staging-1".into(), env("staging")),
        ("prod-a".into(), env("prod")),
        ("prod-b".into(), env("prod")),
    ])
}

/// The live Applications of the three clusters (`app-<cluster>`), as given.
struct Live {
    apps: BTreeMap<&'static str, Application>,
}

impl Live {
    fn new(apps: &[(&'static str, Option<&str>, Value)]) -> Live {
        Live {
            apps: apps
                .iter()
                .map(|(cluster, pin, status)| {
                    (*cluster, app(&format!("app-{cluster}"), *pin, status.clone()))
                })
                .collect(),
        }
    }

    fn members(&self) -> Vec<Member<'_>> {
        [("app-prod-a", "prod-a"), ("app-prod-b", "prod-b"), ("app-staging-1", "staging-1")]
            .into_iter()
            .map(|(app, cluster)| Member { app, cluster, live: self.apps.get(cluster) })
            .collect()
    }
}

/// Measurements from a script, recording the step words each was asked with.
#[derive(Default)]
struct Script {
    values: Mutex<Vec<Taken>>,
    asked: Mutex<Vec<(usize, Vec<String>)>>,
}

impl Script {
    fn of(values: &[Taken]) -> Script {
        Script { values: Mutex::new(values.iter().rev().cloned().collect()), ..Default::default() }
    }
}

impl MeasureStep for Script {
    fn measure(&self, _metric: &AnalysisMetric, vars: StepVars<'_>) -> impl Future<Output = Taken> + Send {
        self.asked.lock().unwrap().push((vars.step, vars.clusters.to_vec()));
        let next = self.values.lock().unwrap().pop().unwrap_or(Err(MeasureError::NoAddress));
        std::future::ready(next)
    }
}

struct Case<'a> {
    strategy: FleetStrategy,
    live: &'a Live,
    target: &'a str,
    prev: Option<FleetRolloutStatus>,
    request: Option<&'a str>,
    now: &'a str,
}

impl Case<'_> {
    fn run_with(&self, measure: &Script) -> Plan {
        let members = self.live.members();
        let labels = labels();
        let fleet = Fleet {
            set: "fleet",
            strategy: &self.strategy,
            members: &members,
            labels: &labels,
            target: self.target,
            prev: self.prev.as_ref(),
            request: self.request,
            now: at(self.now),
        };
        futures::executor::block_on(plan(&fleet, measure))
    }

    fn run(&self) -> Plan {
        self.run_with(&Script::default())
    }
}

fn case<'a>(live: &'a Live, target: &'a str, prev: Option<FleetRolloutStatus>) -> Case<'a> {
    Case { strategy: strategy(json!({})), live, target, prev, request: None, now: T0 }
}

fn pin(plan: &Plan, app: &str) -> Pin {
    plan.pins[app].clone()
}

fn commit(c: &str) -> Pin {
    Pin::Commit(c.to_string())
}

fn reasons(plan: &Plan) -> Vec<&str> {
    plan.notes.iter().map(|n| n.reason).collect()
}

#[test]
fn a_new_set_creates_only_the_first_steps_applications() {
    let live = Live::new(&[]);
    let plan = case(&live, V1, None).run();
    assert_eq!(pin(&plan, "app-staging-1"), commit(V1));
    assert_eq!(pin(&plan, "app-prod-a"), Pin::NotYet);
    assert_eq!(pin(&plan, "app-prod-b"), Pin::NotYet);
    let st = &plan.status;
    assert_eq!((st.phase, st.step, st.steps), (FleetRolloutPhase::Progressing, 0, 3));
    assert_eq!(st.clusters, [vec!["staging-1"], vec!["prod-a"], vec!["prod-b"]]);
    assert_eq!(
        st.message.as_deref(),
        Some(
            "step 1/3 (staging-1): waiting for Application app-staging-1 on cluster staging-1: not created yet"
        )
    );
    assert_eq!(reasons(&plan), [STARTED]);
    assert!(plan.requeue.is_some_and(|r| r <= POLL), "{:?}", plan.requeue);
}

#[test]
fn each_done_step_hands_the_commit_to_the_next_until_every_cluster_has_it() {
    let live = Live::new(&[("staging-1", Some(V1), done_at(V1))]);
    let first = case(&live, V1, None).run();
    assert_eq!((first.status.phase, first.status.step), (FleetRolloutPhase::Progressing, 1));
    assert_eq!(pin(&first, "app-prod-a"), commit(V1));
    assert_eq!(pin(&first, "app-prod-b"), Pin::NotYet, "the last step has not come");
    assert_eq!(reasons(&first), [STARTED, STEP]);
    assert_eq!(first.status.step_started_at, Some(Time(at(T0))));

    let live = Live::new(&[
        ("staging-1", Some(V1), done_at(V1)),
        ("prod-a", Some(V1), done_at(V1)),
        ("prod-b", Some(V1), done_at(V1)),
    ]);
    let last = case(&live, V1, Some(first.status)).run();
    assert_eq!((last.status.phase, last.status.step), (FleetRolloutPhase::Completed, 3));
    assert_eq!(last.status.message.as_deref(), Some("1111111 rolled out to 3 clusters in 3 steps"));
    assert!(last.pins.values().all(|p| *p == commit(V1)), "{:?}", last.pins);
    assert_eq!(reasons(&last), [STEP, COMPLETED]);
    assert_eq!(last.requeue, None);
    // Nothing more happens, nor is said, once completed.
    let again = case(&live, V1, Some(last.status.clone())).run();
    assert_eq!((again.status, again.notes), (last.status, vec![]));
}

#[test]
fn a_pause_waits_for_one_promote_and_an_old_request_does_not_promote_again() {
    let live = Live::new(&[("staging-1", Some(V1), done_at(V1))]);
    let mut c = case(&live, V1, None);
    c.strategy = strategy(json!({"first": {"pause": true}}));
    let paused = c.run();
    assert_eq!((paused.status.phase, paused.status.step), (FleetRolloutPhase::Paused, 0));
    assert_eq!(pin(&paused, "app-prod-a"), Pin::NotYet);
    assert_eq!(
        paused.status.message.as_deref(),
        Some("step 1/3 (staging-1) done; paused: run ferry promote --set fleet to go on")
    );
    assert_eq!(reasons(&paused), [STARTED, PAUSED]);
    assert_eq!(paused.requeue, None);

    c.prev = Some(paused.status.clone());
    let still = c.run();
    assert_eq!((still.status.phase, reasons(&still)), (FleetRolloutPhase::Paused, vec![]));

    c.request = Some("promote@2026-03-01T10:05:00Z");
    let promoted = c.run();
    assert_eq!((promoted.status.phase, promoted.status.step), (FleetRolloutPhase::Progressing, 1));
    assert_eq!(promoted.status.promoted_step, Some(0));
    assert_eq!(promoted.status.handled_request.as_deref(), c.request);
    assert_eq!(pin(&promoted, "app-prod-a"), commit(V1));

    // The next rollout pauses again: the handled request is remembered across commits.
    let live = Live::new(&[("staging-1", Some(V2), done_at(V2)), ("prod-a", Some(V1), done_at(V1))]);
    let mut next = case(&live, V2, Some(promoted.status));
    next.strategy = c.strategy.clone();
    next.request = c.request;
    let plan = next.run();
    assert_eq!((plan.status.phase, plan.status.step), (FleetRolloutPhase::Paused, 0));
    assert_eq!(pin(&plan, "app-prod-a"), commit(V1));
}

#[test]
fn a_promote_with_no_pause_to_end_is_said_to_be_ignored() {
    let live = Live::new(&[("staging-1", Some(V1), progressing_at(V1))]);
    let mut c = case(&live, V1, None);
    c.request = Some("promote@2026-03-01T10:05:00Z");
    let plan = c.run();
    assert_eq!(plan.status.phase, FleetRolloutPhase::Progressing);
    assert_eq!(reasons(&plan), [STARTED, REQUEST_IGNORED]);
    assert_eq!(plan.status.handled_request.as_deref(), c.request);
}

/// V1 is everywhere; V2 reached staging and prod-a, whose PostSync hook failed.
fn failing_at_prod_a() -> (Live, FleetRolloutStatus) {
    let live = Live::new(&[
        ("staging-1", Some(V2), done_at(V2)),
        ("prod-a", Some(V2), stalled_at(V2, "VerificationFailed", "Job smoke failed")),
        ("prod-b", Some(V1), done_at(V1)),
    ]);
    let mut prev = case(&live, V2, None).run().status;
    prev.step = 1;
    prev.phase = FleetRolloutPhase::Progressing;
    (live, prev)
}

#[test]
fn a_failed_application_stops_the_rollout_and_names_its_cluster() {
    let (live, prev) = failing_at_prod_a();
    let plan = case(&live, V2, Some(prev)).run();
    let st = &plan.status;
    assert_eq!((st.phase, st.step), (FleetRolloutPhase::Failed, 1));
    assert_eq!(st.failed_cluster.as_deref(), Some("prod-a"));
    assert_eq!(
        st.message.as_deref(),
        Some(
            "step 2/3 (prod-a): Application app-prod-a failed on cluster prod-a: VerificationFailed: Job smoke failed"
        )
    );
    let note = &plan.notes[0];
    assert!(note.warning && note.reason == FAILED, "{note:?}");
    assert_eq!(
        note.message,
        "rollout of 2222222 stopped at step 2/3 (prod-a): Application app-prod-a failed on cluster prod-a: VerificationFailed: Job smoke failed; later steps keep their commit"
    );
    assert_eq!(pin(&plan, "app-prod-a"), commit(V2));
    assert_eq!(pin(&plan, "app-prod-b"), commit(V1), "the later step keeps the old commit");
    assert_eq!(plan.requeue, None);

    // It stays Failed, silently, until the commit changes.
    let again = case(&live, V2, Some(plan.status.clone())).run();
    assert_eq!((again.status, again.notes), (plan.status.clone(), vec![]));
    let fixed = case(&live, V3, Some(plan.status)).run();
    assert_eq!((fixed.status.phase, fixed.status.step), (FleetRolloutPhase::Progressing, 0));
    assert_eq!((fixed.status.failed_cluster.as_ref(), reasons(&fixed)), (None, vec![STARTED]));
}

#[test]
fn a_new_commit_starts_over_and_updated_applications_keep_theirs_until_their_step() {
    // V2 reached staging and prod-a when V3 came.
    let live = Live::new(&[
        ("staging-1", Some(V2), done_at(V2)),
        ("prod-a", Some(V2), progressing_at(V2)),
        ("prod-b", Some(V1), done_at(V1)),
    ]);
    let mut prev = case(&live, V2, None).run().status;
    prev.step = 1;
    let plan = case(&live, V3, Some(prev)).run();
    assert_eq!((plan.status.revision.as_str(), plan.status.step), (V3, 0));
    assert_eq!(pin(&plan, "app-staging-1"), commit(V3));
    assert_eq!(pin(&plan, "app-prod-a"), commit(V2));
    assert_eq!(pin(&plan, "app-prod-b"), commit(V1));
}

#[test]
fn applications_on_a_branch_before_the_strategy_keep_the_commit_they_applied() {
    let mut on_branch = done_at(V1);
    on_branch["lastAppliedRevision"] = json!(format!("main@sha1:{V1}"));
    let live = Live::new(&[("staging-1", None, on_branch.clone()), ("prod-a", None, on_branch)]);
    let plan = case(&live, V2, None).run();
    assert_eq!(pin(&plan, "app-staging-1"), commit(V2));
    assert_eq!(pin(&plan, "app-prod-a"), commit(V1));
    assert_eq!(pin(&plan, "app-prod-b"), Pin::NotYet);
}

#[test]
fn a_step_past_its_progress_deadline_fails_naming_the_cluster_it_waits_for() {
    let live = Live::new(&[("staging-1", Some(V1), progressing_at(V1))]);
    let mut c = case(&live, V1, None);
    c.strategy = strategy(json!({"deadline": "5m"}));
    let started = c.run();
    c.prev = Some(started.status);
    c.now = "2026-03-01T10:04:00Z";
    let waiting = c.run();
    assert_eq!(waiting.status.phase, FleetRolloutPhase::Progressing);
    assert_eq!(waiting.requeue, Some(POLL));
    c.now = "2026-03-01T10:04:58Z";
    assert_eq!(c.run().requeue, Some(Duration::from_secs(2)), "woken for the deadline");
    c.now = "2026-03-01T10:05:00Z";
    let late = c.run();
    assert_eq!(
        (late.status.phase, late.status.failed_cluster.as_deref()),
        (FleetRolloutPhase::Failed, Some("staging-1"))
    );
    assert_eq!(
        late.status.message.as_deref(),
        Some(
            "step 1/3 (staging-1): Application app-staging-1 on cluster staging-1 is not Synced and Healthy at 1111111 after 5m: Progressing: waiting for Deployment web"
        )
    );
    assert_eq!(reasons(&late), [FAILED]);
}

fn with_analysis(count: i32) -> FleetStrategy {
    strategy(json!({"first": {"analysis": {"metrics": [{
        "name": "errors", "prometheus": {"query": "sum(errors{cluster=~\"{{clusters}}\"})"},
        "interval": "30s", "count": count, "successCondition": "result < 1", "failureCondition": "result > 5"
    }]}}}))
}

#[test]
fn an_analysis_measures_the_done_step_then_lets_it_go_on() {
    let live = Live::new(&[("staging-1", Some(V1), done_at(V1))]);
    let mut c = case(&live, V1, None);
    c.strategy = with_analysis(2);
    let script = Script::of(&[Ok(Some(0.0)), Ok(Some(0.5))]);
    let first = c.run_with(&script);
    assert_eq!((first.status.phase, first.status.step), (FleetRolloutPhase::Analyzing, 0));
    assert_eq!(first.requeue, Some(Duration::from_secs(30)));
    assert_eq!(
        first.status.message.as_deref(),
        Some("step 1/3 (staging-1): analysis running (errors: 1 successful, last 0)")
    );
    assert_eq!(pin(&first, "app-prod-a"), Pin::NotYet);
    assert_eq!(*script.asked.lock().unwrap(), [(1, vec!["staging-1".to_string()])]);

    c.prev = Some(first.status);
    c.now = "2026-03-01T10:00:30Z";
    let second = c.run_with(&script);
    assert_eq!((second.status.phase, second.status.step), (FleetRolloutPhase::Progressing, 1));
    let run = second.status.analysis.as_ref().unwrap();
    assert_eq!((run.step, run.phase.as_str(), run.measurements.len()), (0, "Successful", 2));
    assert_eq!(pin(&second, "app-prod-a"), commit(V1));
}

#[test]
fn a_failed_analysis_fails_the_rollout_and_an_inconclusive_one_waits_for_a_person() {
    let live = Live::new(&[("staging-1", Some(V1), done_at(V1))]);
    let mut c = case(&live, V1, None);
    c.strategy = with_analysis(1);
    let failed = c.run_with(&Script::of(&[Ok(Some(9.0))]));
    assert_eq!(
        (failed.status.phase, failed.status.failed_cluster.as_ref()),
        (FleetRolloutPhase::Failed, None)
    );
    assert_eq!(
        failed.status.message.as_deref(),
        Some("step 1/3 (staging-1): analysis Failed (errors: 1 failed, last 9)")
    );
    assert_eq!(pin(&failed, "app-prod-a"), Pin::NotYet);

    let unsure = c.run_with(&Script::of(&[Ok(Some(3.0))]));
    assert_eq!(unsure.status.phase, FleetRolloutPhase::Paused);
    assert_eq!(reasons(&unsure), [STARTED, PAUSED]);
    c.prev = Some(unsure.status);
    c.request = Some("promote@2026-03-01T10:01:00Z");
    let promoted = c.run_with(&Script::default());
    assert_eq!((promoted.status.phase, promoted.status.step), (FleetRolloutPhase::Progressing, 1));
}

#[test]
fn a_failure_during_the_analysis_or_the_pause_still_stops_the_rollout() {
    let live = Live::new(&[(
        "staging-1",
        Some(V1),
        stalled_at(V1, "HealthCheckFailed", "Deployment web: degraded"),
    )]);
    for phase in [FleetRolloutPhase::Analyzing, FleetRolloutPhase::Paused] {
        let mut prev = case(&live, V1, None).run().status;
        prev.phase = phase;
        let plan = case(&live, V1, Some(prev)).run();
        assert_eq!(
            (plan.status.phase, plan.status.failed_cluster.as_deref()),
            (FleetRolloutPhase::Failed, Some("staging-1"))
        );
    }
}

#[test]
fn applications_of_ferrys_own_cluster_and_of_unknown_clusters_go_to_the_last_step() {
    let live = Live::new(&[]);
    let members = [
        Member { app: "here", cluster: LOCAL, live: None },
        Member { app: "there", cluster: "gone", live: None },
        Member { app: "stage", cluster: "staging-1", live: None },
    ];
    let (strategy, labels) = (strategy(json!({})), labels());
    let fleet = Fleet {
        set: "fleet",
        strategy: &strategy,
        members: &members,
        labels: &labels,
        target: V1,
        prev: None,
        request: None,
        now: at(T0),
    };
    let plan = futures::executor::block_on(plan(&fleet, &Script::default()));
    assert_eq!(
        plan.status.clusters,
        [vec!["staging-1".to_string()], vec![], vec![LOCAL.to_string(), "gone".to_string()]]
    );
    assert_eq!(pin(&plan, "stage"), commit(V1));
    assert_eq!(pin(&plan, "here"), Pin::NotYet);
    let _ = live;
}
