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
            field: String::new(),
            message,
        },
        None => Problem {
            line: e.location().map(|l| l.line()).filter(|&l| l > 0),
            field: failed_at.map(|path| field_path(&path)).unwrap_or_default(),
            message: yaml_message(&e),
        },
    })
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
            "unknown variant {:?}, expected one of {}",
            variant,
            expected.join(", ")
        ),
        Error::SerdeUnknownField {
            field, expected, ..
        } => format!(
            "unknown key {:?}, expected one of {}",
            field,
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
