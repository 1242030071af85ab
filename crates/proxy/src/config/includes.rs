//! `include:`: other YAML files merged into the config before anything else reads it, as
//! LiteLLM merges them: a top-level list (`model_list`, `credential_list`) is extended, any
//! other top-level value is replaced, an included file's own `include` entries are read
//! next (relative to that file), and a file already read is not read again.
//!
//! Unlike LiteLLM, an entry is found next to the file that names it only (LiteLLM also looks
//! next to the root config, with a warning): a config that works here names its files one way.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ConfigError;

/// Reads a file's text (the file system; tests may stand in).
pub(super) type Read<'a> = &'a dyn Fn(&Path) -> std::io::Result<String>;

/// Merges every file `root` includes into it and removes the `include` keys; `source` is the
/// root config's path as given. Returns the files read, in order.
pub(super) fn resolve(
    root: &mut serde_json::Map<String, Value>,
    source: &str,
    read: Read<'_>,
) -> Result<Vec<PathBuf>, ConfigError> {
    let root_path = absolute(Path::new(source));
    let mut loaded = BTreeSet::from([root_path.clone()]);
    let mut read_files = Vec::new();
    let mut pending: VecDeque<(String, PathBuf, String)> = VecDeque::new();
    queue(&mut pending, root.remove("include"), &root_path, source)?;
    while let Some((entry, declared_in, at)) = pending.pop_front() {
        let dir = declared_in.parent().unwrap_or(Path::new("."));
        let path = absolute(&dir.join(&entry));
        if !loaded.insert(path.clone()) {
            continue;
        }
        let declared = declared_in.display().to_string();
        let text = read(&path).map_err(|e| ConfigError::Invalid {
            file: declared.clone(),
            path: at.clone(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        let file = path.display().to_string();
        let value: Value = if text.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::Yaml {
                file: file.clone(),
                message: e.to_string(),
            })?
        };
        let mut included = match value {
            Value::Object(m) => m,
            Value::Null => serde_json::Map::new(),
            _ => {
                return Err(ConfigError::Invalid {
                    file,
                    path: "(top level)".to_string(),
                    message: format!(
                        "an included file must be a mapping (included by {declared} {at})"
                    ),
                });
            }
        };
        queue(&mut pending, included.remove("include"), &path, &file)?;
        merge(root, included);
        read_files.push(path);
    }
    Ok(read_files)
}

/// Adds a file's `include` entries to the queue, each with the file that names it.
fn queue(
    pending: &mut VecDeque<(String, PathBuf, String)>,
    include: Option<Value>,
    declared_in: &Path,
    file: &str,
) -> Result<(), ConfigError> {
    let entries = match include {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ConfigError::Invalid {
                file: file.to_string(),
                path: "include".to_string(),
                message: "must be a list of file paths".to_string(),
            });
        }
    };
    for (i, e) in entries.into_iter().enumerate() {
        match e {
            Value::String(s) if !s.trim().is_empty() => {
                pending.push_back((s, declared_in.to_path_buf(), format!("include[{i}]")));
            }
            _ => {
                return Err(ConfigError::Invalid {
                    file: file.to_string(),
                    path: format!("include[{i}]"),
                    message: "must be a file path".to_string(),
                });
            }
        }
    }
    Ok(())
}

/// LiteLLM's merge: lists at the top level are extended, every other value is replaced.
fn merge(root: &mut serde_json::Map<String, Value>, included: serde_json::Map<String, Value>) {
    for (k, v) in included {
        match (root.get_mut(&k), v) {
            (Some(Value::Array(base)), Value::Array(more)) => base.extend(more),
            (_, v) => {
                root.insert(k, v);
            }
        }
    }
}

/// A path made absolute against the working directory, with `.` and `..` folded, so that one
/// file named two ways is read once.
fn absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<PathBuf, String> {
        pairs
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect()
    }

    fn run(
        root: &str,
        fs: &BTreeMap<PathBuf, String>,
    ) -> Result<(Value, Vec<PathBuf>), ConfigError> {
        let read = |p: &Path| {
            fs.get(p).cloned().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory")
            })
        };
        let Value::Object(mut m) = serde_yaml_ng::from_str(root).unwrap_or(Value::Null) else {
            panic!("root must be a mapping");
        };
        let read_files = resolve(&mut m, "/cfg/config.yaml", &read)?;
        Ok((Value::Object(m), read_files))
    }

    #[test]
    fn lists_extend_other_values_replace_and_nested_entries_are_relative_to_their_file() {
        let fs = files(&[
            (
                "/cfg/models/a.yaml",
                "model_list: [{model_name: a}]\ninclude: [../b.yaml, sub/c.yaml]\ngeneral_settings: {x: 1}\n",
            ),
            ("/cfg/b.yaml", "model_list: [{model_name: b}]\n"),
            (
                "/cfg/models/sub/c.yaml",
                "model_list: [{model_name: c}]\ninclude: [../a.yaml]\n",
            ),
        ]);
        let (v, read) = run(
            "include: [models/a.yaml, ./b.yaml]\nmodel_list: [{model_name: root}]\ngeneral_settings: {y: 2}\n",
            &fs,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = v["model_list"]
            .as_array()
            .map(|l| l.iter().filter_map(|m| m["model_name"].as_str()).collect())
            .unwrap_or_default();
        // a, root's second entry (b), then a's own: b again (already read, skipped) and c.
        assert_eq!(names, ["root", "a", "b", "c"]);
        assert_eq!(v["general_settings"], serde_json::json!({"x": 1}));
        assert!(v.get("include").is_none());
        assert_eq!(
            read,
            [
                PathBuf::from("/cfg/models/a.yaml"),
                PathBuf::from("/cfg/b.yaml"),
                PathBuf::from("/cfg/models/sub/c.yaml"),
            ]
        );
    }

    #[test]
    fn a_missing_file_names_the_entry_and_the_path() {
        let e = run("include: [gone.yaml]\n", &files(&[]))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "/cfg/config.yaml: include[0]: cannot read /cfg/gone.yaml: No such file or directory"
            )
        );
    }

    #[test]
    fn bad_shapes_are_refused() {
        let fs = files(&[("/cfg/list.yaml", "- a\n- b\n")]);
        for (root, want) in [
            (
                "include: x.yaml\n",
                "/cfg/config.yaml: include: must be a list of file paths",
            ),
            (
                "include: [1]\n",
                "/cfg/config.yaml: include[0]: must be a file path",
            ),
            (
                "include: [list.yaml]\n",
                "/cfg/list.yaml: (top level): an included file must be a mapping (included by /cfg/config.yaml include[0])",
            ),
        ] {
            let e = run(root, &fs).err().map(|e| e.to_string());
            assert_eq!(e.as_deref(), Some(want), "{root}");
        }
    }
}
