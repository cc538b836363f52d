//! Reading manifests from files, directories and stdin: multi-document YAML, JSON, and `List`
//! objects, each document remembered with where it came from.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Where a document came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Origin {
    /// The file, or `-` for stdin.
    pub file: String,
    /// The 1-based document number within the file.
    pub document: usize,
    /// The 1-based line the document starts on.
    pub line: usize,
    /// The `# Source:` comment Helm puts above each rendered template, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The index within a `List`'s items, if the object came from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.document == 0 {
            // A whole-file problem: there is no document to point at.
            return f.write_str(&self.file);
        }
        write!(f, "{}:{} (document {}", self.file, self.line, self.document)?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        if let Some(source) = &self.source {
            write!(f, ", {source}")?;
        }
        f.write_str(")")
    }
}

/// A document that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct LoadError {
    /// Where.
    pub origin: Origin,
    /// What went wrong.
    pub message: String,
}

/// Every object read, and every document that could not be.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Objects with their origins.
    pub objects: Vec<(Origin, Value)>,
    /// Documents or files that could not be read.
    pub errors: Vec<LoadError>,
}

/// Reads every path: files, directories (recursively, `.yaml`, `.yml` and `.json`, in name
/// order) and `-` for stdin.
pub fn load_paths(paths: &[PathBuf], stdin: &mut dyn std::io::Read) -> Loaded {
    let mut loaded = Loaded::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match stdin.read_to_string(&mut text) {
                Ok(_) => load_text("-", &text, &mut loaded),
                Err(e) => loaded
                    .errors
                    .push(file_error("-", format!("cannot read stdin: {e}"))),
            }
            continue;
        }
        let mut files = Vec::new();
        if let Err(message) = collect_files(path, &mut files) {
            loaded
                .errors
                .push(file_error(&path.display().to_string(), message));
        }
        for file in files {
            let name = file.display().to_string();
            match std::fs::read_to_string(&file) {
                Ok(text) => load_text(&name, &text, &mut loaded),
                Err(e) => loaded
                    .errors
                    .push(file_error(&name, format!("cannot read: {e}"))),
            }
        }
    }
    loaded
}

fn file_error(file: &str, message: String) -> LoadError {
    LoadError {
        origin: Origin {
            file: file.to_string(),
            document: 0,
            line: 0,
            source: None,
            item: None,
        },
        message,
    }
}

/// The manifest files under `path`: itself if a file, else its `.yaml`, `.yml` and `.json` files,
/// recursively, in name order.
pub fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("cannot list the directory: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_files(&entry, out)?;
        } else if entry
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(entry);
        }
    }
    Ok(())
}

/// Reads one file's text: JSON if it parses as JSON (one value or a stream of them, as kubectl
/// reads), otherwise multi-document YAML (KYAML's flow style starts with `{` too).
pub fn load_text(file: &str, text: &str, loaded: &mut Loaded) {
    let trimmed = text.trim_start();
    if (trimmed.starts_with('{') || trimmed.starts_with('['))
        && let Some(values) = json_stream(text)
    {
        let first_line = 1 + text[..text.len() - trimmed.len()].matches('\n').count();
        for (index, (offset, value)) in values.into_iter().enumerate() {
            let origin = Origin {
                file: file.to_string(),
                document: index + 1,
                line: first_line.max(1 + text[..offset].matches('\n').count()),
                source: None,
                item: None,
            };
            push_value(origin, value, loaded);
        }
        return;
    }
    for (index, doc) in split_documents(text).into_iter().enumerate() {
        let origin = Origin {
            file: file.to_string(),
            document: index + 1,
            line: doc.line,
            source: doc.source,
            item: None,
        };
        if doc.text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#')
        }) {
            continue;
        }
        match custody_crds::yaml::from_manifest_yaml::<Value>(&doc.text) {
            Ok(Value::Null) => {}
            Ok(value) => push_value(origin, value, loaded),
            Err(e) => loaded.errors.push(LoadError {
                origin,
                message: format!("invalid YAML: {}", first_line(&e.to_string())),
            }),
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

fn push_value(origin: Origin, value: Value, loaded: &mut Loaded) {
    match value {
        Value::Object(ref map)
            if map
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
                && map.get("items").is_some_and(Value::is_array) =>
        {
            if let Some(Value::Array(items)) = map.get("items") {
                for (i, item) in items.iter().enumerate() {
                    let origin = Origin {
                        item: Some(i + 1),
                        ..origin.clone()
                    };
                    push_object(origin, item.clone(), loaded);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                let origin = Origin {
                    item: Some(i + 1),
                    ..origin.clone()
                };
                push_object(origin, item, loaded);
            }
        }
        other => push_object(origin, other, loaded),
    }
}

fn push_object(origin: Origin, value: Value, loaded: &mut Loaded) {
    let has = |k: &str| {
        value
            .get(k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    if value.is_object() && has("kind") && has("apiVersion") {
        loaded.objects.push((origin, value));
    } else {
        loaded.errors.push(LoadError {
            origin,
            message: "not a Kubernetes object: apiVersion and kind are required".to_string(),
        });
    }
}

struct Document {
    line: usize,
    text: String,
    source: Option<String>,
}

/// Splits YAML text at `---` document markers (and `...` ends), keeping each document's start
/// line. Markers only count at column 0, where block scalars cannot put them.
fn split_documents(text: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut current = Document {
        line: 1,
        text: String::new(),
        source: None,
    };
    for (i, line) in text.lines().enumerate() {
        let is_start = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        let is_end = line == "..." || line.starts_with("... ");
        if is_start || is_end {
            docs.push(std::mem::replace(
                &mut current,
                Document {
                    line: i + 2,
                    text: String::new(),
                    source: None,
                },
            ));
            if is_start {
                let rest = line[3..].trim();
                if !rest.is_empty() && !rest.starts_with('#') {
                    // Content on the marker line belongs to the new document.
                    current.line = i + 1;
                    current.text.push_str(rest);
                    current.text.push('\n');
                }
            }
            continue;
        }
        if current.text.trim().is_empty()
            && current.source.is_none()
            && let Some(source) = line.trim().strip_prefix("# Source:")
        {
            current.source = Some(format!("Source: {}", source.trim()));
        }
        if current.text.trim().is_empty()
            && (line.trim().is_empty() || line.trim_start().starts_with('#'))
        {
            // Leading comments and blank lines: the document starts after them.
            current.line = i + 2;
            continue;
        }
        current.text.push_str(line);
        current.text.push('\n');
    }
    docs.push(current);
    docs.into_iter()
        .filter(|d| !d.text.trim().is_empty())
        .collect()
}

/// Every JSON value of `text` with the byte offset where it starts, or `None` when the text is
/// not a JSON stream.
pub fn json_stream(text: &str) -> Option<Vec<(usize, Value)>> {
    let mut values = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut start = 0;
    while let Some(next) = stream.next() {
        let value = next.ok()?;
        let skipped = text[start..].len() - text[start..].trim_start().len();
        values.push((start + skipped, value));
        start = stream.byte_offset();
    }
    Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Loaded {
        let mut loaded = Loaded::default();
        load_text("m.yaml", text, &mut loaded);
        loaded
    }

    #[test]
    fn multi_document_yaml_keeps_positions() {
        let text = "# a comment\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\n---\n# Source: chart/templates/d.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: b\n...\n";
        let loaded = load(text);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let origins: Vec<(usize, usize, Option<&str>)> = loaded
            .objects
            .iter()
            .map(|(o, _)| (o.document, o.line, o.source.as_deref()))
            .collect();
        assert_eq!(
            origins,
            vec![(1, 2, None), (2, 9, Some("Source: chart/templates/d.yaml"))]
        );
    }

    #[test]
    fn lists_and_json_arrays_expand() {
        let loaded = load(
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: a}}\n- {apiVersion: v1, kind: Pod, metadata: {name: b}}\n",
        );
        assert_eq!(loaded.objects.len(), 2);
        assert_eq!(loaded.objects[1].0.item, Some(2));
        let loaded = load("[{\"apiVersion\":\"v1\",\"kind\":\"Pod\"}]");
        assert_eq!(loaded.objects.len(), 1);
    }

    #[test]
    fn bad_documents_are_reported_and_the_rest_kept() {
        let loaded = load(
            "apiVersion: v1\nkind: Pod\n---\nkey: [unclosed\n---\njust a string\n---\napiVersion: v1\nkind: Pod\n",
        );
        assert_eq!(loaded.objects.len(), 2);
        assert_eq!(loaded.errors.len(), 2, "{:?}", loaded.errors);
        assert_eq!(loaded.errors[0].origin.document, 2);
        assert!(loaded.errors[0].message.starts_with("invalid YAML"));
        assert!(loaded.errors[1].message.contains("not a Kubernetes object"));
    }

    #[test]
    fn json_streams_and_flow_yaml_both_load() {
        let loaded = load(
            "{\"apiVersion\": \"v1\", \"kind\": \"Pod\"}\n{\"apiVersion\": \"v1\", \"kind\": \"Pod\"}\n",
        );
        assert_eq!(loaded.objects.len(), 2, "{:?}", loaded.errors);
        assert_eq!(loaded.objects[1].0.line, 2);
        // KYAML: flow style, unquoted keys, a trailing comma and a comment.
        let loaded = load("{\n  apiVersion: \"v1\",\n  kind: \"Pod\", # a bare Pod\n}\n");
        assert_eq!(loaded.objects.len(), 1, "{:?}", loaded.errors);
    }

    #[test]
    fn invalid_json_is_an_error() {
        let loaded = load("{\"apiVersion\": ");
        assert_eq!(loaded.errors.len(), 1);
        assert!(loaded.errors[0].message.starts_with("invalid"));
    }
}
