//! The README's architecture list is an order: a module may use the
//! modules listed below it, never one above it. This test reads the list
//! from README.md and every `crate::…` path in `src/`, so the two cannot
//! drift apart.

use std::collections::BTreeMap;
use std::path::Path;

/// The top-level modules of the README's `src/` tree, in order.
fn layers() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Architecture\n")
        .nth(1)
        .expect("an Architecture section");
    let tree = section.split("```").nth(1).expect("a code block");
    tree.lines()
        .filter_map(|l| {
            // "  name.rs   …" or "  name/   …", two spaces in.
            let entry = l.strip_prefix("  ")?;
            if entry.starts_with(' ') {
                return None;
            }
            let name = entry.split_whitespace().next()?;
            let module = name
                .strip_suffix(".rs")
                .or_else(|| name.strip_suffix('/'))?;
            Some(module.to_string())
        })
        .collect()
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_uses_a_module_listed_above_it() {
    let layers = layers();
    let rank = |m: &str| layers.iter().position(|l| l == m);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut unlisted = Vec::new();
    let mut upward: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let module = rel.split(['/', '.']).next().unwrap().to_string();
        if module == "lib" || module == "main" {
            continue; // the crate root declares and wires every module
        }
        let Some(own) = rank(&module) else {
            unlisted.push(rel);
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, _) in text.match_indices("crate::") {
            let used: String = text[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            match rank(&used) {
                Some(r) if r < own => upward
                    .entry(format!("{rel} ({module})"))
                    .or_default()
                    .push(used),
                Some(_) => {}
                None => unlisted.push(format!("{rel}: crate::{used}")),
            }
        }
    }
    assert!(
        layers.len() > 10,
        "the README's list was not found: {layers:?}"
    );
    unlisted.sort();
    unlisted.dedup();
    assert!(
        unlisted.is_empty(),
        "not in the README's list: {unlisted:#?}"
    );
    for uses in upward.values_mut() {
        uses.sort();
        uses.dedup();
    }
    assert!(
        upward.is_empty(),
        "modules that use a module listed above them in README.md (order: {layers:?}): {upward:#?}"
    );
}
