//! Setting annotations in YAML text without rewriting the rest: comments, key order, quoting
//! and blank lines of a document stay as they were. Handles the block style that `helm
//! template`, `kustomize build` and people write; anything else is left to the caller, which
//! re-serializes that one document.

/// A document of a YAML stream: the `---` line that opens it (empty for the first), and its
/// body. Concatenating every separator and body gives the stream back byte for byte.
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// The separator line, with its newline.
    pub separator: &'a str,
    /// The document.
    pub body: &'a str,
}

/// Splits a stream at `---` lines.
pub fn split(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut separator = "";
    let mut body_start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_separator = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        if is_separator {
            if offset > 0 || !separator.is_empty() {
                chunks.push(Chunk {
                    separator,
                    body: &text[body_start..offset],
                });
            }
            separator = &text[offset..offset + line.len()];
            body_start = offset + line.len();
        }
        offset += line.len();
    }
    chunks.push(Chunk {
        separator,
        body: &text[body_start..],
    });
    chunks
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// What follows `key:` on a line, comments dropped.
fn after_key<'l>(line: &'l str, key: &str) -> Option<&'l str> {
    let rest = line.trim_start_matches(' ');
    let rest = rest
        .strip_prefix(key)
        .or_else(|| rest.strip_prefix(&format!("\"{key}\"")))
        .or_else(|| rest.strip_prefix(&format!("'{key}'")))?;
    let rest = rest.strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t', '\n', '\r'])) {
        return None;
    }
    let rest = rest.trim();
    Some(match rest.find(" #") {
        Some(i) => rest[..i].trim(),
        None if rest.starts_with('#') => "",
        None => rest,
    })
}

/// `doc` with `values` set in its top-level `metadata.annotations`, or `None` when the document
/// is not laid out in a way this edits.
pub fn set_annotations(doc: &str, values: &[(String, String)]) -> Option<String> {
    let mut lines: Vec<String> = doc.split_inclusive('\n').map(str::to_string).collect();
    if let Some(last) = lines.last_mut()
        && !last.ends_with('\n')
    {
        last.push('\n');
    }
    let metadata = lines
        .iter()
        .position(|l| indent(l) == 0 && after_key(l, "metadata") == Some(""))?;
    let block_end = (metadata + 1..lines.len())
        .find(|&i| !lines[i].trim().is_empty() && indent(&lines[i]) == 0)
        .unwrap_or(lines.len());
    let child_indent = (metadata + 1..block_end)
        .find(|&i| !is_blank_or_comment(&lines[i]))
        .map(|i| indent(&lines[i]))?;
    let annotations = (metadata + 1..block_end).find(|&i| {
        indent(&lines[i]) == child_indent && after_key(&lines[i], "annotations").is_some()
    });
    let pad = |n: usize| " ".repeat(n);
    let entry = |n: usize, k: &str, v: &str| {
        format!(
            "{}{k}: {}\n",
            pad(n),
            serde_json::Value::String(v.to_string())
        )
    };
    let Some(at) = annotations else {
        let mut insert = vec![format!("{}annotations:\n", pad(child_indent))];
        insert.extend(values.iter().map(|(k, v)| entry(child_indent + 2, k, v)));
        lines.splice(metadata + 1..metadata + 1, insert);
        return Some(lines.concat());
    };
    let inline = after_key(&lines[at], "annotations").unwrap_or_default();
    match inline {
        "" => {}
        "{}" => lines[at] = format!("{}annotations:\n", pad(child_indent)),
        _ => return None,
    }
    let children_end = (at + 1..block_end)
        .find(|&i| !lines[i].trim().is_empty() && indent(&lines[i]) <= child_indent)
        .unwrap_or(block_end);
    let entry_indent = (at + 1..children_end)
        .find(|&i| !is_blank_or_comment(&lines[i]))
        .map_or(child_indent + 2, |i| indent(&lines[i]));
    if entry_indent <= child_indent {
        return None;
    }
    let mut end = children_end;
    // Insert new keys after the last entry, not after trailing blank lines or comments.
    while end > at + 1 && is_blank_or_comment(&lines[end - 1]) {
        end -= 1;
    }
    let mut appended = Vec::new();
    for (key, value) in values {
        let existing = (at + 1..end)
            .find(|&i| indent(&lines[i]) == entry_indent && after_key(&lines[i], key).is_some());
        match existing {
            Some(i) => {
                // The entry and any continuation lines (a block scalar) give way to one line.
                let next = (i + 1..end)
                    .find(|&j| !lines[j].trim().is_empty() && indent(&lines[j]) <= entry_indent)
                    .unwrap_or(end);
                let removed = next - i - 1;
                lines.splice(i..next, [entry(entry_indent, key, value)]);
                end -= removed;
            }
            None => appended.push(entry(entry_indent, key, value)),
        }
    }
    lines.splice(end..end, appended);
    Some(lines.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(doc: &str) -> Option<String> {
        set_annotations(
            doc,
            &[
                ("custody.dev/actor".to_string(), "agent".to_string()),
                ("custody.dev/owner".to_string(), "team \"a\"".to_string()),
            ],
        )
    }

    #[test]
    fn split_keeps_every_byte() {
        let text = "# lead\na: 1\n---\nb: 2\n--- # c\nc: 3\n";
        let chunks = split(text);
        assert_eq!(chunks.len(), 3);
        let joined: String = chunks
            .iter()
            .map(|c| format!("{}{}", c.separator, c.body))
            .collect();
        assert_eq!(joined, text);
        assert_eq!(split("---\na: 1\n").len(), 1);
    }

    #[test]
    fn edits() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "no annotations",
                "kind: Deployment\nmetadata:\n  name: web # the name\nspec: {}\n",
                Some(
                    "kind: Deployment\nmetadata:\n  annotations:\n    custody.dev/actor: \"agent\"\n    custody.dev/owner: \"team \\\"a\\\"\"\n  name: web # the name\nspec: {}\n",
                ),
            ),
            (
                "existing annotations, one replaced, comments kept",
                "metadata:\n    name: web\n    annotations:\n        # provenance\n        custody.dev/actor: human\n        other: x\n\nspec: {}\n",
                Some(
                    "metadata:\n    name: web\n    annotations:\n        # provenance\n        custody.dev/actor: \"agent\"\n        other: x\n        custody.dev/owner: \"team \\\"a\\\"\"\n\nspec: {}\n",
                ),
            ),
            (
                "empty flow map",
                "metadata:\n  annotations: {}\n  name: web\n",
                Some(
                    "metadata:\n  annotations:\n    custody.dev/actor: \"agent\"\n    custody.dev/owner: \"team \\\"a\\\"\"\n  name: web\n",
                ),
            ),
            (
                "block scalar replaced whole",
                "metadata:\n  annotations:\n    custody.dev/owner: |\n      team\n      b\n    z: y\n",
                Some(
                    "metadata:\n  annotations:\n    custody.dev/owner: \"team \\\"a\\\"\"\n    z: y\n    custody.dev/actor: \"agent\"\n",
                ),
            ),
            ("flow metadata", "metadata: {name: web}\n", None),
            (
                "flow annotations",
                "metadata:\n  annotations: {a: b}\n",
                None,
            ),
        ];
        for (name, doc, expected) in cases {
            assert_eq!(set(doc).as_deref(), *expected, "{name}");
        }
    }
}
