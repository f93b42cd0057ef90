//! Reading the YAML files we own, the configuration and the web configuration, one way:
//! bounded in size ([`crate::local_file`]), then decoded into raw structs with every error located by line and field
//! path (`modules.submission.tls`), as `file:line: field: message`.

use serde::de::DeserializeOwned;

use super::Problem;

/// Decodes YAML into `T`; on failure, the problem with its line and field path, the path
/// rendered by `field_path` from the keys and indices walked to reach the error.
pub(crate) fn decode<T: DeserializeOwned>(
    text: &str,
    field_path: impl Fn(&serde_path_to_error::Path) -> String,
) -> Result<T, Problem> {
    // Snippets are off: the error is rendered as one `file:line: field: message` line.
    // Strict booleans: `insecure_skip_verify: yes` is a typo, not YAML 1.1 truthiness.
    let options = serde_saphyr::options! {
        with_snippet: false,
        strict_booleans: true,
        budget: Some(budget()),
    };
    let mut failed_at = None;
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        // serde-saphyr reports where an error is, but not in which field: the path comes from
        // tracking the keys and indices walked to reach it.
        let mut track = serde_path_to_error::Track::new();
        let result = T::deserialize(serde_path_to_error::Deserializer::new(de, &mut track));
        if result.is_err() {
            failed_at = Some(track.path());
        }
        result
    });
    result.map_err(|e| match budget_breach(&e) {
        // A limit of the whole file: where the parser happened to be says nothing.
        Some(message) => Problem {
            line: None,
            column: None,
            field: String::new(),
            message,
        },
        None => {
            // The parser's column is where it noticed the error: only a lexical cause gets one.
            let parsed = Problem {
                line: e.location().map(|l| l.line()).filter(|&l| l > 0),
                column: None,
                field: failed_at.map(|path| field_path(&path)).unwrap_or_default(),
                message: yaml_message(&e),
            };
            lexical_cause(text, parsed)
        }
    })
}

/// The cause of a syntax error that the parser reports where it noticed it rather than where
/// it is: a tab in the indentation, or a flow bracket (`[`, `{`) never closed, which the parser
/// only notices lines later. When one sits at or before where the parser stopped, it is the
/// problem, at its own line and column.
fn lexical_cause(text: &str, parsed: Problem) -> Problem {
    let before = |line: u64| parsed.line.is_none_or(|at| line <= at);
    let cause = indentation_tab(text)
        .filter(|(line, _)| before(*line))
        .map(|(line, column)| {
            (
                line,
                column,
                "a tab in the indentation: YAML indents with spaces only".to_string(),
            )
        })
        .or_else(|| {
            unclosed_bracket(text)
                .filter(|(line, _, _)| before(*line))
                .map(|(line, column, open)| {
                    let (what, close) = if open == '[' {
                        ("list", ']')
                    } else {
                        ("mapping", '}')
                    };
                    (
                        line,
                        column,
                        format!("this {open:?} is never closed: end the {what} with {close:?}"),
                    )
                })
        });
    match cause {
        Some((line, column, message)) => Problem {
            line: Some(line),
            column: Some(column),
            message,
            ..parsed
        },
        None => parsed,
    }
}

/// The first tab in a line's leading whitespace, as (line, column), 1-based.
fn indentation_tab(text: &str) -> Option<(u64, u64)> {
    text.lines().enumerate().find_map(|(i, line)| {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        line[..indent]
            .find('\t')
            .map(|col| (i as u64 + 1, col as u64 + 1))
    })
}

/// The first flow collection (`[a, b]`, `{k: v}`) opened and never closed, as (line, column,
/// bracket), 1-based. Brackets inside quotes, comments and block scalars (`body: |`) do not
/// count; a `[` or `{` opens a flow collection only where a value starts (after `key: `, `- `
/// or inside another one).
fn unclosed_bracket(text: &str) -> Option<(u64, u64, char)> {
    let mut open: Vec<(u64, u64, char)> = Vec::new();
    // The indentation of a `key: |` or `key: >` whose block scalar lines follow: text, not YAML.
    let mut block_scalar: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start().len();
        match block_scalar {
            Some(parent) if indent > parent || line.trim().is_empty() => continue,
            _ => block_scalar = None,
        }
        let value = line.split_once(": ").map_or("", |(_, v)| v).trim();
        if open.is_empty() && (value.starts_with('|') || value.starts_with('>')) {
            block_scalar = Some(indent);
            continue;
        }
        let mut quote: Option<char> = None;
        let mut value_starts = true;
        let mut previous = ' ';
        for (col, c) in line.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '#') if previous == ' ' || col == 0 => break,
                (None, '"' | '\'') if value_starts || !open.is_empty() => quote = Some(c),
                (None, '[' | '{') if value_starts || !open.is_empty() => {
                    open.push((i as u64 + 1, col as u64 + 1, c));
                }
                (None, ']' | '}') => match open.pop() {
                    // `[a}`: the `[` is the one left open.
                    Some(top) if (top.2 == '[') != (c == ']') => return Some(top),
                    _ => {}
                },
                _ => {}
            }
            if quote.is_none() && c != ' ' {
                // A value starts after `: `, `- ` or the line's indentation.
                value_starts = matches!(c, ':' | '-' | ',') && !(c == '-' && previous != ' ');
            }
            previous = c;
        }
        // A line that starts a new key while a bracket is open: the bracket was left open.
        if let Some(&first) = open.first() {
            let next = text.lines().nth(i + 1).unwrap_or_default().trim_start();
            if next.split_once(": ").is_some() && !next.starts_with(['"', '\'', '[', '{']) {
                return Some(first);
            }
        }
    }
    open.first().copied()
}

/// Most YAML nodes (maps, sequences, scalars) one file may hold. A scheduled target with ten
/// labels is about 30 nodes: 10,000 such targets take 300,000, and the files we read are
/// bounded in bytes anyway (the configuration at 32 MiB), so the node and event limits only
/// stop pathological files, not large fleets.
pub(crate) const MAX_NODES: usize = 4_000_000;

/// serde-saphyr's limits, sized for [`MAX_NODES`]; the alias, anchor and depth limits (YAML
/// bombs) stay serde-saphyr's.
fn budget() -> serde_saphyr::Budget {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = MAX_NODES;
    budget.max_events = 2 * MAX_NODES;
    budget
}

/// The message of a breached limit of the whole file, naming the limit.
fn budget_breach(e: &serde_saphyr::Error) -> Option<String> {
    use serde_saphyr::budget::BudgetBreach as B;
    let mut e = e.without_snippet();
    while let serde_saphyr::Error::AliasError { error, .. } = e {
        e = error.without_snippet();
    }
    let serde_saphyr::Error::Budget { breach, .. } = e else {
        return None;
    };
    let budget = budget();
    let what = match breach {
        B::Nodes { .. } => format!("more than {} YAML nodes", budget.max_nodes),
        B::Events { .. } => format!("more than {} YAML parser events", budget.max_events),
        B::Depth { .. } => format!("nested deeper than {} levels", budget.max_depth),
        B::Aliases { .. } => format!("more than {} aliases (*name)", budget.max_aliases),
        B::Anchors { .. } => format!("more than {} anchors (&name)", budget.max_anchors),
        B::AliasAnchorRatio { .. } => {
            "far more aliases than anchors (an alias expansion bomb)".to_string()
        }
        B::Documents { .. } => format!("more than {} YAML documents", budget.max_documents),
        B::ScalarBytes { .. } => {
            format!(
                "more than {} bytes of scalar text",
                budget.max_total_scalar_bytes
            )
        }
        other => format!("a YAML limit ({other:?})"),
    };
    Some(format!(
        "the file is too large or too complex to read: {what}; the limit applies to the whole \
         file, not to the place where it was reached"
    ))
}

/// The message of a decoding error, without location (we print that ourselves).
fn yaml_message(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::{Error, MessageFormatter, UserMessageFormatter};
    let mut e = e.without_snippet();
    // An error in a value reached through an alias: the original error is inside.
    while let Error::AliasError { error, .. } = e {
        e = error.without_snippet();
    }
    let message = match e {
        Error::SerdeUnknownVariant {
            variant, expected, ..
        } => format!(
            "unknown variant {:?}{}, expected one of {}",
            variant,
            did_you_mean(variant, expected),
            expected.join(", ")
        ),
        Error::SerdeUnknownField {
            field, expected, ..
        } => format!(
            "unknown key {:?}{}, expected one of {}",
            field,
            did_you_mean(field, expected),
            expected.join(", ")
        ),
        Error::Message { msg, .. } => msg.clone(),
        other => UserMessageFormatter.format_message(other).into_owned(),
    };
    // The message may quote the file; keep it on one line whatever the file holds.
    message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// ` (did you mean "timeout"?)` when one of `expected`, and only one, is a likely typo of
/// `given` (an edit
/// distance, swaps counting once, of at most a third of its length), else nothing.
fn did_you_mean(given: &str, expected: &[&str]) -> String {
    let close: Vec<(usize, &&str)> = expected
        .iter()
        .map(|e| (strsim::osa_distance(given, e), e))
        .filter(|(d, e)| *d > 0 && *d <= (e.len() / 3).max(1))
        .collect();
    let Some(best) = close.iter().map(|(d, _)| *d).min() else {
        return String::new();
    };
    // Two equally close candidates (`TLS14`: `TLS12`, `TLS13`): no guess.
    match close.iter().filter(|(d, _)| *d == best).collect::<Vec<_>>()[..] {
        [(_, e)] => format!(" (did you mean {e:?}?)"),
        _ => String::new(),
    }
}

/// Renders a tracked serde path as `a.b[2].c`, dropping the `value` keys that located values
/// add. `user_map(path_so_far, key)` says whether `key` is followed by a user-chosen key (a
/// module or user name), which is kept even when it is spelled `value`. Shared by every YAML
/// file we read.
pub(crate) fn render_path<'a>(
    segments: impl IntoIterator<Item = &'a serde_path_to_error::Segment>,
    user_map: impl Fn(&str, &str) -> bool,
) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    let mut user_key_next = false;
    for segment in segments {
        match segment {
            Segment::Seq { index } => {
                out.push_str(&format!("[{index}]"));
                user_key_next = false;
            }
            Segment::Map { key } if user_key_next => {
                out.push('.');
                out.push_str(key);
                user_key_next = false;
            }
            Segment::Map { key } if key == "value" => {}
            Segment::Map { key } => {
                user_key_next = user_map(&out, key);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_causes_are_found_where_they_are() {
        assert_eq!(indentation_tab("a:\n  b: 1\n \tc: 2\n"), Some((3, 2)));
        assert_eq!(indentation_tab("a: \"x\ty\"\n"), None);
        let unclosed = "modules:\n  a:\n    trust: [system, bundled\n    ca_files: []\n";
        assert_eq!(unclosed_bracket(unclosed), Some((3, 12, '[')));
        assert_eq!(unclosed_bracket("a: {b: [1, 2}\n"), Some((1, 8, '[')));
        assert_eq!(unclosed_bracket("a: [1, 2]\nb: {c: d}\n"), None);
        // Brackets in quotes, comments, block scalars and plain words are text.
        let text = "a: \"[x\"\nb: c # [\nd: |\n  [not yaml\n  {either\ne: x[1]\n";
        assert_eq!(unclosed_bracket(text), None);
    }

    #[test]
    fn a_typo_gets_a_suggestion_and_a_stranger_none() {
        let keys = ["timeout", "port", "tls", "ehlo"];
        assert_eq!(
            did_you_mean("timout", &keys),
            " (did you mean \"timeout\"?)"
        );
        assert_eq!(did_you_mean("tsl", &keys), " (did you mean \"tls\"?)");
        assert_eq!(did_you_mean("colour", &keys), "");
        assert_eq!(
            did_you_mean("TLS14", &["TLS10", "TLS11", "TLS12", "TLS13"]),
            ""
        );
    }
}
