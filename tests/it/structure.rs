//! The shape of `src/`, checked on every run (pure Rust, reads files only):
//!
//! * no import cycle between the crate's modules;
//! * no file under `src/` over [`MAX_CODE_LINES`] lines of code;
//! * no `allow(dead_code)` (nor `expect(dead_code)`) under `src/` or `tests/`.
//!
//! Granularity: a *room* is one top-level module of the library, `src/x.rs`
//! together with everything under `src/x/` (a module and its own submodules
//! are one room: `engine.rs` may use `engine/view.rs` and the other way
//! round). An arrow `x -> y` is drawn when any file of room `x`, tests
//! included, names `crate::y` (in a `use`, a `use crate::{y, ..}` group or
//! a path in code) or reaches `y` with `super::` from a top-level file (or
//! enough `super::super::` to climb out of its room). Comments and string
//! literals are not read. `src/main.rs` is the binary (another crate, the
//! top floor) and `src/lib.rs` only declares the rooms: neither is a room.
//! Macros that build paths (`$crate`) are not followed.
//!
//! `STRUCTURE_SRC=/some/tree/src cargo test --test structure` checks
//! another tree (how the check was shown to catch the circle `main` had).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Longest file under `src/`, in code lines: non-blank, non-comment lines
/// outside `#[cfg(test)]` modules, `tests.rs` and `proptests.rs`.
const MAX_CODE_LINES: usize = 600;

/// Cycles allowed for a while (each exactly as listed: its rooms, sorted),
/// e.g. while a split that breaks one is under way; a listed one that is
/// gone fails the check, so that the list only shrinks. Empty since #20.
const KNOWN_CYCLES: &[&[&str]] = &[];

fn src_dir() -> PathBuf {
    match std::env::var_os("STRUCTURE_SRC") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The file's text with comments turned to spaces and the insides of
/// string and char literals to `_` (newlines kept, so line numbers and
/// line counts stay true).
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |ch: char, fill: char| if ch == '\n' { '\n' } else { fill };
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let prev_ident = i > 0 && ident(c[i - 1]);
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i], ' '));
                    i += 1;
                }
            }
        } else if (c[i] == 'r' || (c[i] == 'b' && c.get(i + 1) == Some(&'r'))) && !prev_ident {
            // A raw string r"..", r#".."#, br#".."#, or just an identifier.
            let start = i + if c[i] == 'b' { 2 } else { 1 };
            let mut j = start;
            while c.get(j) == Some(&'#') {
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let hashes = j - start;
            out.extend(&c[i..=j]);
            i = j + 1;
            while i < c.len() {
                if c[i] == '"' && (0..hashes).all(|k| c.get(i + 1 + k) == Some(&'#')) {
                    out.push('"');
                    out.extend(std::iter::repeat('#').take(hashes));
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(c[i], '_'));
                i += 1;
            }
        } else if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' && i + 1 < c.len() {
                    out.push('_');
                    i += 1;
                }
                out.push(blank(c[i], '_'));
                i += 1;
            }
            out.push('"');
            i += 1;
        } else if c[i] == '\'' {
            // A char literal ('x', '\n', '\''), or a lifetime ('a).
            let len = if c.get(i + 1) == Some(&'\\') {
                (i + 2..c.len()).find(|&k| c[k] == '\'').map(|k| k - i + 1)
            } else if c.get(i + 2) == Some(&'\'') {
                Some(3)
            } else {
                None
            };
            match len {
                Some(n) => {
                    out.push('\'');
                    out.extend(std::iter::repeat('_').take(n - 2));
                    out.push('\'');
                    i += n;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// The module path of a file under `src/` (`engine/view.rs` → engine,
/// view; `obs/mod.rs` → obs; `lib.rs` → nothing).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    let root = parts.is_empty() && matches!(stem, "lib" | "main");
    if stem != "mod" && !root {
        parts.push(stem.to_string());
    }
    parts
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// The identifier starting at `i` (after spaces), if any.
fn ident_at(c: &[char], mut i: usize) -> Option<(String, usize)> {
    while i < c.len() && c[i].is_whitespace() {
        i += 1;
    }
    let start = i;
    while i < c.len() && is_ident(c[i]) {
        i += 1;
    }
    (i > start).then(|| (c[start..i].iter().collect(), i))
}

fn starts_with(c: &[char], i: usize, s: &str) -> bool {
    s.chars()
        .enumerate()
        .all(|(k, ch)| c.get(i + k) == Some(&ch))
}

/// Which top-level modules a file names, each with the first line naming
/// it. `module` is the file's module path.
fn imports(code: &str, module: &[String]) -> BTreeMap<String, usize> {
    let c: Vec<char> = code.chars().collect();
    let mut found = BTreeMap::new();
    let mut line = 1;
    // Inline modules open at this point (`mod tests {`), with the brace
    // depth each opened at.
    let mut inline: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut pending_mod = false;
    let mut i = 0;
    let mut note = |name: String, line: usize| {
        found.entry(name).or_insert(line);
    };
    while i < c.len() {
        let boundary = i == 0 || !(is_ident(c[i - 1]) || c[i - 1] == '$' || c[i - 1] == ':');
        match c[i] {
            '\n' => line += 1,
            '{' => {
                if pending_mod {
                    inline.push(depth);
                    pending_mod = false;
                }
                depth += 1;
            }
            '}' => {
                depth = depth.saturating_sub(1);
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
            }
            ';' => pending_mod = false,
            _ => {}
        }
        if boundary && starts_with(&c, i, "mod") && !c.get(i + 3).is_some_and(|&ch| is_ident(ch)) {
            pending_mod = true;
        }
        if boundary && starts_with(&c, i, "crate::") {
            let j = i + "crate::".len();
            if c.get(j) == Some(&'{') {
                // use crate::{a, b::c, d::{e, f}}: the first name of each
                // element at depth one.
                let mut k = j + 1;
                let mut d = 1;
                let mut expect_name = true;
                while k < c.len() && d > 0 {
                    match c[k] {
                        '{' => d += 1,
                        '}' => d -= 1,
                        ',' if d == 1 => expect_name = true,
                        ch if d == 1 && expect_name && is_ident(ch) => {
                            if let Some((name, end)) = ident_at(&c, k) {
                                note(name, line);
                                k = end;
                                expect_name = false;
                                continue;
                            }
                        }
                        _ => {}
                    }
                    k += 1;
                }
            } else if let Some((name, _)) = ident_at(&c, j) {
                note(name, line);
            }
        }
        if boundary && starts_with(&c, i, "super::") {
            let mut ups = 0;
            let mut j = i;
            while starts_with(&c, j, "super::") {
                ups += 1;
                j += "super::".len();
            }
            // Where `self` is: the file's module and its inline modules.
            let here = module.len() + inline.len();
            if ups == here {
                if let Some((name, _)) = ident_at(&c, j) {
                    note(name, line);
                }
            }
        }
        i += 1;
    }
    found
}

struct Graph {
    /// room -> room -> (file, line) of the first arrow seen.
    arrows: BTreeMap<String, BTreeMap<String, (String, usize)>>,
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let rooms: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_path(f.strip_prefix(src).ok()?).first().cloned())
        .collect();
    let mut arrows: BTreeMap<String, BTreeMap<String, (String, usize)>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(src).expect("under src");
        let module = module_path(rel);
        let Some(room) = module.first() else {
            continue; // lib.rs, main.rs
        };
        let text = fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for (to, line) in imports(&strip(&text), &module) {
            if &to != room && rooms.contains(&to) {
                arrows
                    .entry(room.clone())
                    .or_default()
                    .entry(to)
                    .or_insert((rel.display().to_string(), line));
            }
        }
    }
    Graph { arrows }
}

/// Strongly connected rooms (Tarjan), those of two rooms or more.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        if let Some(next) = t.g.arrows.get(v) {
            for w in next.keys() {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let l = t.low[v].min(t.low[w]);
                    t.low.insert(v, l);
                } else if t.on.contains(w) {
                    let l = t.low[v].min(t.index[w]);
                    t.low.insert(v, l);
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.arrows.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out.sort();
    t.out
}

/// The arrows inside one cycle, as `from -> to (file:line)` lines.
fn ties(g: &Graph, rooms: &[String]) -> String {
    let mut s = String::new();
    for from in rooms {
        for (to, (file, line)) in g.arrows.get(from).into_iter().flatten() {
            if rooms.contains(to) {
                s.push_str(&format!("\n    {from} -> {to}  (src/{file}:{line})"));
            }
        }
    }
    s
}

#[test]
fn no_import_cycle_between_modules() {
    let src = src_dir();
    let g = graph(&src);
    assert!(
        g.arrows.len() > 5,
        "read almost no imports under {}: is it a crate's src/?",
        src.display()
    );
    let found = cycles(&g);
    let mut errors = Vec::new();
    for c in &found {
        if !KNOWN_CYCLES.iter().any(|k| k.iter().eq(c.iter())) {
            errors.push(format!(
                "import cycle among {} modules: {}{}",
                c.len(),
                c.join(", "),
                ties(&g, c)
            ));
        }
    }
    for k in KNOWN_CYCLES {
        if !found.iter().any(|c| k.iter().eq(c.iter())) {
            errors.push(format!(
                "the known cycle {} is gone (or changed): take it off KNOWN_CYCLES",
                k.join(", ")
            ));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// Files a `#[cfg(test)] mod x;` declares (test-only, like tests.rs).
fn test_only_files(src: &Path, files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for f in files {
        let code = strip(&fs::read_to_string(f).expect("readable"));
        let words: Vec<&str> = code.split_whitespace().collect();
        for w in words.windows(3) {
            if w[0] == "#[cfg(test)]" && w[1] == "mod" && w[2].ends_with(';') {
                let name = w[2].trim_end_matches(';');
                let dir = match f.file_stem().and_then(|s| s.to_str()) {
                    Some("lib" | "main" | "mod") => f.parent().unwrap_or(src).to_path_buf(),
                    _ => f.with_extension(""),
                };
                out.insert(dir.join(format!("{name}.rs")));
                out.insert(dir.join(name).join("mod.rs"));
            }
        }
    }
    out
}

/// Code lines of a file: non-blank after comments are removed, outside
/// inline `#[cfg(test)] mod x { .. }` blocks (the attribute's own line
/// counts; the block from `mod` to its closing brace does not).
fn code_lines(code: &str) -> usize {
    let mut count = 0;
    let mut depth = 0usize;
    // The attributes seen since the last item include `#[cfg(test)]`.
    let mut armed = false;
    // The brace depth a test module opened at, while inside it.
    let mut skip: Option<usize> = None;
    for line in code.lines() {
        let t = line.trim();
        if skip.is_none() {
            let is_mod = ["mod ", "pub mod ", "pub(crate) mod ", "pub(super) mod "]
                .iter()
                .any(|p| t.starts_with(p));
            if armed && is_mod && t.contains('{') {
                skip = Some(depth);
            } else if !t.is_empty() {
                count += 1;
            }
            if t.starts_with("#[cfg(test)]") {
                armed = true;
            } else if !t.is_empty() && !t.starts_with("#[") {
                armed = false;
            }
        }
        for ch in line.chars() {
            match ch {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if skip == Some(depth) {
            skip = None;
        }
    }
    count
}

#[test]
fn no_file_over_600_code_lines() {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let test_only = test_only_files(&src, &files);
    let mut long = Vec::new();
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if matches!(name, "tests.rs" | "proptests.rs") || test_only.contains(f) {
            continue;
        }
        let n = code_lines(&strip(&fs::read_to_string(f).expect("readable")));
        if n > MAX_CODE_LINES {
            long.push(format!("{}: {n} code lines", f.display()));
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_CODE_LINES} code lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn no_dead_code_allowed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    rust_files(&root.join("tests"), &mut files);
    let mut found = Vec::new();
    for f in &files {
        let code = strip(&fs::read_to_string(f).expect("readable"));
        let flat: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        for lint in ["allow(", "expect("] {
            for (at, _) in flat.match_indices(lint) {
                let args = &flat[at + lint.len()..];
                let args = &args[..args.find(')').unwrap_or(args.len())];
                if args.split(',').any(|a| a == "dead_code") {
                    found.push(format!("{}: {lint}dead_code)", f.display()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "dead code kept alive:\n{}",
        found.join("\n")
    );
}

// The reader itself, on small cases.

#[test]
fn reader_sees_paths_groups_and_super_but_not_comments_or_strings() {
    let text = r##"
        use crate::a::X;
        use crate::{b, c::{D, E}, self_ as f};
        // use crate::commented;
        /* crate::blocked /* nested */ crate::still */
        const S: &str = "crate::in_string";
        const R: &str = r#"crate::raw "quoted" "#;
        const Q: char = '"';
        fn g<'a>(x: &'a str) -> usize { crate::h::len(x) + $crate::macro_only }
        mod tests {
            use super::*;
            use super::super::k;
        }
        use super::top;
    "##;
    let found: Vec<String> = imports(&strip(text), &["room".to_string()])
        .into_keys()
        .collect();
    assert_eq!(found, ["a", "b", "c", "h", "k", "self_", "top"]);
    // From a nested file, one `super::` stays in the room.
    let nested = imports(
        &strip("use super::sibling;\n"),
        &["room".into(), "sub".into()],
    );
    assert!(nested.is_empty(), "{nested:?}");
    assert_eq!(
        imports(
            &strip("use super::super::other;\n"),
            &["room".into(), "sub".into()]
        )
        .into_keys()
        .collect::<Vec<_>>(),
        ["other"]
    );
}

#[test]
fn tarjan_finds_a_cycle_of_three_and_ignores_a_chain() {
    let mut g = Graph {
        arrows: BTreeMap::new(),
    };
    for (a, b) in [("x", "y"), ("y", "z"), ("z", "x"), ("z", "w"), ("w", "v")] {
        g.arrows
            .entry(a.to_string())
            .or_default()
            .insert(b.to_string(), ("f.rs".into(), 1));
    }
    assert_eq!(cycles(&g), [["x", "y", "z"]]);
    assert!(ties(&g, &cycles(&g)[0]).contains("z -> x"));
}

#[test]
fn code_lines_skip_comments_blank_lines_and_test_modules() {
    let text = "fn a() {\n    // note\n\n    b();\n}\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\n#[cfg(test)]\nuse x::y;\nfn c() {}\n";
    // fn a() {, b();, }, #[cfg(test)] (the module's), #[cfg(test)] and
    // use x::y;, fn c() {}
    assert_eq!(code_lines(&strip(text)), 7);
    assert_eq!(module_path(Path::new("engine/view.rs")), ["engine", "view"]);
    assert_eq!(module_path(Path::new("obs/mod.rs")), ["obs"]);
    assert!(module_path(Path::new("lib.rs")).is_empty());
    assert_eq!(module_path(Path::new("queue.rs")), ["queue"]);
}
