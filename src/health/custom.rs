//! Custom health as CEL: `spec.healthChecks` and `ferry run --health-checks`, the shape of Flux's
//! `healthCheckExprs`, for kinds whose health ferry's built-in rules do not know (or know
//! differently from what a cluster needs, such as a LoadBalancer Service where nothing hands out
//! addresses).
//!
//! The semantics are Flux's (RFC 0009), so expressions written for Flux work unchanged: the live
//! object's top-level fields are the variables (`status`, `metadata`, `spec`, ...); an object whose
//! controller has not observed its latest generation is Progressing; then `inProgress`, `failed`
//! and `current` are tried in that order and the first that is true decides; none true is
//! Progressing. An expression that cannot be evaluated (`status` does not exist yet) leaves the
//! object Progressing with the error, as Flux waits, so the progress deadline still applies.
//!
//! Expressions are compiled once, when an Application or the cluster-wide file is read, and kept
//! per expression string in a bounded [`ExprCache`]. An expression that does not compile is a
//! validation error naming the field it came from. CEL always terminates, but comprehensions
//! nested in one another multiply their cost by the size of the lists they walk: more than
//! [`MAX_NESTING`] deep is refused, and the parser bounds recursion.

use std::{
    collections::HashMap,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{Arc, LazyLock, Mutex},
};

use cel::{Context, Env, IdedExpr, Program, common::ast::Expr};
use serde_json::Value;

use super::ObjectHealth;
use crate::{api::HealthCheckExpr, api::HealthStatusCode, locks::locked};

/// How many comprehensions (`all`, `exists`, `map`, `filter`, ...) may run inside one another.
pub const MAX_NESTING: usize = 2;

/// Compiled expressions kept by [`ExprCache`]; past it the cache starts over.
const MAX_CACHED: usize = 1024;

/// What a panic inside the CEL crate becomes (caught); the property tests look for it.
pub(crate) const PARSER_PANICKED: &str = "the CEL parser failed";
pub(crate) const INTERPRETER_PANICKED: &str = "the CEL interpreter failed";

/// Longest evaluation error quoted in a health message.
const MAX_ERROR_CHARS: usize = 200;

/// The standard library with the strings extension (`lowerAscii`, `split`, ...), as Flux has.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    if env.add_extension(cel::extensions::strings).is_err() {
        env = Env::stdlib();
    }
    Arc::new(env)
});

/// A check that cannot be used, naming where it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHealthCheck {
    #[error("{field}.{which}: {expression:?} is not a valid CEL expression: {message}")]
    Syntax { field: String, which: &'static str, expression: String, message: String },
    #[error(
        "{field}.{which}: {expression:?} nests comprehensions {depth} deep; at most {MAX_NESTING} may run inside one another"
    )]
    TooDeep { field: String, which: &'static str, expression: String, depth: usize },
    #[error("{field}.apiVersion: {api_version:?} is not GROUP/VERSION or VERSION")]
    ApiVersion { field: String, api_version: String },
    #[error(
        "{field}: a second check for {kind} of group {group:?} (the first is {first}); one per group and kind"
    )]
    Duplicate { field: String, first: String, group: String, kind: String },
}

/// One compiled expression and the text it came from.
#[derive(Debug)]
pub struct Expression {
    source: String,
    program: Program,
}

impl Expression {
    fn compile(source: &str) -> Result<Expression, String> {
        let compiled = catch_unwind(|| ENV.compile(source)).map_err(|_| PARSER_PANICKED.to_string())?;
        let program = compiled.map_err(|errors| {
            let errors = errors.errors.iter().map(|e| format!("{}:{}: {}", e.pos.0, e.pos.1, e.msg));
            errors.collect::<Vec<_>>().join("; ")
        })?;
        Ok(Expression { source: source.to_string(), program })
    }

    /// True, false, or why it is neither.
    fn is_true(&self, context: &Context) -> Result<bool, String> {
        let result = catch_unwind(AssertUnwindSafe(|| self.program.execute(context)))
            .map_err(|_| INTERPRETER_PANICKED.to_string())?;
        match result {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("the result is a {:?}, not a bool", other.type_of())),
            Err(e) => Err(shortened(e.to_string())),
        }
    }
}

fn shortened(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(MAX_ERROR_CHARS) {
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// How deeply comprehensions run inside one another's loop: a comprehension's range, initial
/// value and result run once, its condition and step once per element.
fn nesting(e: &IdedExpr) -> usize {
    let max = |it: &mut dyn Iterator<Item = &IdedExpr>| it.map(nesting).max().unwrap_or(0);
    match &e.expr {
        Expr::Comprehension(c) => {
            let once = max(&mut [&c.iter_range, &c.accu_init, &c.result].into_iter());
            let per_element = 1 + max(&mut [&c.loop_cond, &c.loop_step].into_iter());
            once.max(per_element)
        }
        Expr::Call(call) => max(&mut call.target.iter().map(|t| &**t).chain(&call.args)),
        Expr::List(list) => max(&mut list.elements.iter()),
        Expr::Select(select) => nesting(&select.operand),
        Expr::Map(map) => max(&mut map.entries.iter().flat_map(entry_exprs)),
        Expr::Struct(s) => max(&mut s.entries.iter().flat_map(entry_exprs)),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => 0,
    }
}

fn entry_exprs(e: &cel::common::ast::IdedEntryExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        cel::common::ast::EntryExpr::StructField(f) => vec![&f.value],
        cel::common::ast::EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
    }
}

/// Compiled expressions by their text, shared by every Application: one per distinct
/// expression, whoever wrote it. Bounded: past [`MAX_CACHED`] it starts over (the expressions in
/// use are compiled again on their next pass).
#[derive(Debug, Default)]
pub struct ExprCache {
    compiled: Mutex<HashMap<String, Arc<Expression>>>,
}

impl ExprCache {
    fn get(&self, source: &str) -> Result<Arc<Expression>, String> {
        if let Some(found) = locked(&self.compiled).get(source) {
            return Ok(found.clone());
        }
        let compiled = Arc::new(Expression::compile(source)?);
        let mut cache = locked(&self.compiled);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(source.to_string(), compiled.clone());
        Ok(compiled)
    }

    /// The expression `which` of the check at `field`, compiled (or as compiled before).
    fn expression(
        &self,
        field: &str,
        which: &'static str,
        source: &str,
    ) -> Result<Arc<Expression>, InvalidHealthCheck> {
        let expression = source.to_string();
        let compiled = self.get(source).map_err(|message| InvalidHealthCheck::Syntax {
            field: field.to_string(),
            which,
            expression: expression.clone(),
            message,
        })?;
        let depth = nesting(compiled.program.expression());
        if depth > MAX_NESTING {
            return Err(InvalidHealthCheck::TooDeep { field: field.to_string(), which, expression, depth });
        }
        Ok(compiled)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        locked(&self.compiled).len()
    }
}

/// One check, compiled: which objects (group and kind; the version is not compared) and where
/// it was written (`spec.healthChecks[0]`), for messages.
#[derive(Debug)]
pub struct CompiledCheck {
    pub group: String,
    pub kind: String,
    pub origin: String,
    current: Arc<Expression>,
    in_progress: Option<Arc<Expression>>,
    failed: Option<Arc<Expression>>,
}

impl CompiledCheck {
    fn compile(
        entry: &HealthCheckExpr,
        field: String,
        cache: &ExprCache,
    ) -> Result<Self, InvalidHealthCheck> {
        let group = match entry.api_version.split('/').collect::<Vec<_>>()[..] {
            [version] if !version.is_empty() => "",
            [group, version] if !group.is_empty() && !version.is_empty() => group,
            _ => {
                return Err(InvalidHealthCheck::ApiVersion { field, api_version: entry.api_version.clone() });
            }
        };
        let optional = |which, e: &Option<String>| e.as_deref().map(|e| cache.expression(&field, which, e));
        Ok(CompiledCheck {
            group: group.to_string(),
            kind: entry.kind.clone(),
            current: cache.expression(&field, "current", &entry.current)?,
            in_progress: optional("inProgress", &entry.in_progress).transpose()?,
            failed: optional("failed", &entry.failed).transpose()?,
            origin: field,
        })
    }

    /// The object's health by this check (Flux's order: inProgress, failed, current).
    pub fn evaluate(&self, obj: &Value) -> ObjectHealth {
        if let Some(h) =
            super::rules::not_observed(obj).filter(|_| obj["status"]["observedGeneration"].is_i64())
        {
            return h;
        }
        let context = match context(obj) {
            Ok(context) => context,
            Err(e) => {
                return ObjectHealth::new(HealthStatusCode::Progressing, format!("{}: {e}", self.origin));
            }
        };
        let tried = [
            ("inProgress", self.in_progress.as_ref(), HealthStatusCode::Progressing),
            ("failed", self.failed.as_ref(), HealthStatusCode::Degraded),
            ("current", Some(&self.current), HealthStatusCode::Healthy),
        ];
        for (which, expression, status) in tried {
            let Some(expression) = expression else { continue };
            match expression.is_true(&context) {
                Ok(false) => {}
                Ok(true) if status == HealthStatusCode::Healthy => return ObjectHealth::healthy(),
                Ok(true) => {
                    let message = format!("{}.{which} is true: {}", self.origin, expression.source);
                    return ObjectHealth::new(status, message);
                }
                Err(e) => {
                    let message = format!("{}.{which} cannot be evaluated yet: {e}", self.origin);
                    return ObjectHealth::new(HealthStatusCode::Progressing, message);
                }
            }
        }
        let message = format!("{}.current is not true yet: {}", self.origin, self.current.source);
        ObjectHealth::new(HealthStatusCode::Progressing, message)
    }
}

/// The object's top-level fields as CEL variables.
fn context(obj: &Value) -> Result<Context<'static, 'static>, String> {
    let mut context = Context::with_env(ENV.clone());
    for (name, value) in obj.as_object().into_iter().flatten() {
        context
            .add_variable(name.as_str(), value)
            .map_err(|e| format!("field {name} cannot be read: {e}"))?;
    }
    Ok(context)
}

/// The checks that apply to an Application, by group and kind: its own, then the cluster-wide
/// ones for kinds it does not check itself. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct HealthChecks {
    by_kind: Arc<HashMap<(String, String), Arc<CompiledCheck>>>,
}

impl HealthChecks {
    /// Compiles `entries`, named `{field}[i]` in messages (`spec.healthChecks`). Two entries for
    /// the same group and kind are an error, as in Flux.
    pub fn compile(
        entries: &[HealthCheckExpr],
        field: &str,
        cache: &ExprCache,
    ) -> Result<HealthChecks, InvalidHealthCheck> {
        let mut by_kind: HashMap<(String, String), Arc<CompiledCheck>> = HashMap::new();
        for (i, entry) in entries.iter().enumerate() {
            let check = CompiledCheck::compile(entry, format!("{field}[{i}]"), cache)?;
            let key = (check.group.clone(), check.kind.clone());
            if let Some(first) = by_kind.get(&key) {
                return Err(InvalidHealthCheck::Duplicate {
                    field: check.origin,
                    first: first.origin.clone(),
                    group: key.0,
                    kind: key.1,
                });
            }
            by_kind.insert(key, Arc::new(check));
        }
        Ok(HealthChecks { by_kind: Arc::new(by_kind) })
    }

    /// These checks, with `fallback`'s for the kinds these do not check.
    pub fn over(self, fallback: &HealthChecks) -> HealthChecks {
        if self.by_kind.is_empty() {
            return fallback.clone();
        }
        let mut merged = (*fallback.by_kind).clone();
        merged.extend(self.by_kind.iter().map(|(k, v)| (k.clone(), v.clone())));
        HealthChecks { by_kind: Arc::new(merged) }
    }

    /// The check for objects of `group` and `kind`, if any.
    pub fn find(&self, group: &str, kind: &str) -> Option<&CompiledCheck> {
        if self.by_kind.is_empty() {
            return None;
        }
        self.by_kind.get(&(group.to_string(), kind.to_string())).map(|c| &**c)
    }

    pub fn len(&self) -> usize {
        self.by_kind.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_kind.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::HealthStatusCode::{Degraded, Healthy, Progressing};

    fn entry(api_version: &str, kind: &str, current: &str) -> HealthCheckExpr {
        HealthCheckExpr {
            api_version: api_version.into(),
            kind: kind.into(),
            current: current.into(),
            ..Default::default()
        }
    }

    /// A check on `example.com/Widget` with all three expressions, over `status.phase`.
    fn widget_check() -> HealthChecks {
        let e = HealthCheckExpr {
            in_progress: Some("status.phase == 'Working'".into()),
            failed: Some("status.phase == 'Failed' || status.phase == 'Working'".into()),
            ..entry("example.com/v1", "Widget", "status.phase == 'Ready'")
        };
        HealthChecks::compile(&[e], "spec.healthChecks", &ExprCache::default()).unwrap()
    }

    fn widget(status: Value) -> Value {
        json!({"apiVersion": "example.com/v1beta1", "kind": "Widget",
               "metadata": {"name": "w", "generation": 3}, "status": status})
    }

    fn judge(checks: &HealthChecks, obj: &Value) -> (HealthStatusCode, String) {
        let h = super::super::assess(obj, checks);
        (h.status, h.message.unwrap_or_default())
    }

    #[test]
    fn the_first_true_expression_decides_in_fluxs_order() {
        let checks = widget_check();
        assert_eq!(judge(&checks, &widget(json!({"phase": "Ready"}))), (Healthy, String::new()));
        assert_eq!(
            judge(&checks, &widget(json!({"phase": "Failed"}))),
            (
                Degraded,
                "spec.healthChecks[0].failed is true: status.phase == 'Failed' || status.phase == 'Working'"
                    .into()
            )
        );
        // inProgress is tried before failed, which is true too.
        assert_eq!(
            judge(&checks, &widget(json!({"phase": "Working"}))),
            (Progressing, "spec.healthChecks[0].inProgress is true: status.phase == 'Working'".into())
        );
        // None true: Progressing, naming what it waits for.
        assert_eq!(
            judge(&checks, &widget(json!({"phase": "Pending"}))),
            (Progressing, "spec.healthChecks[0].current is not true yet: status.phase == 'Ready'".into())
        );
    }

    #[test]
    fn an_unobserved_generation_is_progressing_whatever_the_expressions_say() {
        let checks = widget_check();
        let stale = widget(json!({"phase": "Ready", "observedGeneration": 2}));
        assert_eq!(judge(&checks, &stale).0, Progressing);
        let current = widget(json!({"phase": "Ready", "observedGeneration": 3}));
        assert_eq!(judge(&checks, &current).0, Healthy);
    }

    #[test]
    fn an_expression_that_cannot_be_evaluated_leaves_the_object_progressing() {
        let checks = widget_check();
        let no_status = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
        let (status, message) = judge(&checks, &no_status);
        assert_eq!(status, Progressing);
        assert!(
            message.starts_with("spec.healthChecks[0].inProgress cannot be evaluated yet: "),
            "{message}"
        );
        assert!(message.contains("status"), "{message}");
        // Not a bool.
        let c =
            HealthChecks::compile(&[entry("v1", "Pod", "status.phase")], "f", &ExprCache::default()).unwrap();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Running"}});
        let (status, message) = judge(&c, &pod);
        assert_eq!(status, Progressing);
        assert!(message.contains("not a bool"), "{message}");
    }

    #[test]
    fn conditions_can_be_filtered_as_in_the_flux_library() {
        let e = HealthCheckExpr {
            failed: Some(
                "status.conditions.filter(e, e.type == 'Synced').all(e, e.status == 'False')".into(),
            ),
            ..entry(
                "bitnami.com/v1alpha1",
                "SealedSecret",
                "status.conditions.filter(e, e.type == 'Synced').all(e, e.status == 'True')",
            )
        };
        let checks = HealthChecks::compile(&[e], "spec.healthChecks", &ExprCache::default()).unwrap();
        let sealed = |s: &str| {
            json!({"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret", "metadata": {"name": "s"},
                   "status": {"conditions": [{"type": "Synced", "status": s}]}})
        };
        assert_eq!(judge(&checks, &sealed("True")).0, Healthy);
        assert_eq!(judge(&checks, &sealed("False")).0, Degraded);
    }

    #[test]
    fn checks_match_group_and_kind_and_leave_other_kinds_to_the_rules() {
        let checks = widget_check();
        // Another group, same kind: ferry's generic rule (no conditions: healthy).
        let other = json!({"apiVersion": "other.io/v1", "kind": "Widget", "status": {"phase": "Failed"}});
        assert_eq!(judge(&checks, &other).0, Healthy);
        let lb = json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "LoadBalancer"}});
        assert_eq!(judge(&checks, &lb).0, Progressing, "the built-in rule still waits for an address");
        // Being deleted beats the check.
        let mut deleting = widget(json!({"phase": "Ready"}));
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(judge(&checks, &deleting).0, Progressing);
    }

    #[test]
    fn an_applications_check_beats_the_cluster_wide_one_which_beats_the_rules() {
        let cache = ExprCache::default();
        let lb_ok = entry("v1", "Service", "spec.type == 'LoadBalancer'");
        let cluster = HealthChecks::compile(&[lb_ok], "--health-checks f", &cache).unwrap();
        let lb = json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "LoadBalancer"}});
        assert_eq!(judge(&HealthChecks::default(), &lb).0, Progressing, "rules: waits for an address");
        let none = HealthChecks::default().over(&cluster);
        assert_eq!(judge(&none, &lb).0, Healthy, "the cluster-wide check applies");
        let app_rule = entry("v1", "Service", "has(status.loadBalancer.ingress)");
        let own = HealthChecks::compile(&[app_rule], "spec.healthChecks", &cache).unwrap().over(&cluster);
        let (status, message) = judge(&own, &lb);
        assert_eq!(status, Progressing);
        assert!(
            message.starts_with("spec.healthChecks[0]"),
            "the Application's own check decides: {message}"
        );
    }

    #[test]
    fn invalid_checks_are_errors_naming_the_field() {
        let cache = ExprCache::default();
        let bad = HealthCheckExpr { failed: Some("status.phase ==".into()), ..entry("v1", "Pod", "true") };
        let err = HealthChecks::compile(&[entry("v1", "Service", "true"), bad], "spec.healthChecks", &cache)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "spec.healthChecks[1].failed: \"status.phase ==\" is not a valid CEL expression: "
            ),
            "{err}"
        );
        let err =
            HealthChecks::compile(&[entry("a/b/c", "X", "true")], "spec.healthChecks", &cache).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.healthChecks[0].apiVersion: \"a/b/c\" is not GROUP/VERSION or VERSION"
        );
        let twice = [entry("apps/v1", "Deployment", "true"), entry("apps/v1beta2", "Deployment", "false")];
        let err = HealthChecks::compile(&twice, "spec.healthChecks", &cache).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.healthChecks[1]: a second check for Deployment of group \"apps\" (the first is spec.healthChecks[0]); one per group and kind"
        );
    }

    #[test]
    fn nested_comprehensions_are_bounded_and_chained_ones_are_not_nested() {
        let cache = ExprCache::default();
        let compile = |e: &str| HealthChecks::compile(&[entry("v1", "Pod", e)], "f", &cache);
        // Chained: each runs once over the other's result.
        assert!(compile("status.conditions.filter(c, c.type == 'Ready').all(c, c.status == 'True')").is_ok());
        // Two deep: every container has a ready status.
        assert!(
            compile(
                "spec.containers.all(c, status.containerStatuses.exists(s, s.name == c.name && s.ready))"
            )
            .is_ok()
        );
        let three = "spec.a.all(x, spec.b.all(y, spec.c.all(z, x == y && y == z)))";
        assert_eq!(
            compile(three).unwrap_err(),
            InvalidHealthCheck::TooDeep {
                field: "f[0]".into(),
                which: "current",
                expression: three.into(),
                depth: 3
            }
        );
    }

    #[test]
    fn hostile_expressions_are_errors_not_panics() {
        let cache = ExprCache::default();
        let deep = format!("{}true{}", "(".repeat(5000), ")".repeat(5000));
        for e in ["", ")", "'unterminated", "a.b.c(", "\u{0}", "[[[[", deep.as_str(), "1 +"] {
            let result = HealthChecks::compile(&[entry("v1", "Pod", e)], "f", &cache);
            assert!(matches!(result, Err(InvalidHealthCheck::Syntax { .. })), "{e:.20}: {result:?}");
        }
    }

    #[test]
    fn overflows_and_bad_indexes_are_evaluation_errors_not_panics() {
        let cache = ExprCache::default();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Running", "n": 9223372036854775807i64}});
        for e in [
            "status.n + 1 > 0",
            "-9223372036854775808 / -1 == 0",
            "-9223372036854775808 % -1 == 0",
            "1 / 0 == 0",
            "1 % 0 == 0",
            "[1][5] == 1",
            "status.phase.substring(50) == ''",
            "status.phase.charAt(-1) == ''",
            "uint(-1) == 0u",
            "int(1e300) == 0",
            "status.phase.matches('[a-') ",
        ] {
            let checks = HealthChecks::compile(&[entry("v1", "Pod", e)], "f", &cache).unwrap();
            let (status, message) = judge(&checks, &pod);
            assert_eq!(status, Progressing, "{e}: {message}");
            assert!(!message.contains(INTERPRETER_PANICKED), "{e}: {message}");
        }
    }

    #[test]
    fn expressions_are_compiled_once_and_the_cache_is_bounded() {
        let cache = ExprCache::default();
        let e = entry("v1", "Pod", "true");
        let a = HealthChecks::compile(std::slice::from_ref(&e), "f", &cache).unwrap();
        let b = HealthChecks::compile(std::slice::from_ref(&e), "g", &cache).unwrap();
        let expr = |c: &HealthChecks| c.find("", "Pod").map(|c| Arc::as_ptr(&c.current));
        assert_eq!(expr(&a), expr(&b), "the same expression is compiled once");
        assert_eq!(cache.len(), 1);
        for i in 0..MAX_CACHED + 5 {
            cache.get(&format!("{i} == {i}")).unwrap();
        }
        assert!(cache.len() <= MAX_CACHED, "{}", cache.len());
    }
}
