//! The layers point one way: no module of src/ reaches, through `crate::` or `super::`
//! paths, a module that reaches it back. Read from the source text (comments and test
//! modules left out), so a new import cycle fails here with the modules that form it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path of every source file: src/tune/space/mod.rs → ["tune", "space"].
fn modules(dir: &Path, out: &mut BTreeMap<Vec<String>, String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            modules(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix("src").unwrap().with_extension("");
            let mut m: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
            if matches!(m.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                m.pop();
            }
            out.insert(m, std::fs::read_to_string(&p).unwrap());
        }
    }
}

/// The source without line comments and without the first `#[cfg(test)]` item onward.
fn code(text: &str) -> String {
    let body = text.split("#[cfg(test)]").next().unwrap_or("");
    body.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

fn ident_at(s: &[u8], mut i: usize) -> (String, usize) {
    let start = i;
    while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
        i += 1;
    }
    (String::from_utf8_lossy(&s[start..i]).into_owned(), i)
}

/// Every module path named after `crate::` or `super::` (one `{a, b}` group level too).
fn referenced(me: &[String], src: &str) -> Vec<Vec<String>> {
    let s = src.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        let (mut base, skip) = if rest.starts_with(b"crate::") {
            (vec![], 7)
        } else if rest.starts_with(b"super::") && (i == 0 || !(s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_')) {
            // `super` is the parent module (for tune/space/mod.rs, i.e. tune::space: tune).
            let mut b = me.to_vec();
            b.pop();
            (b, 7)
        } else {
            i += 1;
            continue;
        };
        let mut j = i + skip;
        loop {
            if s[j..].starts_with(b"super::") {
                base.pop();
                j += 7;
                continue;
            }
            let (id, k) = ident_at(s, j);
            if id.is_empty() {
                break;
            }
            base.push(id);
            j = k;
            if s[j..].starts_with(b"::") {
                j += 2;
                if s.get(j) == Some(&b'{') {
                    let end = s[j..].iter().position(|&c| c == b'}').map_or(s.len(), |e| j + e);
                    for item in String::from_utf8_lossy(&s[j + 1..end]).split(',') {
                        let name: String =
                            item.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                        let mut p = base.clone();
                        p.push(name);
                        out.push(p);
                    }
                    j = end;
                    break;
                }
            } else {
                break;
            }
        }
        out.push(base);
        i = j.max(i + 1);
    }
    out
}

#[test]
fn no_import_cycles_between_modules() {
    let mut files = BTreeMap::new();
    modules(Path::new("src"), &mut files);
    let names: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (m, text) in &files {
        for path in referenced(m, &code(text)) {
            // The longest prefix of the path that is a module is what the file depends on.
            if let Some(target) = (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| names.contains(p)) {
                if &target != m {
                    edges.entry(m.clone()).or_default().insert(target);
                }
            }
        }
    }
    assert!(edges.len() > 40, "the scan found too few imports to mean anything: {}", edges.len());
    let mut cycles = find_cycles(&edges);
    // The same at the level of the top modules (core, gpu, kernels, tune, llama, ...): a
    // file-level scan cannot see through a folder's `pub use` re-exports, the layer graph can.
    let mut layers: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (m, deps) in &edges {
        for d in deps {
            let (a, b) = (m[..1.min(m.len())].to_vec(), d[..1.min(d.len())].to_vec());
            if a != b && !a.is_empty() && !b.is_empty() {
                layers.entry(a).or_default().insert(b);
            }
        }
    }
    cycles.extend(find_cycles(&layers).into_iter().map(|c| format!("layers: {c}")));
    cycles.sort();
    cycles.dedup();
    assert!(cycles.is_empty(), "import cycles:\n  {}", cycles.join("\n  "));
}

/// Every cycle through an edge, as "a → b → … → a".
fn find_cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<String> {
    let mut cycles = vec![];
    for (m, deps) in edges {
        for d in deps {
            // Is `m` reachable from its dependency `d`?
            let mut seen = BTreeSet::new();
            let mut stack = vec![(d.clone(), vec![m.join("::"), d.join("::")])];
            while let Some((cur, trail)) = stack.pop() {
                if &cur == m {
                    cycles.push(trail.join(" → "));
                    break;
                }
                if seen.insert(cur.clone()) {
                    for n in edges.get(&cur).into_iter().flatten() {
                        let mut t = trail.clone();
                        t.push(n.join("::"));
                        stack.push((n.clone(), t));
                    }
                }
            }
        }
    }
    cycles
}
