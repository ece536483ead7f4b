//! Globs of TenantPolicies: `*` matches any run of characters (`/` included), `?` exactly one;
//! every other character matches itself. No character classes, no escapes: policies name
//! namespaces and repository URLs, which need neither.

/// Whether `pattern` matches all of `text`. One backtracking point (the last `*`), so at worst
/// pattern length times text length steps, never exponential whatever the pattern.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // The last `*` seen and the text position it is currently taken to end at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and try again from there.
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    pi = sp + 1;
                    ti = st + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_matches;

    #[test]
    fn literal_star_and_question_mark() {
        assert!(glob_matches("team-a", "team-a"));
        assert!(!glob_matches("team-a", "team-ab"));
        assert!(!glob_matches("team-a", "team-"));
        assert!(glob_matches("team-*", "team-a"));
        assert!(glob_matches("team-*", "team-"));
        assert!(!glob_matches("team-*", "teams"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("*", "anything/at/all"));
        assert!(glob_matches("team-?", "team-b"));
        assert!(!glob_matches("team-?", "team-bb"));
        assert!(glob_matches("https://git.example.com/team-a/*", "https://git.example.com/team-a/x/y.git"));
        assert!(!glob_matches("https://git.example.com/team-a/*", "https://git.example.com/team-b/x.git"));
        assert!(glob_matches("*-prod-*", "shop-prod-eu"));
        assert!(glob_matches("a*b*c", "aXbYbZc"));
        assert!(!glob_matches("a*b*c", "aXbYbZ"));
        assert!(!glob_matches("", "x"));
        assert!(glob_matches("", ""));
    }

    #[test]
    fn hostile_patterns_end_quickly() {
        let text = "a".repeat(2000);
        let pattern = format!("{}b", "*a".repeat(1000));
        let started = std::time::Instant::now();
        assert!(!glob_matches(&pattern, &text));
        assert!(glob_matches(&"*a".repeat(1000), &text));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn multi_byte_characters_are_single_characters() {
        assert!(glob_matches("é?", "éx"));
        assert!(glob_matches("?", "é"));
        assert!(!glob_matches("??", "é"));
    }
}
