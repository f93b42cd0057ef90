//! The README as the tests read it: whole, or one section by its heading.

/// The README's text.
pub fn text() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

/// The body of the section headed `heading` (such as `## Dashboards and alerts`), up to the next
/// heading of the same level; panics when there is none.
pub fn section(heading: &str) -> String {
    let text = text();
    let body = text
        .split(&format!("\n{heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("the README has no section {heading:?}"));
    let level = heading.split(' ').next().unwrap_or("##");
    body.split(&format!("\n{level} "))
        .next()
        .unwrap_or(body)
        .to_string()
}
