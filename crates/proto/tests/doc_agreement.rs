//! docs/PROTOCOL.md's Appendix A lists every message, field and enum value
//! of `proto/natter.proto` with its number and type, so that a client can be
//! written from the document alone. This test parses the .proto and the
//! appendix's tables and fails on any difference either way: a message,
//! field or value missing from the appendix, or one the appendix names that
//! the .proto does not have (or with another number or type).
#![allow(clippy::unwrap_used)] // a benchmark, test or example: a failure should stop it

use protox::prost_reflect::{DescriptorPool, FieldDescriptor, Kind};
use std::collections::BTreeMap;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/PROTOCOL.md");
const APPENDIX: &str = "## Appendix A. Every message and field";

/// One table row of the appendix: name, number, type (messages only) and
/// meaning, with the line it came from.
#[derive(Debug)]
struct Row {
    line: usize,
    name: String,
    number: String,
    ty: Option<String>,
    meaning: String,
}

/// The appendix's messages and enums, each with its rows.
#[derive(Default)]
struct Appendix {
    messages: BTreeMap<String, Vec<Row>>,
    enums: BTreeMap<String, Vec<Row>>,
}

fn pool() -> DescriptorPool {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    protox::Compiler::new([dir])
        .unwrap()
        .open_file("natter.proto")
        .unwrap()
        .descriptor_pool()
}

/// The first `code span` of a line, without its backticks.
fn code_span(s: &str) -> Option<&str> {
    let start = s.find('`')? + 1;
    let len = s[start..].find('`')?;
    Some(&s[start..start + len])
}

fn parse(doc: &str, errors: &mut Vec<String>) -> Appendix {
    let start = doc
        .find(APPENDIX)
        .unwrap_or_else(|| panic!("PROTOCOL.md has no \"{APPENDIX}\""));
    let first_line = doc[..start].lines().count() + 1;
    let mut out = Appendix::default();
    // Which subsection (messages or enums) and which item a row belongs to.
    let mut section = "";
    let mut item: Option<String> = None;
    for (i, line) in doc[start..].lines().enumerate().skip(1) {
        let at = first_line + i;
        if line.starts_with("## ") {
            break; // the appendix ends at the next top-level section
        }
        if let Some(h) = line.strip_prefix("### ") {
            section = h.trim();
            item = None;
            continue;
        }
        if line.starts_with("#### ") {
            let Some(name) = code_span(line) else {
                errors.push(format!("line {at}: a heading without a `name`: {line}"));
                continue;
            };
            let table = match section {
                "Messages" => &mut out.messages,
                "Enums" => &mut out.enums,
                other => {
                    errors.push(format!("line {at}: `{name}` under \"{other}\""));
                    continue;
                }
            };
            if table.insert(name.to_owned(), Vec::new()).is_some() {
                errors.push(format!("line {at}: `{name}` is listed twice"));
            }
            item = Some(name.to_owned());
            continue;
        }
        if !line.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if cells[0].starts_with("---") || matches!(cells[0], "field" | "value") {
            continue; // a table's header
        }
        let Some(name) = item.clone() else {
            errors.push(format!(
                "line {at}: a table row outside any message or enum"
            ));
            continue;
        };
        let (table, width) = if section == "Messages" {
            (&mut out.messages, 4)
        } else {
            (&mut out.enums, 3)
        };
        if cells.len() != width {
            errors.push(format!(
                "line {at}: {} cells, not {width}: {line}",
                cells.len()
            ));
            continue;
        }
        table.get_mut(&name).unwrap().push(Row {
            line: at,
            name: cells[0].trim_matches('`').to_owned(),
            number: cells[1].to_owned(),
            ty: (width == 4).then(|| cells[2].to_owned()),
            meaning: cells[width - 1].to_owned(),
        });
    }
    out
}

/// A field's type as the appendix writes it: the .proto's words in a code
/// span (`repeated`/`optional` included), then whether a named type is a
/// message or an enum, and the oneof a field belongs to.
fn type_of(f: &FieldDescriptor) -> String {
    let optional = f.field_descriptor_proto().proto3_optional();
    let label = if f.is_list() {
        "repeated "
    } else if optional {
        "optional "
    } else {
        ""
    };
    let (name, mut note) = match f.kind() {
        Kind::Message(m) => (m.name().to_owned(), " (message)".to_owned()),
        Kind::Enum(e) => (e.name().to_owned(), " (enum)".to_owned()),
        scalar => (format!("{scalar:?}").to_lowercase(), String::new()),
    };
    // A proto3 `optional` field sits in a synthetic oneof of its own.
    if let Some(oneof) = f.containing_oneof().filter(|_| !optional) {
        note.push_str(&format!(" (oneof `{}`)", oneof.name()));
    }
    format!("`{label}{name}`{note}")
}

/// Compares one item's rows with what the .proto declares, `(name, number,
/// type)` in declaration order.
fn compare(
    what: &str,
    rows: &[Row],
    declared: &[(String, String, Option<String>)],
    errors: &mut Vec<String>,
) {
    for (name, number, ty) in declared {
        match rows.iter().find(|r| &r.name == name) {
            None => errors.push(format!(
                "{what}: `{name}` = {number} is not in the appendix"
            )),
            Some(r) => {
                if &r.number != number {
                    errors.push(format!(
                        "line {}: {what}.{name} is numbered {} in the appendix, {number} in natter.proto",
                        r.line, r.number
                    ));
                }
                if &r.ty != ty {
                    errors.push(format!(
                        "line {}: {what}.{name} has type {} in the appendix, {} in natter.proto",
                        r.line,
                        r.ty.as_deref().unwrap_or("-"),
                        ty.as_deref().unwrap_or("-")
                    ));
                }
            }
        }
    }
    for (i, r) in rows.iter().enumerate() {
        if !declared.iter().any(|(name, ..)| name == &r.name) {
            errors.push(format!(
                "line {}: {what}.{} (number {}) is not in natter.proto",
                r.line, r.name, r.number
            ));
        }
        if rows[..i].iter().any(|o| o.name == r.name) {
            errors.push(format!(
                "line {}: {what}.{} is listed twice",
                r.line, r.name
            ));
        }
        // A meaning is a sentence, not a placeholder.
        if r.meaning.len() < 4 || !r.meaning.ends_with('.') || r.meaning.contains("TODO") {
            errors.push(format!(
                "line {}: {what}.{} needs a meaning (a sentence): {:?}",
                r.line, r.name, r.meaning
            ));
        }
    }
}

fn disagreements(doc: &str) -> Vec<String> {
    let pool = pool();
    let mut errors = Vec::new();
    let appendix = parse(doc, &mut errors);

    for m in pool.all_messages() {
        let declared: Vec<_> = m
            .fields()
            .map(|f| {
                (
                    f.name().to_owned(),
                    f.number().to_string(),
                    Some(type_of(&f)),
                )
            })
            .collect();
        match appendix.messages.get(m.name()) {
            None => errors.push(format!("message `{}` is not in the appendix", m.name())),
            Some(rows) => compare(m.name(), rows, &declared, &mut errors),
        }
    }
    for e in pool.all_enums() {
        let declared: Vec<_> = e
            .values()
            .map(|v| (v.name().to_owned(), v.number().to_string(), None))
            .collect();
        match appendix.enums.get(e.name()) {
            None => errors.push(format!("enum `{}` is not in the appendix", e.name())),
            Some(rows) => compare(e.name(), rows, &declared, &mut errors),
        }
    }
    for name in appendix.messages.keys() {
        if pool.all_messages().all(|m| m.name() != name) {
            errors.push(format!(
                "the appendix lists message `{name}`, natter.proto has none"
            ));
        }
    }
    for name in appendix.enums.keys() {
        if pool.all_enums().all(|e| e.name() != name) {
            errors.push(format!(
                "the appendix lists enum `{name}`, natter.proto has none"
            ));
        }
    }
    errors
}

#[test]
fn appendix_a_matches_natter_proto() {
    let doc = std::fs::read_to_string(DOC).unwrap();
    let errors = disagreements(&doc);
    assert!(
        errors.is_empty(),
        "docs/PROTOCOL.md Appendix A and proto/natter.proto disagree:\n{}",
        errors.join("\n")
    );
}

/// The check itself: each kind of drift in a copy of the document is caught.
#[test]
fn a_drifted_appendix_is_caught() {
    let doc = std::fs::read_to_string(DOC).unwrap();
    let at = doc.find(APPENDIX).unwrap();
    let (body, appendix) = doc.split_at(at);
    let drifts = [
        // A field renumbered.
        (
            "| `seq` | 2 | `uint64` | Its position",
            "| `seq` | 12 | `uint64` | Its position",
        ),
        // A field the .proto does not have.
        (
            "| `mention_all` | 6 | `bool` |",
            "| `mention_some` | 6 | `bool` |",
        ),
        // A type changed.
        (
            "| `server_time_ms` | 2 | `int64` |",
            "| `server_time_ms` | 2 | `uint64` |",
        ),
        // proto3 presence dropped.
        (
            "| `muted_all` | 5 | `optional bool` |",
            "| `muted_all` | 5 | `bool` |",
        ),
        // An enum value renumbered.
        (
            "| `JOIN_POLICY_APPROVAL` | 2 |",
            "| `JOIN_POLICY_APPROVAL` | 3 |",
        ),
        // A message missing.
        ("#### `SyncHintPush`", "#### `SyncHint`"),
    ];
    for (from, to) in drifts {
        assert_eq!(
            appendix.matches(from).count(),
            1,
            "not once in the appendix: {from}"
        );
        let drifted = format!("{body}{}", appendix.replacen(from, to, 1));
        assert!(
            !disagreements(&drifted).is_empty(),
            "not caught: {from} -> {to}"
        );
    }
}
