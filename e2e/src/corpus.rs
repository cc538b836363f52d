//! The public manifest corpus (`e2e/corpus/`, sources and commits in its README) as the lab
//! scenarios apply it: each project's documents as JSON objects, with the namespace the
//! project hard-coded removed, so the scenario chooses where they go. Nothing else is changed.

use std::collections::BTreeMap;

use custody_crds::WorkloadKind;
use serde_json::Value;

use crate::repo_root;

/// One project's objects.
pub struct Project {
    /// Its folder name in the corpus.
    pub name: String,
    /// Its workloads, in file order.
    pub workloads: Vec<Value>,
    /// Everything else (ServiceAccounts, ConfigMaps, Services, Roles…).
    pub support: Vec<Value>,
}

/// Whether `object` is of a kind Custody judges.
pub fn is_workload(object: &Value) -> bool {
    object["kind"]
        .as_str()
        .is_some_and(|k| WorkloadKind::ALL.iter().any(|w| w.as_str() == k))
}

/// `Kind/name` of an object, for messages.
pub fn name_of(object: &Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// Every project of the corpus, by the files `index.json` lists.
pub fn projects() -> anyhow::Result<Vec<Project>> {
    let dir = repo_root().join("e2e/corpus");
    let index: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("index.json"))?)?;
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in index.as_array().into_iter().flatten() {
        let file = entry["file"].as_str().unwrap_or_default().to_string();
        let project = entry["project"].as_str().unwrap_or_default().to_string();
        let list = files.entry(project).or_default();
        if !list.contains(&file) {
            list.push(file);
        }
    }
    let mut projects = Vec::new();
    for (name, files) in files {
        let mut project = Project {
            name,
            workloads: Vec::new(),
            support: Vec::new(),
        };
        for file in files {
            let text = std::fs::read_to_string(dir.join(&file))?;
            for doc in documents(&text) {
                let mut object: Value = custody_crds::yaml::from_manifest_yaml(doc)
                    .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
                if object.is_null() {
                    continue;
                }
                if let Some(meta) = object["metadata"].as_object_mut() {
                    meta.remove("namespace");
                }
                if is_workload(&object) {
                    project.workloads.push(object);
                } else {
                    project.support.push(object);
                }
            }
        }
        projects.extend(without_duplicates(project));
    }
    Ok(projects)
}

/// Splits a project whose files share a workload name (two documentation examples of one Job)
/// into several, `name`, `name-2`…, each with the supporting objects, so each can have a
/// namespace of its own.
fn without_duplicates(project: Project) -> Vec<Project> {
    let mut parts: Vec<Project> = Vec::new();
    for workload in project.workloads {
        let slot = parts
            .iter()
            .position(|p| p.workloads.iter().all(|w| name_of(w) != name_of(&workload)));
        let index = slot.unwrap_or(parts.len());
        if index == parts.len() {
            parts.push(Project {
                name: match index {
                    0 => project.name.clone(),
                    n => format!("{}-{}", project.name, n + 1),
                },
                workloads: Vec::new(),
                support: project.support.clone(),
            });
        }
        parts[index].workloads.push(workload);
    }
    parts
}

/// The documents of a YAML stream (split at `---` lines; comment-only ones are kept and parse
/// as null).
fn documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            docs.push(&text[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    docs.push(&text[start..]);
    docs.into_iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        })
        .collect()
}

/// Objects as a stream of JSON documents, as `kubectl apply -f -` and `custody` read them.
pub fn json_stream(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| format!("{o}\n"))
        .collect::<Vec<_>>()
        .concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_loads_with_every_kind() {
        let projects = projects().expect("the corpus loads");
        assert!(projects.len() >= 6);
        for p in &projects {
            let mut names: Vec<String> = p.workloads.iter().map(name_of).collect();
            names.sort_unstable();
            let all = names.len();
            names.dedup();
            assert_eq!(names.len(), all, "{} has a workload twice", p.name);
        }
        let mut kinds: Vec<&str> = projects
            .iter()
            .flat_map(|p| p.workloads.iter().filter_map(|w| w["kind"].as_str()))
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        // Every kind but ReplicationController, which no project ships any more.
        assert_eq!(kinds.len(), WorkloadKind::ALL.len() - 1, "{kinds:?}");
        assert!(
            projects
                .iter()
                .flat_map(|p| p.workloads.iter().chain(&p.support))
                .all(|o| o["metadata"].get("namespace").is_none())
        );
    }
}
