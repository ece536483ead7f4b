//! Choosing the latest tag: `filterTags` (a regex and what of its match is ordered) and the
//! policy (semver range, numerical or alphabetical order). Pure; the tags come from a scan.
//!
//! As Flux's ImagePolicy: tags that do not match `pattern` drop out; `extract` (`$ts`, `${ts}`,
//! `$1`, mixed with literal text) is what the policy orders, the tag itself is what is chosen.
//! Values the policy cannot read (not semver, not a number) drop out too.

use std::cmp::Ordering;

use regex::Regex;

use crate::{
    api::{ImagePolicySpec, SortOrder},
    source::refs::{SemverRange, parse_tag_version},
};

/// A policy that cannot be used as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("filterTags.pattern is not a valid regex (RE2 syntax): {0}")]
    Pattern(String),
    #[error("filterTags.extract: {0}")]
    Extract(#[from] TemplateError),
    #[error(
        "policy.semver.range {range:?}: {cause}; write comparators such as `>=1.0.0 <2.0.0`, `^1.2`, \
         `~1.2.3`, `1.x`, `1.2 - 1.4` or alternatives with `||`"
    )]
    Range { range: String, cause: String },
    #[error("policy takes exactly one of semver, numerical or alphabetical")]
    NoPolicy,
}

/// Why an `extract` template is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`${{` at byte {0} has no closing `}}`")]
    Unclosed(usize),
    #[error("`${{}}` at byte {0} names no group")]
    EmptyName(usize),
    #[error("{0:?} is not a group name (letters, digits and `_`)")]
    BadName(String),
    #[error("the pattern has no group {0:?}")]
    NoSuchGroup(String),
    #[error("the pattern has no group {0} (it has {1})")]
    NoSuchIndex(usize, usize),
}

/// One piece of an `extract` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Index(usize),
    Name(String),
}

/// An `extract` template: Go's `regexp.Expand` syntax, which Flux uses (`$$` is a `$`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub Vec<Part>);

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            let offset = text.len() - rest.len() + at;
            let after = &rest[at + 1..];
            let (name, consumed) = if let Some(escaped) = after.strip_prefix('$') {
                literal.push('$');
                rest = escaped;
                continue;
            } else if let Some(braced) = after.strip_prefix('{') {
                let close = braced.find('}').ok_or(TemplateError::Unclosed(offset))?;
                (&braced[..close], close + 2)
            } else {
                let len =
                    after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
                if len == 0 {
                    // A lone `$` is literal, as in Go.
                    literal.push('$');
                    rest = after;
                    continue;
                }
                (&after[..len], len)
            };
            if name.is_empty() {
                return Err(TemplateError::EmptyName(offset));
            }
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(TemplateError::BadName(name.to_string()));
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(match name.parse::<usize>() {
                Ok(i) => Part::Index(i),
                Err(_) => Part::Name(name.to_string()),
            });
            rest = &after[consumed..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template(parts))
    }

    /// Every group the template names exists in `re`.
    fn check(&self, re: &Regex) -> Result<(), TemplateError> {
        for part in &self.0 {
            match part {
                Part::Index(i) if *i >= re.captures_len() => {
                    return Err(TemplateError::NoSuchIndex(*i, re.captures_len().saturating_sub(1)));
                }
                Part::Name(n) if !re.capture_names().flatten().any(|g| g == n) => {
                    return Err(TemplateError::NoSuchGroup(n.clone()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn expand(&self, caps: &regex::Captures<'_>) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Index(i) => out.push_str(caps.get(*i).map_or("", |m| m.as_str())),
                Part::Name(n) => out.push_str(caps.name(n).map_or("", |m| m.as_str())),
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
enum Order {
    Semver(SemverRange),
    Numerical(SortOrder),
    Alphabetical(SortOrder),
}

/// A compiled `filterTags` and policy.
#[derive(Debug, Clone)]
pub struct Selector {
    filter: Option<(Regex, Option<Template>)>,
    order: Order,
}

/// Patterns larger than this once compiled are refused (a hostile pattern costs memory).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl Selector {
    pub fn from_spec(spec: &ImagePolicySpec) -> Result<Selector, SelectError> {
        let filter = match &spec.filter_tags {
            None => None,
            Some(f) => {
                let re = regex::RegexBuilder::new(&f.pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| SelectError::Pattern(e.to_string()))?;
                let template = f.extract.as_deref().map(Template::parse).transpose()?;
                if let Some(t) = &template {
                    t.check(&re)?;
                }
                Some((re, template))
            }
        };
        let p = &spec.policy;
        let order = match (&p.semver, &p.numerical, &p.alphabetical) {
            (Some(s), None, None) => Order::Semver(
                SemverRange::parse(&s.range)
                    .map_err(|cause| SelectError::Range { range: s.range.clone(), cause })?,
            ),
            (None, Some(n), None) => Order::Numerical(n.order),
            (None, None, Some(a)) => Order::Alphabetical(a.order),
            _ => return Err(SelectError::NoPolicy),
        };
        Ok(Selector { filter, order })
    }

    /// What the policy orders for `tag`, or `None` when the filter drops it.
    fn value(&self, tag: &str) -> Option<String> {
        match &self.filter {
            None => Some(tag.to_string()),
            Some((re, template)) => {
                let caps = re.captures(tag)?;
                Some(match template {
                    Some(t) => t.expand(&caps),
                    None => tag.to_string(),
                })
            }
        }
    }

    /// The latest of `tags` by the policy; ties go to the lexically smaller tag so the choice
    /// never flaps between scans.
    pub fn latest<'a>(&self, tags: &'a [String]) -> Option<&'a str> {
        let values = tags.iter().filter_map(|t| self.value(t).map(|v| (v, t.as_str())));
        match &self.order {
            Order::Semver(range) => values
                .filter_map(|(v, t)| parse_tag_version(&v).map(|v| (v, t)))
                .filter(|(v, _)| range.matches(v))
                .max_by(|(va, ta), (vb, tb)| va.cmp(vb).then_with(|| tb.cmp(ta)))
                .map(|(_, t)| t),
            Order::Numerical(order) => values
                .filter_map(|(v, t)| parse_number(&v).map(|n| (n, t)))
                .max_by(|(na, ta), (nb, tb)| directed(na.total_cmp(nb), *order).then_with(|| tb.cmp(ta)))
                .map(|(_, t)| t),
            Order::Alphabetical(order) => values
                .max_by(|(va, ta), (vb, tb)| directed(va.cmp(vb), *order).then_with(|| tb.cmp(ta)))
                .map(|(_, t)| t),
        }
    }
}

fn directed(ordering: Ordering, order: SortOrder) -> Ordering {
    match order {
        SortOrder::Asc => ordering,
        SortOrder::Desc => ordering.reverse(),
    }
}

/// A finite number; `NaN`, infinities and Rust's extra spellings (`inf`, `nan`) are not numbers
/// here.
fn parse_number(text: &str) -> Option<f64> {
    if text.is_empty() || text.chars().any(|c| !(c.is_ascii_digit() || "+-.eE".contains(c))) {
        return None;
    }
    text.parse::<f64>().ok().filter(|n| n.is_finite())
}

#[cfg(test)]
mod tests;
