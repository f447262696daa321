//! The entry points a template marks PDL-aware (`KL_PDL_AWARE(name)`, kernels/common/pdl.cuh)
//! are launched early under programmatic dependent launch, so each must wait for its
//! predecessor before its first return and before anything else can read or write. This reads
//! every template as text (no GPU): the marker must stand right before its entry point, and
//! that entry point's body must call `pdl_wait()` ahead of any `return`.

mod common;

use std::path::Path;

/// The text between the `{` that opens the body of the entry point introduced at `from` and
/// its matching `}`.
fn body_after(src: &str, from: usize) -> Option<&str> {
    let open = from + src[from..].find('{')?;
    let mut depth = 0usize;
    for (i, c) in src[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&src[open + 1..open + i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Problems with the marked entry points of one template's text.
fn check(src: &str) -> Vec<String> {
    let mut bad = vec![];
    let mut at = 0;
    while let Some(i) = src[at..].find("KL_PDL_AWARE(") {
        let start = at + i;
        at = start + 1;
        if start > 0 && !src[..start].ends_with('\n') {
            continue; // a mention in a comment or the macro's definition, not a marker
        }
        let name_end = start + src[start..].find(')').unwrap();
        let name = &src[start + "KL_PDL_AWARE(".len()..name_end];
        let Some(ext) = src[name_end..].find("extern \"C\"").map(|j| name_end + j) else {
            bad.push(format!("{name}: no entry point after the marker"));
            continue;
        };
        let sig_end = ext + src[ext..].find('{').unwrap_or(0);
        if !src[ext..sig_end].contains(&format!("{name}(")) {
            bad.push(format!("{name}: the entry point after the marker is another one"));
            continue;
        }
        let Some(body) = body_after(src, ext) else {
            bad.push(format!("{name}: unbalanced braces"));
            continue;
        };
        match (body.find("pdl_wait()"), body.find("return")) {
            (None, _) => bad.push(format!("{name}: marked PDL-aware but never calls pdl_wait()")),
            (Some(w), Some(r)) if r < w => bad.push(format!("{name}: returns before pdl_wait()")),
            _ => {}
        }
    }
    bad
}

#[test]
fn every_marked_entry_waits_before_it_returns() {
    let files = common::files_below(&Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels"), &["cu", "cuh"]);
    let mut bad = vec![];
    let mut marked = 0;
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        marked += src.matches("\nKL_PDL_AWARE(").count();
        bad.extend(check(&src).into_iter().map(|b| format!("{}: {b}", f.display())));
    }
    assert!(bad.is_empty(), "{bad:#?}");
    // The decode step's kernels carry the marker; finding none means the scan broke.
    assert!(marked >= 15, "only {marked} markers found under kernels/");
}

#[test]
fn the_check_catches_what_it_is_for() {
    let ok = "KL_PDL_AWARE(k)\nextern \"C\" __global__ void k(int* p) {\n pdl_wait();\n if (!p) return;\n *p = 1;\n}\n";
    assert!(check(ok).is_empty(), "{:?}", check(ok));
    let no_wait = "KL_PDL_AWARE(k)\nextern \"C\" __global__ void k(int* p) { *p = 1; }\n";
    assert_eq!(check(no_wait).len(), 1);
    let early = "KL_PDL_AWARE(k)\nextern \"C\" __global__ void k(int* p) { if (!p) return; pdl_wait(); }\n";
    assert!(check(early)[0].contains("returns before"));
    let other = "KL_PDL_AWARE(k)\nextern \"C\" __global__ void j(int* p) { pdl_wait(); }\n";
    assert!(check(other)[0].contains("another one"));
}
