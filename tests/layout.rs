//! The architecture as a test: the `use crate::` graph between the files of
//! src/ has no cycles, and the functional core (`src/core`) uses nothing
//! from the shell folders. A move that breaks either fails here, not in a
//! reviewer's head.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Module path (`core::matcher`) -> source text, for every file under src/.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).expect("read src/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).expect("under src/");
                let mut name = rel.with_extension("").to_string_lossy().replace('/', "::");
                if let Some(parent) = name.strip_suffix("::mod") {
                    name = parent.to_string();
                }
                out.insert(name, fs::read_to_string(&path).expect("read source"));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// Every `crate::a::b::...` path in `src` (comments dropped, `{a, b::c}`
/// groups expanded), as segment lists.
fn crate_paths(src: &str) -> Vec<Vec<String>> {
    let code: String = src
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let end = path_end(rest);
        expand(&rest[..end], &mut Vec::new(), &mut out);
        rest = &rest[end..];
    }
    out
}

/// Length of the path expression at the start of `s` (through balanced braces).
fn path_end(s: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            c if depth == 0 && !(c.is_alphanumeric() || c == '_' || c == ':') => return i,
            _ => {}
        }
    }
    s.len()
}

fn expand(s: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if let Some(open) = s.find('{') {
        let head: Vec<String> = s[..open]
            .split("::")
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        let body = &s[open + 1..s.len().saturating_sub(1)];
        let mut depth = 0usize;
        let mut start = 0;
        let mut parts = Vec::new();
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&body[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&body[start..]);
        let n = prefix.len();
        prefix.extend(head);
        for p in parts.into_iter().filter(|p| !p.is_empty()) {
            expand(p, prefix, out);
        }
        prefix.truncate(n);
    } else {
        let mut path = prefix.clone();
        path.extend(s.split("::").filter(|p| !p.is_empty()).map(str::to_string));
        out.push(path);
    }
}

/// File -> files it uses (longest module prefix of each path; a file's own
/// children and itself are not edges).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let names: BTreeSet<String> = mods.keys().cloned().collect();
    mods.iter()
        .map(|(name, src)| {
            let deps = crate_paths(src)
                .into_iter()
                .filter_map(|segs| {
                    (1..=segs.len())
                        .rev()
                        .map(|i| segs[..i].join("::"))
                        .find(|m| names.contains(m))
                })
                .filter(|m| m != name && !m.starts_with(&format!("{name}::")))
                .collect();
            (name.clone(), deps)
        })
        .collect()
}

fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let at = stack.iter().position(|s| s == n).unwrap_or(0);
                let mut cycle = stack[at..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n.to_string(), Mark::Open);
        stack.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(n.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in g.keys() {
        if let Some(c) = visit(n, g, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_checker_sees_a_cycle_and_expands_groups() {
    let paths = crate_paths("use crate::{a::{B, c::D}, e};\nfn f() { crate::x::y(); }");
    let flat: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(flat, ["a::B", "a::c::D", "e", "x::y"]);
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(find_cycle(&g).is_some());
}

#[test]
fn no_import_cycles_between_files() {
    let g = graph();
    assert!(g.len() > 20, "found only {} modules", g.len());
    if let Some(cycle) = find_cycle(&g) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn core_uses_nothing_from_the_shell() {
    for (name, deps) in graph() {
        if name == "core" || name.starts_with("core::") {
            let outside: Vec<&String> = deps.iter().filter(|d| !d.starts_with("core")).collect();
            assert!(outside.is_empty(), "{name} uses {outside:?}");
        }
    }
}

#[test]
fn core_does_no_io() {
    for (name, src) in modules() {
        if name.starts_with("core") {
            for banned in [
                "std::fs",
                "std::net",
                "std::process",
                "mysql::",
                "std::io::Write",
            ] {
                assert!(!src.contains(banned), "{name} uses {banned}");
            }
        }
    }
}

#[test]
fn each_folder_says_what_lives_there() {
    for (name, src) in modules() {
        let is_folder = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(name.replace("::", "/"))
            .is_dir();
        if is_folder {
            assert!(
                src.starts_with("//! "),
                "src/{name}/mod.rs has no opening doc"
            );
        }
    }
}
