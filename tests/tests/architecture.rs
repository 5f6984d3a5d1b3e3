//! The architecture, checked: no import cycle between the modules of a crate,
//! and the crate layering of the developers' guide.
//!
//! - **Modules.** For every module with submodules (the crate root included),
//!   its children form a graph: child `a` depends on child `b` when code in
//!   `a`'s subtree names `crate::…::b` (or reaches it through `super::`). That
//!   graph must have no cycle, at every level. Unit-test modules
//!   (`#[cfg(test)] mod tests`) and comments are not read: tests may use any
//!   helper. The binary's modules are checked as a crate of their own.
//! - **Crates.** `laurel-passes` depends on nothing that knows protobuf, ONNX
//!   or the IR (no `laurelc`, `laurel-runtime`, `onnx-protobuf`, `protobuf`,
//!   `prost` or `tract-*`, even transitively); `laurel-runtime` knows nothing
//!   of the IR or of the e-graph (no `laurelc`, `laurel-passes`,
//!   `onnx-protobuf`, `egg`, `petgraph`); nothing depends on `laurelc` but the
//!   cross-crate tests. Read from `cargo metadata` (offline, from the lock).
//!
//! Paths are read by a small scanner, not a parser: `use crate::{a, b::c}`,
//! `use super::x`, and inline `crate::a::b` / `super::a` paths. It is exact for
//! this code base's style; a path it cannot see would hide an edge, and
//! [`the_scanner_sees_every_form_of_path`] pins down the forms it reads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path inside a crate (`["fuse", "lower"]`; empty for the root).
type ModPath = Vec<String>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The module path of a source file under `src`.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: ModPath = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Whether `file` is a directory module's own file (`mod.rs`, `lib.rs`,
/// `main.rs`), whose `super` is its parent's parent.
fn is_dir_module(file: &Path) -> bool {
    matches!(
        file.file_name().and_then(|n| n.to_str()),
        Some("mod.rs" | "lib.rs" | "main.rs")
    )
}

/// The text without comments, string, byte-string, raw-string, char and
/// byte literals, and unit-test modules (`#[cfg(test)] mod … { … }`, wherever
/// they sit).
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if let Some(hashes) = raw_string_start(rest) {
            // r"…", r#"…"#, br"…": no escapes, ends at `"` and the same hashes.
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            i += rest.iter().position(|&c| c == b'"').unwrap_or(0) + 1;
            while i < b.len() && !b[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            // A char or byte literal ('x', '\n', '\u{1F600}', b'"'), or a lifetime.
            let literal_end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map(|k| i + 2 + k)
            } else {
                let ch = text[i + 1..].chars().next();
                ch.map(|c| i + 1 + c.len_utf8())
                    .filter(|&e| b.get(e) == Some(&b'\''))
            };
            if let Some(e) = literal_end {
                i = e + 1;
                out.push_str("' '");
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            let c = text[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8().max(1);
        }
    }
    remove_test_modules(&out)
}

/// `Some(hashes)` when `s` starts a raw (byte) string: `r"`, `r#"`, `br"`.
fn raw_string_start(s: &[u8]) -> Option<usize> {
    let s = s.strip_prefix(b"b").unwrap_or(s);
    let s = s.strip_prefix(b"r")?;
    let hashes = s.iter().take_while(|&&c| c == b'#').count();
    (s.get(hashes) == Some(&b'"')).then_some(hashes)
}

/// `code` without its `#[cfg(test)] mod NAME { … }` blocks (other attributes
/// may sit between), through their matching brace.
fn remove_test_modules(code: &str) -> String {
    let mut out = code.to_owned();
    let mut from = 0;
    while let Some(k) = out[from..].find("#[cfg(test)]") {
        let at = from + k;
        let mut rest_at = at + "#[cfg(test)]".len();
        loop {
            let trimmed = out[rest_at..].trim_start();
            rest_at = out.len() - trimmed.len();
            if trimmed.starts_with("#[") {
                rest_at += trimmed.find(']').map_or(trimmed.len(), |e| e + 1);
            } else {
                break;
            }
        }
        let rest = &out[rest_at..];
        let is_block_module = rest.starts_with("mod ")
            && rest
                .find('{')
                .is_some_and(|b| rest.find(';').is_none_or(|s| b < s));
        if !is_block_module {
            from = at + 1;
            continue;
        }
        let open = rest_at + rest.find('{').unwrap_or(0);
        let mut depth = 0usize;
        let mut end = out.len();
        for (k, c) in out[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(at..end, "");
        from = at;
    }
    out
}

/// Splits `a, b::{c, d}, e` at top-level commas.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0i32, 0, Vec::new());
    for (i, ch) in s.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// The paths a `use` tree names, from `base`.
fn use_tree(base: &[String], tree: &str, out: &mut Vec<ModPath>) {
    let tree = tree.trim();
    if tree.is_empty() {
        out.push(base.to_vec());
        return;
    }
    if let Some(inner) = tree.strip_prefix('{') {
        let inner = &inner[..inner.rfind('}').unwrap_or(inner.len())];
        for part in split_top(inner) {
            use_tree(base, part, out);
        }
        return;
    }
    let (head, tail) = tree.split_once("::").unwrap_or((tree, ""));
    let head = head.split(" as ").next().unwrap_or(head).trim();
    match head {
        "self" | "*" => out.push(base.to_vec()),
        "super" => use_tree(&base[..base.len().saturating_sub(1)], tail, out),
        _ => {
            let mut next = base.to_vec();
            next.push(head.to_owned());
            use_tree(&next, tail, out);
        }
    }
}

/// Every crate-internal path `code` names, resolved from module `me`
/// (`me_is_dir`: `me` is a directory module, so its `super` is its parent).
fn paths_named(code: &str, me: &[String], me_is_dir: bool) -> Vec<ModPath> {
    let here: ModPath = me.to_vec();
    let parent: ModPath = if me_is_dir || !me.is_empty() {
        me[..me.len().saturating_sub(1)].to_vec()
    } else {
        Vec::new()
    };
    // A file module's `super` is the module containing it; so is a
    // directory module's (`a/mod.rs` is `a`, whose `super` is `a`'s parent).
    let _ = me_is_dir;
    let mut out = Vec::new();
    // `a::b::c` at the start of `s`: identifiers joined by `::`.
    let words = |s: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = s;
        loop {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end == 0 {
                break;
            }
            out.push(rest[..end].to_owned());
            match rest[end..].strip_prefix("::") {
                Some(next) => rest = next,
                None => break,
            }
        }
        out
    };
    let mut rest = code;
    while let Some(k) = rest.find("use ") {
        let before = rest[..k].chars().last();
        let after = &rest[k + 4..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = after.find(';').unwrap_or(after.len());
        let stmt = after[..end].trim();
        let (root, tree) = stmt.split_once("::").unwrap_or((stmt, ""));
        let base = match root.trim() {
            "crate" => Vec::new(),
            "super" => parent.clone(),
            "self" => here.clone(),
            _ => continue,
        };
        use_tree(&base, tree, &mut out);
    }
    let mut inline = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(k) = rest.find("use ") {
        let starts_word = !rest[..k]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        let end = if starts_word {
            rest[k..].find(';').map_or(rest.len(), |e| k + e + 1)
        } else {
            k + 4
        };
        inline.push_str(&rest[..if starts_word { k } else { end }]);
        rest = &rest[end..];
    }
    inline.push_str(rest);
    let code = inline.as_str();
    for (root, base) in [("crate::", Vec::new()), ("super::", parent.clone())] {
        let mut from = 0;
        while let Some(k) = code[from..].find(root) {
            let at = from + k;
            from = at + root.len();
            if code[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            {
                continue;
            }
            let mut path = base.clone();
            let mut segs = words(&code[at + root.len()..]);
            while segs.first().is_some_and(|s| s == "super") {
                path.pop();
                segs.remove(0);
            }
            path.extend(segs);
            out.push(path);
        }
    }
    out
}

/// The paths a module's `pub use` / `pub(crate) use` statements re-export.
fn reexported_paths(code: &str, me: &[String], me_is_dir: bool) -> Vec<ModPath> {
    let mut out = Vec::new();
    for marker in ["pub use ", "pub(crate) use "] {
        for piece in code.split(marker).skip(1) {
            let body = piece[..piece.find(';').map_or(piece.len(), |e| e + 1)].trim_start();
            // `pub use child::X` is relative to the module itself.
            let stmt = if ["crate::", "super::", "self::"]
                .iter()
                .any(|p| body.starts_with(p))
            {
                format!("use {body}")
            } else {
                format!("use self::{body}")
            };
            out.extend(paths_named(&stmt, me, me_is_dir));
        }
    }
    out
}

/// The module dependency graph of the crate at `src` (files under
/// `skip` left out): for each parent module, edges between its children.
fn module_graph(
    src: &Path,
    skip: Option<&str>,
) -> BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if skip.is_none_or(|s| p.file_name().is_none_or(|n| n != s)) {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_of(src, f)).collect();
    let codes: Vec<(ModPath, bool, String)> = files
        .iter()
        .map(|f| {
            let code = code_of(&std::fs::read_to_string(f).unwrap());
            (module_of(src, f), is_dir_module(f), code)
        })
        .collect();
    // What each module re-exports (`pub use x::Y`): `crate::m::Y` is `x`'s.
    let mut reexports: BTreeMap<ModPath, BTreeMap<String, ModPath>> = BTreeMap::new();
    for (me, dir, code) in &codes {
        for path in reexported_paths(code, me, *dir) {
            // Only what comes from another module of this crate.
            let mut module = path.clone();
            while !module.is_empty() && !modules.contains(&module) {
                module.pop();
            }
            if module == *me {
                continue;
            }
            if let Some(name) = path.last() {
                reexports
                    .entry(me.clone())
                    .or_default()
                    .insert(name.clone(), path.clone());
            }
        }
    }
    let resolve = |mut target: ModPath| -> ModPath {
        for _ in 0..8 {
            let mut module = target.clone();
            while !module.is_empty() && !modules.contains(&module) {
                module.pop();
            }
            let next = target.get(module.len());
            let Some(via) = next.and_then(|n| reexports.get(&module)?.get(n)) else {
                return module;
            };
            let mut redirected = via.clone();
            redirected.extend(target.iter().skip(module.len() + 1).cloned());
            if redirected == target {
                return module;
            }
            target = redirected;
        }
        target
    };
    let mut graph: BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (me, dir, code) in &codes {
        let me = me.clone();
        for target in paths_named(code, &me, *dir) {
            let target = resolve(target);
            let common = me.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common < me.len() && common < target.len() {
                graph
                    .entry(me[..common].to_vec())
                    .or_default()
                    .entry(me[common].clone())
                    .or_default()
                    .insert(target[common].clone());
            }
        }
    }
    graph
}

/// The cycles (strongly connected components of more than one node) of `g`.
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Kosaraju: order by finish time, then components on the reverse graph.
    fn visit<'a>(
        v: &'a str,
        g: &'a BTreeMap<String, BTreeSet<String>>,
        seen: &mut BTreeSet<&'a str>,
        order: &mut Vec<&'a str>,
    ) {
        if !seen.insert(v) {
            return;
        }
        for w in g.get(v).into_iter().flatten() {
            visit(w, g, seen, order);
        }
        order.push(v);
    }
    let mut reverse: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, bs) in g {
        for b in bs {
            reverse.entry(b.clone()).or_default().insert(a.clone());
        }
    }
    let (mut seen, mut order) = (BTreeSet::new(), Vec::new());
    for v in g.keys() {
        visit(v, g, &mut seen, &mut order);
    }
    let mut assigned = BTreeSet::new();
    let mut out = Vec::new();
    for &v in order.iter().rev() {
        let mut comp = Vec::new();
        visit(v, &reverse, &mut assigned, &mut comp);
        if comp.len() > 1 {
            comp.sort_unstable();
            out.push(comp.into_iter().map(str::to_owned).collect());
        }
    }
    out
}

fn module_cycles(src: &Path, skip: Option<&str>) -> Vec<String> {
    let mut found = Vec::new();
    for (parent, g) in module_graph(src, skip) {
        for c in cycles(&g) {
            let edges: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    g[a].iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("{a} → {b}"))
                })
                .collect();
            let at = if parent.is_empty() {
                "crate root".to_owned()
            } else {
                parent.join("::")
            };
            found.push(format!("{}: in {at}: {}", src.display(), edges.join(", ")));
        }
    }
    found
}

#[test]
fn no_crate_has_a_module_cycle() {
    let w = workspace();
    let mut found = Vec::new();
    for krate in ["compiler", "passes", "runtime", "tests"] {
        found.extend(module_cycles(&w.join(krate).join("src"), Some("bin")));
    }
    found.extend(module_cycles(&w.join("compiler/src/bin/laurelc"), None));
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
}

#[test]
fn the_scanner_sees_every_form_of_path() {
    let code = code_of(
        "use crate::a::{b, c::{d, e as f}};\nuse super::g;\nuse std::x;\n// use crate::hidden;\nfn x() { crate::h::i(); super::super::j::k(); let s = \"crate::quoted\"; }\n#[cfg(test)]\n#[allow(x)]\nmod tests { use crate::t; }",
    );
    let me: ModPath = vec!["m".into(), "n".into()];
    let got: BTreeSet<String> = paths_named(&code, &me, false)
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    let want: BTreeSet<String> = ["a::b", "a::c::d", "a::c::e", "m::g", "h::i", "j::k"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(got, want);
}

/// A crate whose only cycles hide behind a re-export and a byte literal, and
/// a test module in mid-file whose paths do not count.
#[test]
fn the_graph_sees_through_re_exports_literals_and_test_modules() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |name: &str, text: &str| std::fs::write(src.join(name), text).unwrap();
    write("lib.rs", "mod a;\nmod b;\nmod c;\npub use c::Thing;\n");
    // a → c, through the crate root's re-export.
    write("a.rs", "use crate::Thing;\npub fn g() {}\n");
    // c → a, after a byte literal holding a quote and a raw string.
    write(
        "c.rs",
        "pub struct Thing;\nconst Q: u8 = b'\"';\nconst R: &str = r#\"x\"#;\nfn f() { crate::a::g(); }\n",
    );
    // b → a only in its tests (not counted), b → c after them (counted).
    write(
        "b.rs",
        "#[cfg(test)]\nmod tests {\n    use crate::a::g;\n}\nfn h() { crate::c::f(); }\n",
    );
    let graph = module_graph(src, None);
    let root = &graph[&Vec::new()];
    assert!(root["a"].contains("c"), "{graph:?}");
    assert!(root["c"].contains("a"), "{graph:?}");
    assert!(
        root["b"].contains("c") && !root["b"].contains("a"),
        "{graph:?}"
    );
    assert_eq!(cycles(root), vec![vec!["a".to_owned(), "c".to_owned()]]);
}

#[test]
fn a_cycle_is_found() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    g.entry("c".into()).or_default().insert("d".into());
    assert_eq!(
        cycles(&g),
        vec![vec!["a".to_owned(), "b".into(), "c".into()]]
    );
    g.get_mut("c").unwrap().remove("a");
    assert!(cycles(&g).is_empty());
}

/// Every package `package` reaches through normal (non-dev, non-build)
/// dependencies on this host, by name: `cargo tree`'s list.
fn reachable_packages(package: &str) -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree", "--locked", "-e", "normal", "--prefix", "none", "-p", package,
        ])
        .current_dir(workspace())
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1) // the package itself
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_crate_layering_holds() {
    let banned = |pkg: &str, banned: &[&str]| -> Vec<String> {
        reachable_packages(pkg)
            .into_iter()
            .filter(|d| {
                banned
                    .iter()
                    .any(|b| b.strip_suffix('*').map_or(d == b, |p| d.starts_with(p)))
            })
            .collect()
    };
    // No protobuf, no ONNX runtime, no IR: the e-graph machinery only.
    let passes = banned(
        "laurel-passes",
        &[
            "laurelc",
            "laurel-runtime",
            "onnx-protobuf",
            "protobuf",
            "prost",
            "tract-*",
            "petgraph",
        ],
    );
    assert!(passes.is_empty(), "laurel-passes reaches {passes:?}");
    // ONNX bytes on tract, nothing of the IR (onnx-protobuf, petgraph) or the e-graph.
    let runtime = banned(
        "laurel-runtime",
        &[
            "laurelc",
            "laurel-passes",
            "onnx-protobuf",
            "protobuf",
            "egg",
            "petgraph",
        ],
    );
    assert!(runtime.is_empty(), "laurel-runtime reaches {runtime:?}");
    let compiler = reachable_packages("laurelc");
    assert!(
        compiler.contains("laurel-passes") && compiler.contains("laurel-runtime"),
        "{compiler:?}"
    );
}
