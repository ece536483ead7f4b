//! Analysis of a rollout: what one Prometheus measurement says, and what a run of measurements
//! concludes. Plain data in, plain data out; the controller does the querying and the waiting.
//!
//! The semantics follow Argo Rollouts' AnalysisRun, which is what users of progressive delivery
//! know:
//!
//! - A measurement with only a `successCondition` is Successful when it holds, else Failed; with
//!   only a `failureCondition`, Failed when it holds, else Successful; with both, Failed when the
//!   failure condition holds, Successful when the success condition holds, else Inconclusive.
//! - No data (an empty result, or NaN such as an error rate of 0/0 without traffic) is what
//!   `noData` says: Inconclusive (the default), Fail or Pass.
//! - A run fails once more than `failureLimit` measurements failed, is inconclusive once more
//!   than `inconclusiveLimit` were, errs once more than `consecutiveErrorLimit` queries in a row
//!   could not be made, and succeeds after `count` measurements otherwise.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

/// A condition over the query's result: comparisons of `result` with numbers, joined by `&&`
/// and `||` (or `and`, `or`), negated with `!` (or `not`), grouped with parentheses.
/// Examples: `result < 0.05`, `result >= 0.99 && result <= 1`, `0.5 > result`.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    Compare { op: Op, left: Operand, right: Operand },
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Operand {
    Result,
    Number(f64),
}

/// Why a condition could not be read.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error(
    "condition {text:?}: {message} (at character {at}); write e.g. `result < 0.05` or `result >= 0.99 && result <= 1`"
)]
pub struct ConditionError {
    pub text: String,
    pub at: usize,
    pub message: String,
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let tokens = tokenize(text)?;
        let mut parser = Parser { text, tokens, pos: 0, depth: 0 };
        let condition = parser.or()?;
        match parser.peek() {
            None => Ok(condition),
            Some((at, token)) => Err(parser.error(at, format!("unexpected {token}"))),
        }
    }

    /// The condition for this result. Comparisons with NaN are false, as in IEEE arithmetic,
    /// but callers treat NaN as no data before they get here.
    pub fn holds(&self, result: f64) -> bool {
        match self {
            Condition::Compare { op, left, right } => {
                let value = |o: &Operand| match o {
                    Operand::Result => result,
                    Operand::Number(n) => *n,
                };
                let (l, r) = (value(left), value(right));
                match op {
                    Op::Lt => l < r,
                    Op::Le => l <= r,
                    Op::Gt => l > r,
                    Op::Ge => l >= r,
                    Op::Eq => l == r,
                    Op::Ne => l != r,
                }
            }
            Condition::And(a, b) => a.holds(result) && b.holds(result),
            Condition::Or(a, b) => a.holds(result) || b.holds(result),
            Condition::Not(c) => !c.holds(result),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Result,
    Number(f64),
    Op(Op),
    And,
    Or,
    Not,
    Open,
    Close,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Result => write!(f, "`result`"),
            Token::Number(n) => write!(f, "number {n}"),
            Token::Op(_) => write!(f, "comparison"),
            Token::And => write!(f, "`&&`"),
            Token::Or => write!(f, "`||`"),
            Token::Not => write!(f, "`!`"),
            Token::Open => write!(f, "`(`"),
            Token::Close => write!(f, "`)`"),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ConditionError> {
    let err = |at: usize, message: String| ConditionError { text: text.to_string(), at, message };
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let two = text.get(i..i + 2).unwrap_or("");
        let (token, len) = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => (Token::Open, 1),
            b')' => (Token::Close, 1),
            _ if two == "&&" => (Token::And, 2),
            _ if two == "||" => (Token::Or, 2),
            _ if two == "<=" => (Token::Op(Op::Le), 2),
            _ if two == ">=" => (Token::Op(Op::Ge), 2),
            _ if two == "==" => (Token::Op(Op::Eq), 2),
            _ if two == "!=" => (Token::Op(Op::Ne), 2),
            b'<' => (Token::Op(Op::Lt), 1),
            b'>' => (Token::Op(Op::Gt), 1),
            b'!' => (Token::Not, 1),
            b'=' => return Err(err(i, "`=` is not a comparison; use `==`".to_string())),
            b'0'..=b'9' | b'.' | b'-' | b'+' => {
                let end = i + text[i..]
                    .find(|ch: char| !(ch.is_ascii_digit() || matches!(ch, '.' | 'e' | 'E' | '-' | '+')))
                    .unwrap_or(text.len() - i);
                // A sign after the first character belongs to an exponent only.
                let literal = &text[i..end];
                let n: f64 = literal
                    .parse()
                    .ok()
                    .filter(|n: &f64| n.is_finite())
                    .ok_or_else(|| err(i, format!("{literal:?} is not a number")))?;
                (Token::Number(n), end - i)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = i + text[i..]
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .unwrap_or(text.len() - i);
                let word = &text[i..end];
                let token = match word {
                    "result" => Token::Result,
                    "and" => Token::And,
                    "or" => Token::Or,
                    "not" => Token::Not,
                    _ => return Err(err(i, format!("unknown name {word:?}; the only value is `result`"))),
                };
                (token, end - i)
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(err(i, format!("unexpected character {ch:?}")));
            }
        };
        tokens.push((i, token));
        i += len;
    }
    Ok(tokens)
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(usize, Token)>,
    pos: usize,
    /// `(` and `not` open right now: the parser recurses on each, and a condition is an
    /// author's text, so the depth is bounded rather than left to the stack.
    depth: usize,
}

/// Deepest nesting of parentheses and `not` a condition may have.
const MAX_DEPTH: usize = 32;

impl Parser<'_> {
    fn error(&self, at: usize, message: String) -> ConditionError {
        ConditionError { text: self.text.to_string(), at, message }
    }

    fn peek(&self) -> Option<(usize, &Token)> {
        self.tokens.get(self.pos).map(|(at, t)| (*at, t))
    }

    fn next(&mut self) -> Result<(usize, Token), ConditionError> {
        let item = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        item.ok_or_else(|| self.error(self.text.len(), "the condition ends too early".to_string()))
    }

    fn or(&mut self) -> Result<Condition, ConditionError> {
        let mut left = self.and()?;
        while matches!(self.peek(), Some((_, Token::Or))) {
            self.pos += 1;
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, ConditionError> {
        let mut left = self.unary()?;
        while matches!(self.peek(), Some((_, Token::And))) {
            self.pos += 1;
            left = Condition::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Condition, ConditionError> {
        if let Some((at, Token::Not | Token::Open)) = self.peek()
            && self.depth >= MAX_DEPTH
        {
            return Err(self.error(at, format!("nested more than {MAX_DEPTH} levels deep")));
        }
        self.depth += 1;
        let parsed = self.nested();
        self.depth -= 1;
        parsed
    }

    fn nested(&mut self) -> Result<Condition, ConditionError> {
        match self.peek() {
            Some((_, Token::Not)) => {
                self.pos += 1;
                Ok(Condition::Not(Box::new(self.unary()?)))
            }
            Some((_, Token::Open)) => {
                self.pos += 1;
                let inner = self.or()?;
                match self.next()? {
                    (_, Token::Close) => Ok(inner),
                    (at, t) => Err(self.error(at, format!("expected `)`, found {t}"))),
                }
            }
            _ => self.comparison(),
        }
    }

    fn comparison(&mut self) -> Result<Condition, ConditionError> {
        let left = self.operand()?;
        let op = match self.next()? {
            (_, Token::Op(op)) => op,
            (at, t) => {
                return Err(
                    self.error(at, format!("expected a comparison (<, <=, >, >=, ==, !=), found {t}"))
                );
            }
        };
        let at = self.peek().map(|(at, _)| at).unwrap_or(self.text.len());
        let right = self.operand()?;
        if !matches!(left, Operand::Result) && !matches!(right, Operand::Result) {
            return Err(self.error(at, "a comparison must involve `result`".to_string()));
        }
        Ok(Condition::Compare { op, left, right })
    }

    fn operand(&mut self) -> Result<Operand, ConditionError> {
        match self.next()? {
            (_, Token::Result) => Ok(Operand::Result),
            (_, Token::Number(n)) => Ok(Operand::Number(n)),
            (at, t) => Err(self.error(at, format!("expected `result` or a number, found {t}"))),
        }
    }
}

/// What no data means for a measurement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NoData {
    #[default]
    Inconclusive,
    Fail,
    Pass,
}

/// The verdict on one measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Successful,
    Failed,
    Inconclusive,
    /// The query could not be made or its answer not read.
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Successful => "Successful",
            Verdict::Failed => "Failed",
            Verdict::Inconclusive => "Inconclusive",
            Verdict::Error => "Error",
        }
    }
}

/// Judges one measurement: `value` is the query's single number, `None` for no data.
pub fn judge(
    value: Option<f64>,
    success: Option<&Condition>,
    failure: Option<&Condition>,
    no_data: NoData,
) -> Verdict {
    let Some(v) = value.filter(|v| !v.is_nan()) else {
        return match no_data {
            NoData::Inconclusive => Verdict::Inconclusive,
            NoData::Fail => Verdict::Failed,
            NoData::Pass => Verdict::Successful,
        };
    };
    match (success, failure) {
        (_, Some(f)) if f.holds(v) => Verdict::Failed,
        (Some(s), Some(_)) => {
            if s.holds(v) {
                Verdict::Successful
            } else {
                Verdict::Inconclusive
            }
        }
        (Some(s), None) => {
            if s.holds(v) {
                Verdict::Successful
            } else {
                Verdict::Failed
            }
        }
        (None, _) => Verdict::Successful,
    }
}

/// The limits of one analysis run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Measurements to take before the run can succeed (at least 1).
    pub count: u32,
    pub failure_limit: u32,
    pub inconclusive_limit: u32,
    pub consecutive_error_limit: u32,
}

impl Default for Limits {
    /// Argo Rollouts' defaults: one measurement, no failure or inconclusive allowed, four
    /// query errors in a row tolerated.
    fn default() -> Self {
        Limits { count: 1, failure_limit: 0, inconclusive_limit: 0, consecutive_error_limit: 4 }
    }
}

/// The measurements of a run so far, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub successful: u32,
    pub failed: u32,
    pub inconclusive: u32,
    pub errors: u32,
    pub consecutive_errors: u32,
}

impl Tally {
    pub fn with(mut self, verdict: Verdict) -> Tally {
        match verdict {
            Verdict::Successful => self.successful += 1,
            Verdict::Failed => self.failed += 1,
            Verdict::Inconclusive => self.inconclusive += 1,
            Verdict::Error => self.errors += 1,
        }
        self.consecutive_errors = if verdict == Verdict::Error { self.consecutive_errors + 1 } else { 0 };
        self
    }

    /// Measurements that produced a verdict (errors are retried, so they do not count).
    pub fn measured(&self) -> u32 {
        self.successful + self.failed + self.inconclusive
    }
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// More measurements to take.
    Running,
    Successful,
    Failed,
    /// Pauses the rollout for a person (`ferry promote` or `ferry abort`).
    Inconclusive,
    /// Too many query errors in a row: aborts, as a failure does.
    Error,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "Running",
            Phase::Successful => "Successful",
            Phase::Failed => "Failed",
            Phase::Inconclusive => "Inconclusive",
            Phase::Error => "Error",
        }
    }
}

/// The phase of a run with this tally: failure first (a failed run stays failed even if it also
/// reached its count), then errors, then inconclusive, then success once `count` verdicts exist.
pub fn phase(tally: &Tally, limits: &Limits) -> Phase {
    if tally.failed > limits.failure_limit {
        Phase::Failed
    } else if tally.consecutive_errors > limits.consecutive_error_limit {
        Phase::Error
    } else if tally.inconclusive > limits.inconclusive_limit {
        Phase::Inconclusive
    } else if tally.measured() >= limits.count.max(1) {
        Phase::Successful
    } else {
        Phase::Running
    }
}

/// Why a query template could not be filled in.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error(
        "query refers to {{{{{0}}}}}, which is not one of {{{{revision}}}}, {{{{namespace}}}}, {{{{workload}}}}, {{{{variant}}}}"
    )]
    Unknown(String),
    #[error("query has a `{{{{` without its `}}}}`")]
    Unclosed,
}

/// The names a query may refer to.
pub const TEMPLATE_NAMES: [&str; 4] = ["revision", "namespace", "workload", "variant"];

/// Fills `{{name}}` (spaces inside the braces allowed) from `vars`.
pub fn render_query(template: &str, vars: &BTreeMap<&str, String>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(TemplateError::Unclosed)?;
        let name = after[..end].trim();
        let value = vars.get(name).ok_or_else(|| TemplateError::Unknown(name.to_string()))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Why a Prometheus answer could not be read as one number.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum AnswerError {
    #[error("Prometheus answered with an error: {0}")]
    Prometheus(String),
    #[error("the query returned {0} series; analysis needs one number (aggregate with sum(), max(), …)")]
    ManySeries(usize),
    #[error("Prometheus's answer is not understood: {0}")]
    Malformed(String),
}

/// Reads the single number of an instant query's answer (`/api/v1/query`): a scalar, or a
/// vector of one sample. An empty vector is no data (`Ok(None)`), as is NaN.
pub fn read_answer(body: &serde_json::Value) -> Result<Option<f64>, AnswerError> {
    let status = body.get("status").and_then(|s| s.as_str()).unwrap_or("");
    if status != "success" {
        let message = body.get("error").and_then(|e| e.as_str()).unwrap_or("no error message");
        return Err(AnswerError::Prometheus(message.to_string()));
    }
    let data = body.get("data").ok_or_else(|| AnswerError::Malformed("no data".to_string()))?;
    let kind = data.get("resultType").and_then(|t| t.as_str()).unwrap_or("");
    let result = data.get("result").ok_or_else(|| AnswerError::Malformed("no data.result".to_string()))?;
    let sample = match kind {
        "scalar" => Some(result),
        "vector" => {
            let series = result
                .as_array()
                .ok_or_else(|| AnswerError::Malformed("data.result is not a list".to_string()))?;
            match series.len() {
                0 => None,
                1 => Some(
                    series[0]
                        .get("value")
                        .ok_or_else(|| AnswerError::Malformed("a sample without value".to_string()))?,
                ),
                n => return Err(AnswerError::ManySeries(n)),
            }
        }
        other => {
            return Err(AnswerError::Malformed(format!(
                "result type {other:?}; use an instant query that returns a scalar or one sample"
            )));
        }
    };
    let Some(sample) = sample else { return Ok(None) };
    // A sample is [<unix time>, "<value>"]; Prometheus writes NaN and infinities as strings too.
    let text = sample
        .get(1)
        .and_then(|v| v.as_str())
        .ok_or_else(|| AnswerError::Malformed("a sample is not [time, \"value\"]".to_string()))?;
    let value: f64 = match text {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        t => t.parse().map_err(|_| AnswerError::Malformed(format!("value {t:?} is not a number")))?,
    };
    Ok(if value.is_nan() { None } else { Some(value) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(text: &str) -> Condition {
        Condition::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn conditions_compare_result_with_numbers() {
        assert!(c("result < 0.05").holds(0.01));
        assert!(!c("result < 0.05").holds(0.05));
        assert!(c("result <= 0.05").holds(0.05));
        assert!(c("result >= 0.99").holds(1.0));
        assert!(c("0.5 > result").holds(0.4));
        assert!(c("result == 1").holds(1.0));
        assert!(c("result != 1").holds(2.0));
        assert!(c("result > -1e3").holds(-999.0));
        assert!(c("result>=.5").holds(0.5));
    }

    #[test]
    fn conditions_combine_with_precedence() {
        let both = c("result >= 0.99 && result <= 1");
        assert!(both.holds(0.995));
        assert!(!both.holds(1.5));
        // && binds tighter than ||.
        let mixed = c("result < 0 || result > 10 && result < 20");
        assert!(mixed.holds(-1.0));
        assert!(mixed.holds(15.0));
        assert!(!mixed.holds(25.0));
        assert!(c("(result < 0 || result > 10) and result < 20").holds(15.0));
        assert!(c("!(result < 0.5)").holds(0.7));
        assert!(c("not result < 0.5 or result == 0").holds(0.0));
    }

    #[test]
    fn bad_conditions_say_where_and_why() {
        for (text, at, words) in [
            ("", 0, "ends too early"),
            ("result <", 8, "ends too early"),
            ("result = 1", 7, "use `==`"),
            ("latency < 1", 0, "unknown name \"latency\""),
            ("1 < 2", 4, "must involve `result`"),
            ("result < 1 result", 11, "unexpected `result`"),
            ("(result < 1", 11, "ends too early"),
            ("result < 1..2", 9, "is not a number"),
            ("result < 5 # x", 11, "unexpected character '#'"),
        ] {
            let err = Condition::parse(text).expect_err(text);
            assert_eq!(err.at, at, "{text}: {err}");
            assert!(err.to_string().contains(words), "{text}: {err}");
        }
    }

    #[test]
    fn a_measurement_is_judged_as_argo_rollouts_does() {
        let ok = c("result < 0.05");
        let bad = c("result > 0.2");
        // Only a success condition.
        assert_eq!(judge(Some(0.01), Some(&ok), None, NoData::default()), Verdict::Successful);
        assert_eq!(judge(Some(0.1), Some(&ok), None, NoData::default()), Verdict::Failed);
        // Only a failure condition.
        assert_eq!(judge(Some(0.3), None, Some(&bad), NoData::default()), Verdict::Failed);
        assert_eq!(judge(Some(0.1), None, Some(&bad), NoData::default()), Verdict::Successful);
        // Both: the band between them is inconclusive.
        assert_eq!(judge(Some(0.01), Some(&ok), Some(&bad), NoData::default()), Verdict::Successful);
        assert_eq!(judge(Some(0.1), Some(&ok), Some(&bad), NoData::default()), Verdict::Inconclusive);
        assert_eq!(judge(Some(0.3), Some(&ok), Some(&bad), NoData::default()), Verdict::Failed);
        // No data, and NaN, follow noData.
        assert_eq!(judge(None, Some(&ok), None, NoData::Inconclusive), Verdict::Inconclusive);
        assert_eq!(judge(Some(f64::NAN), Some(&ok), None, NoData::Fail), Verdict::Failed);
        assert_eq!(judge(None, Some(&ok), None, NoData::Pass), Verdict::Successful);
    }

    #[test]
    fn a_run_concludes_by_its_limits() {
        let limits = Limits { count: 3, failure_limit: 1, inconclusive_limit: 0, consecutive_error_limit: 2 };
        let run = |verdicts: &[Verdict]| {
            let tally = verdicts.iter().fold(Tally::default(), |t, v| t.with(*v));
            phase(&tally, &limits)
        };
        use Verdict::*;
        assert_eq!(run(&[]), Phase::Running);
        assert_eq!(run(&[Successful, Successful]), Phase::Running);
        assert_eq!(run(&[Successful, Successful, Successful]), Phase::Successful);
        // One failure is within the limit; the second is not.
        assert_eq!(run(&[Failed, Successful, Successful]), Phase::Successful);
        assert_eq!(run(&[Failed, Successful, Failed]), Phase::Failed);
        assert_eq!(run(&[Inconclusive]), Phase::Inconclusive);
        // Errors are retried and do not count as measurements; only a streak past the limit ends
        // the run.
        assert_eq!(run(&[Error, Error, Successful, Error, Error]), Phase::Running);
        assert_eq!(run(&[Successful, Error, Error, Error]), Phase::Error);
        assert_eq!(run(&[Error, Successful, Error, Successful, Successful]), Phase::Successful);
        // A zero count still takes one measurement.
        let once = Limits { count: 0, ..Limits::default() };
        assert_eq!(phase(&Tally::default(), &once), Phase::Running);
        assert_eq!(phase(&Tally::default().with(Successful), &once), Phase::Successful);
    }

    #[test]
    fn queries_are_filled_from_the_rollout() {
        let vars: BTreeMap<&str, String> = [
            ("revision", "main@sha1:abc".to_string()),
            ("namespace", "shop".to_string()),
            ("workload", "web".to_string()),
            ("variant", "canary".to_string()),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            render_query(
                r#"sum(rate(errors{ns="{{namespace}}",app="{{ workload }}-{{variant}}"}[1m]))"#,
                &vars
            ),
            Ok(r#"sum(rate(errors{ns="shop",app="web-canary"}[1m]))"#.to_string())
        );
        assert_eq!(render_query("up", &vars), Ok("up".to_string()));
        assert_eq!(render_query("x{{pod}}", &vars), Err(TemplateError::Unknown("pod".to_string())));
        assert_eq!(render_query("x{{namespace", &vars), Err(TemplateError::Unclosed));
        assert!(TemplateError::Unknown("pod".into()).to_string().contains("{{pod}}"));
    }

    #[test]
    fn prometheus_answers_are_read_as_one_number() {
        let vector = |samples: serde_json::Value| json!({"status": "success", "data": {"resultType": "vector", "result": samples}});
        assert_eq!(read_answer(&vector(json!([{"metric": {}, "value": [1.0, "0.25"]}]))), Ok(Some(0.25)));
        assert_eq!(read_answer(&vector(json!([]))), Ok(None));
        assert_eq!(read_answer(&vector(json!([{"metric": {}, "value": [1.0, "NaN"]}]))), Ok(None));
        assert_eq!(
            read_answer(&vector(json!([{"metric": {}, "value": [1.0, "+Inf"]}]))),
            Ok(Some(f64::INFINITY))
        );
        assert_eq!(
            read_answer(&vector(json!([{"value": [1.0, "1"]}, {"value": [1.0, "2"]}]))),
            Err(AnswerError::ManySeries(2))
        );
        let scalar = json!({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}});
        assert_eq!(read_answer(&scalar), Ok(Some(3.0)));
        let error = json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 5"});
        assert_eq!(read_answer(&error), Err(AnswerError::Prometheus("parse error at char 5".to_string())));
        let matrix = json!({"status": "success", "data": {"resultType": "matrix", "result": []}});
        assert!(matches!(read_answer(&matrix), Err(AnswerError::Malformed(_))));
    }
}
