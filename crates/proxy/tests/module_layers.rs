#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The proxy's top-level modules form layers: no module reaches, through `crate::` paths, a
//! module that reaches it back. Read from the sources, so that a new import that closes a
//! circle fails here, naming it, instead of surfacing later as a tangle. Code and doc comments
//! count (an intra-doc link is a reference too); plain `//` comments do not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module -> (module it names -> files that name it).
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text without plain `//` comments (doc comments `///` and `//!` stay).
fn without_plain_comments(text: &str) -> String {
    text.lines()
        .map(|line| {
            let mut from = 0;
            while let Some(at) = line[from..].find("//").map(|i| from + i) {
                let rest = &line[at..];
                if rest.starts_with("///") || rest.starts_with("//!") {
                    // The rest of the line is documentation.
                    return line;
                }
                if !in_string(line, at) {
                    return &line[..at];
                }
                from = at + 2;
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether byte `at` of `line` is inside a string literal: `"http://..."` is not a comment.
fn in_string(line: &str, at: usize) -> bool {
    let mut inside = false;
    let mut escaped = false;
    for c in line[..at].chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => inside = !inside,
            _ => {}
        }
    }
    inside
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules a text names through `crate::x` or `crate::{x, y::z}`.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        // `idlehands_crate::` and the like are other paths.
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident(&group[i..]);
                        if !name.is_empty() {
                            out.insert(name.to_string());
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name.to_string());
            }
        }
    }
    out
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut g = Graph::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = without_plain_comments(&std::fs::read_to_string(&file).unwrap());
        let edges = g.entry(module.clone()).or_default();
        for target in named_modules(&text) {
            if target != module && target != "self" && target != "super" {
                edges
                    .entry(target)
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    g
}

/// A circle of modules, first module repeated at the end, if there is one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        m: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in g.get(m).into_iter().flat_map(|e| e.keys()) {
            if let Some(c) = visit(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|m| visit(g, m, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_import_each_other_in_layers_without_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    // The scan sees the imports at all: the routes use the shared state.
    assert!(
        g.get("http").is_some_and(|e| e.contains_key("state")),
        "the scan found no http -> state import; is it reading src/? {g:?}"
    );
    if let Some(cycle) = find_cycle(&g) {
        let why: Vec<String> = cycle
            .windows(2)
            .map(|w| {
                let files: Vec<&str> = g[&w[0]][&w[1]].iter().map(String::as_str).collect();
                format!("  {} -> {} in {}", w[0], w[1], files.join(", "))
            })
            .collect();
        panic!(
            "import circle between top-level modules: {}\n{}",
            cycle.join(" -> "),
            why.join("\n")
        );
    }
}

#[test]
fn the_scan_names_a_circle_and_ignores_plain_comments() {
    let text = "use crate::{config::X, router};\n// crate::http in a comment\n\
                let u = \"http://x\"; // crate::ledger\n/// [`crate::state::App`]\n\
                idlehands_crate::ignored();";
    assert_eq!(
        named_modules(&without_plain_comments(text)),
        ["config", "router", "state"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    let mut g = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        g.entry(a.to_string())
            .or_default()
            .entry(b.to_string())
            .or_default()
            .insert(format!("{a}.rs"));
    }
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    g.get_mut("c").unwrap().remove("a");
    assert_eq!(find_cycle(&g), None);
}
