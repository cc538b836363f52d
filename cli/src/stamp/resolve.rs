//! Where each stamped value comes from, in order: flags, `CUSTODY_*` variables, the CI or
//! GitOps system that is running, the local git checkout, and the repository's `.custody.yaml`
//! for owner and on-call. Pure: the environment, the checkout and the file are passed in.

use std::collections::BTreeMap;

use custody_crds::AnnotationKey;
use serde::Deserialize;

/// Values given explicitly (flags), by key.
pub type Explicit = BTreeMap<AnnotationKey, String>;

/// What the local checkout says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GitInfo {
    /// The `origin` remote's URL, as configured.
    pub remote: Option<String>,
    /// HEAD's commit.
    pub head: Option<String>,
    /// Uncommitted changes in the work tree.
    pub dirty: bool,
}

/// The repository's `.custody.yaml`: what a team declares once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepoConfig {
    /// The owning team.
    #[serde(default)]
    pub owner: Option<String>,
    /// How to reach on-call.
    #[serde(default)]
    pub oncall: Option<String>,
    /// The rollback mode (`auto`, `alert`, `unsafe`).
    #[serde(default)]
    pub rollback: Option<String>,
}

/// The system that supplied the source and run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// GitHub Actions.
    GitHubActions,
    /// GitLab CI.
    GitLabCi,
    /// An Argo CD config-management plugin.
    ArgoCd,
    /// The local git checkout.
    LocalGit,
    /// Flags and `CUSTODY_*` variables only.
    Explicit,
}

/// The values to stamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The annotation values, by key: they replace what a manifest says.
    pub values: BTreeMap<AnnotationKey, String>,
    /// Values from `.custody.yaml`: they fill in what a manifest does not say, so one workload
    /// may still name another owner.
    pub fill: BTreeMap<AnnotationKey, String>,
    /// The builder id for a signed predicate.
    pub builder_id: String,
    /// The commit came from a dirty work tree (`--allow-dirty`).
    pub dirty: bool,
    /// Where the source and run came from.
    pub origin: Origin,
}

/// Why values could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The work tree has uncommitted changes.
    #[error(
        "the git work tree has uncommitted changes, so HEAD is not what is deployed; commit them, or pass --allow-dirty to stamp anyway (recorded in the attestation)"
    )]
    Dirty,
    /// A required value is missing.
    #[error("no {key} value: {hint}")]
    Missing {
        /// The key.
        key: AnnotationKey,
        /// Where to give it.
        hint: &'static str,
    },
}

/// The `CUSTODY_*` variable of a key.
pub fn env_name(key: AnnotationKey) -> String {
    format!(
        "CUSTODY_{}",
        key.as_str().to_ascii_uppercase().replace('-', "_")
    )
}

/// Resolves every value.
pub fn resolve(
    flags: &Explicit,
    env: &BTreeMap<String, String>,
    git: Option<&GitInfo>,
    config: Option<&RepoConfig>,
    allow_dirty: bool,
) -> Result<Resolved, ResolveError> {
    let var = |name: &str| lookup(env, name);
    let mut values = BTreeMap::new();
    for key in custody_crds::attestation::SIGNED_KEYS {
        let given = flags
            .get(&key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
            .or_else(|| var(&env_name(key)));
        if let Some(v) = given {
            values.insert(key, v.trim().to_string());
        }
    }
    let (origin, system) = detect(env, git);
    let mut dirty = false;
    for (key, value) in system.values {
        if values.contains_key(&key) {
            continue;
        }
        if origin == Origin::LocalGit
            && key == AnnotationKey::SourceCommit
            && git.is_some_and(|g| g.dirty)
        {
            if !allow_dirty {
                return Err(ResolveError::Dirty);
            }
            dirty = true;
        }
        values.insert(key, value);
    }
    let mut fill = BTreeMap::new();
    if let Some(config) = config {
        for (key, value) in [
            (AnnotationKey::Owner, &config.owner),
            (AnnotationKey::Oncall, &config.oncall),
            (AnnotationKey::Rollback, &config.rollback),
        ] {
            if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty())
                && !values.contains_key(&key)
            {
                fill.insert(key, v.to_string());
            }
        }
    }
    if !values.contains_key(&AnnotationKey::Actor) {
        return Err(ResolveError::Missing {
            key: AnnotationKey::Actor,
            hint: "pass --actor human|agent|automation or set CUSTODY_ACTOR",
        });
    }
    Ok(Resolved {
        values,
        fill,
        builder_id: system.builder_id,
        dirty,
        origin,
    })
}

struct System {
    values: Vec<(AnnotationKey, String)>,
    builder_id: String,
}

fn lookup<'e>(env: &'e BTreeMap<String, String>, name: &str) -> Option<&'e str> {
    env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn detect(env: &BTreeMap<String, String>, git: Option<&GitInfo>) -> (Origin, System) {
    let var = |name: &str| lookup(env, name);
    let mut values = Vec::new();
    if var("GITHUB_ACTIONS") == Some("true") {
        let server = var("GITHUB_SERVER_URL").unwrap_or("https://github.com");
        if let Some(repo) = var("GITHUB_REPOSITORY") {
            let repo_url = format!("{server}/{repo}");
            if let (Some(id), attempt) = (var("GITHUB_RUN_ID"), var("GITHUB_RUN_ATTEMPT")) {
                values.push((
                    AnnotationKey::PipelineRun,
                    format!(
                        "{repo_url}/actions/runs/{id}/attempts/{}",
                        attempt.unwrap_or("1")
                    ),
                ));
            }
            values.push((AnnotationKey::SourceRepo, repo_url));
        }
        if let Some(sha) = var("GITHUB_SHA") {
            values.push((AnnotationKey::SourceCommit, sha.to_string()));
        }
        let builder_id = match var("GITHUB_WORKFLOW_REF") {
            Some(workflow) => format!("{server}/{workflow}"),
            None => format!("{server}/actions"),
        };
        return (Origin::GitHubActions, System { values, builder_id });
    }
    if var("GITLAB_CI") == Some("true") {
        for (key, name) in [
            (AnnotationKey::SourceRepo, "CI_PROJECT_URL"),
            (AnnotationKey::SourceCommit, "CI_COMMIT_SHA"),
            (AnnotationKey::PipelineRun, "CI_PIPELINE_URL"),
        ] {
            if let Some(v) = var(name) {
                values.push((key, v.to_string()));
            }
        }
        let builder_id = format!(
            "{}/gitlab-ci",
            var("CI_SERVER_URL").unwrap_or("https://gitlab.com")
        );
        return (Origin::GitLabCi, System { values, builder_id });
    }
    if let Some(repo) = var("ARGOCD_APP_SOURCE_REPO_URL") {
        values.push((AnnotationKey::SourceRepo, repo.to_string()));
        if let Some(rev) = var("ARGOCD_APP_REVISION") {
            values.push((AnnotationKey::SourceCommit, rev.to_string()));
        }
        if let Some(app) = var("ARGOCD_APP_NAME") {
            let ns = var("ARGOCD_APP_NAMESPACE").unwrap_or("argocd");
            values.push((AnnotationKey::PipelineRun, format!("argocd:{ns}/{app}")));
        }
        let builder_id = "https://argo-cd.readthedocs.io/config-management-plugin".to_string();
        return (Origin::ArgoCd, System { values, builder_id });
    }
    if let Some(git) = git {
        if let Some(remote) = &git.remote {
            values.push((AnnotationKey::SourceRepo, normalize_remote(remote)));
        }
        if let Some(head) = &git.head {
            values.push((AnnotationKey::SourceCommit, head.clone()));
        }
        return (
            Origin::LocalGit,
            System {
                values,
                builder_id: "https://custody.dev/stamp/local".to_string(),
            },
        );
    }
    (
        Origin::Explicit,
        System {
            values,
            builder_id: "https://custody.dev/stamp".to_string(),
        },
    )
}

/// A remote URL as a browsable repository URL: `git@github.com:acme/shop.git` is
/// `https://github.com/acme/shop`; credentials in an https URL are dropped.
pub fn normalize_remote(remote: &str) -> String {
    let remote = remote.trim();
    let url = if let Some(rest) = remote.strip_prefix("git@") {
        match rest.split_once(':') {
            Some((host, path)) => format!("https://{host}/{path}"),
            None => remote.to_string(),
        }
    } else if let Some(rest) = remote.strip_prefix("ssh://git@") {
        format!("https://{}", rest.replacen(':', "/", 1))
    } else if let Some(rest) = remote.strip_prefix("https://") {
        let rest = rest.split_once('@').map_or(rest, |(_, host)| host);
        format!("https://{rest}")
    } else {
        remote.to_string()
    };
    url.strip_suffix(".git").unwrap_or(&url).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn flags(pairs: &[(AnnotationKey, &str)]) -> Explicit {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    const GITHUB: &[(&str, &str)] = &[
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_SERVER_URL", "https://github.com"),
        ("GITHUB_REPOSITORY", "acme/shop"),
        ("GITHUB_SHA", "3f9c2a7e0b1d2c3f4a5b6c7d8e9f0a1b2c3d4e5f"),
        ("GITHUB_RUN_ID", "4242"),
        ("GITHUB_RUN_ATTEMPT", "2"),
        ("CUSTODY_ACTOR", "automation"),
    ];

    #[test]
    fn sources_in_order() {
        let clean = GitInfo {
            remote: Some("git@github.com:acme/local.git".into()),
            head: Some("aaaaaaa".into()),
            dirty: false,
        };
        let dirty = GitInfo {
            dirty: true,
            ..clean.clone()
        };
        let config = RepoConfig {
            owner: Some("team-shop".into()),
            oncall: Some("@shop-oncall".into()),
            rollback: None,
        };
        use AnnotationKey::*;
        struct Case {
            name: &'static str,
            flags: Explicit,
            env: BTreeMap<String, String>,
            git: Option<GitInfo>,
            allow_dirty: bool,
            expect: Result<Vec<(AnnotationKey, &'static str)>, ResolveError>,
            origin: Option<Origin>,
        }
        let cases = vec![
            Case {
                name: "github actions",
                flags: Explicit::new(),
                env: env(GITHUB),
                git: Some(clean.clone()),
                allow_dirty: false,
                expect: Ok(vec![
                    (Actor, "automation"),
                    (SourceRepo, "https://github.com/acme/shop"),
                    (SourceCommit, "3f9c2a7e0b1d2c3f4a5b6c7d8e9f0a1b2c3d4e5f"),
                    (
                        PipelineRun,
                        "https://github.com/acme/shop/actions/runs/4242/attempts/2",
                    ),
                    (Owner, "team-shop"),
                    (Oncall, "@shop-oncall"),
                ]),
                origin: Some(Origin::GitHubActions),
            },
            Case {
                name: "a flag beats a CUSTODY_ variable, which beats CI",
                flags: flags(&[(Actor, "agent"), (Agent, "claude-code/1.0")]),
                env: {
                    let mut e = env(GITHUB);
                    e.insert("CUSTODY_SOURCE_COMMIT".into(), "bbbbbbb".into());
                    e.insert("CUSTODY_OWNER".into(), "team-x".into());
                    e
                },
                git: None,
                allow_dirty: false,
                expect: Ok(vec![
                    (Actor, "agent"),
                    (Agent, "claude-code/1.0"),
                    (SourceRepo, "https://github.com/acme/shop"),
                    (SourceCommit, "bbbbbbb"),
                    (
                        PipelineRun,
                        "https://github.com/acme/shop/actions/runs/4242/attempts/2",
                    ),
                    (Owner, "team-x"),
                    (Oncall, "@shop-oncall"),
                ]),
                origin: Some(Origin::GitHubActions),
            },
            Case {
                name: "gitlab ci",
                flags: flags(&[(Actor, "automation")]),
                env: env(&[
                    ("GITLAB_CI", "true"),
                    ("CI_PROJECT_URL", "https://gitlab.com/acme/shop"),
                    ("CI_COMMIT_SHA", "cccccccc"),
                    (
                        "CI_PIPELINE_URL",
                        "https://gitlab.com/acme/shop/-/pipelines/7",
                    ),
                ]),
                git: None,
                allow_dirty: false,
                expect: Ok(vec![
                    (Actor, "automation"),
                    (SourceRepo, "https://gitlab.com/acme/shop"),
                    (SourceCommit, "cccccccc"),
                    (PipelineRun, "https://gitlab.com/acme/shop/-/pipelines/7"),
                    (Owner, "team-shop"),
                    (Oncall, "@shop-oncall"),
                ]),
                origin: Some(Origin::GitLabCi),
            },
            Case {
                name: "argo cd plugin",
                flags: flags(&[(Actor, "automation")]),
                env: env(&[
                    (
                        "ARGOCD_APP_SOURCE_REPO_URL",
                        "https://github.com/acme/deploy",
                    ),
                    ("ARGOCD_APP_REVISION", "ddddddd"),
                    ("ARGOCD_APP_NAME", "shop"),
                ]),
                git: Some(dirty.clone()),
                allow_dirty: false,
                expect: Ok(vec![
                    (Actor, "automation"),
                    (SourceRepo, "https://github.com/acme/deploy"),
                    (SourceCommit, "ddddddd"),
                    (PipelineRun, "argocd:argocd/shop"),
                    (Owner, "team-shop"),
                    (Oncall, "@shop-oncall"),
                ]),
                origin: Some(Origin::ArgoCd),
            },
            Case {
                name: "local checkout",
                flags: flags(&[(Actor, "human")]),
                env: BTreeMap::new(),
                git: Some(clean.clone()),
                allow_dirty: false,
                expect: Ok(vec![
                    (Actor, "human"),
                    (SourceRepo, "https://github.com/acme/local"),
                    (SourceCommit, "aaaaaaa"),
                    (Owner, "team-shop"),
                    (Oncall, "@shop-oncall"),
                ]),
                origin: Some(Origin::LocalGit),
            },
            Case {
                name: "a dirty checkout is refused",
                flags: flags(&[(Actor, "human")]),
                env: BTreeMap::new(),
                git: Some(dirty.clone()),
                allow_dirty: false,
                expect: Err(ResolveError::Dirty),
                origin: None,
            },
            Case {
                name: "a dirty checkout with an explicit commit is not asked about",
                flags: flags(&[(Actor, "human"), (SourceCommit, "eeeeeee")]),
                env: BTreeMap::new(),
                git: Some(dirty.clone()),
                allow_dirty: false,
                expect: Ok(vec![
                    (Actor, "human"),
                    (SourceRepo, "https://github.com/acme/local"),
                    (SourceCommit, "eeeeeee"),
                    (Owner, "team-shop"),
                    (Oncall, "@shop-oncall"),
                ]),
                origin: Some(Origin::LocalGit),
            },
            Case {
                name: "no actor",
                flags: Explicit::new(),
                env: BTreeMap::new(),
                git: Some(clean.clone()),
                allow_dirty: false,
                expect: Err(ResolveError::Missing {
                    key: Actor,
                    hint: "pass --actor human|agent|automation or set CUSTODY_ACTOR",
                }),
                origin: None,
            },
        ];
        for case in cases {
            let got = resolve(
                &case.flags,
                &case.env,
                case.git.as_ref(),
                Some(&config),
                case.allow_dirty,
            );
            match (got, case.expect) {
                (Ok(got), Ok(expect)) => {
                    let expect: BTreeMap<_, _> = expect
                        .into_iter()
                        .map(|(k, v)| (k, v.to_string()))
                        .collect();
                    let mut all = got.values.clone();
                    all.extend(got.fill.clone());
                    assert_eq!(all, expect, "{}", case.name);
                    assert_eq!(Some(got.origin), case.origin, "{}", case.name);
                }
                (Err(got), Err(expect)) => assert_eq!(got, expect, "{}", case.name),
                (got, expect) => panic!("{}: got {got:?}, expected {expect:?}", case.name),
            }
        }
    }

    #[test]
    fn allow_dirty_is_recorded() {
        let git = GitInfo {
            remote: None,
            head: Some("aaaaaaa".into()),
            dirty: true,
        };
        let got = resolve(
            &flags(&[(AnnotationKey::Actor, "human")]),
            &BTreeMap::new(),
            Some(&git),
            None,
            true,
        )
        .unwrap();
        assert!(got.dirty);
    }

    #[test]
    fn remotes_become_repository_urls() {
        let cases = [
            (
                "git@github.com:acme/shop.git",
                "https://github.com/acme/shop",
            ),
            (
                "https://github.com/acme/shop.git",
                "https://github.com/acme/shop",
            ),
            (
                "https://token@gitlab.com/acme/shop",
                "https://gitlab.com/acme/shop",
            ),
            (
                "ssh://git@github.com/acme/shop.git",
                "https://github.com/acme/shop",
            ),
        ];
        for (remote, url) in cases {
            assert_eq!(normalize_remote(remote), url, "{remote}");
        }
    }
}
