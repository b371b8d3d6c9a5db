//! The layers of `src/` depend on each other one way only (README, "Map of
//! the code"). Every `crate::…` path in a layer's files must name the layer
//! itself or a layer below it; this test fails on any other, which is how an
//! import cycle between layers would start.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each layer and the layers it may use. Leaves first; `app` wires them all.
const LAYERS: &[(&str, &[&str])] = &[
    ("config", &[]),
    ("credentials", &[]),
    ("tasks", &[]),
    ("files", &[]),
    ("telemetry", &["tasks"]),
    ("domain", &["telemetry", "tasks", "files"]),
    ("store", &["domain", "config", "telemetry"]),
    ("webpush", &["domain"]),
    ("mail", &["domain"]),
    ("webhooks", &["domain", "webpush"]),
    ("realtime", &["domain", "credentials", "telemetry", "tasks"]),
    (
        "http",
        &["domain", "credentials", "realtime", "telemetry", "config"],
    ),
    ("ops", &["config", "domain", "store", "files"]),
    (
        "app",
        &[
            "config",
            "credentials",
            "tasks",
            "telemetry",
            "domain",
            "store",
            "files",
            "webpush",
            "mail",
            "webhooks",
            "realtime",
            "http",
        ],
    ),
];

/// The layers a source text names through `crate::layer` or `crate::{layer, …}`.
fn layers_named(source: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for (i, _) in source.match_indices("crate::") {
        let rest = &source[i + "crate::".len()..];
        let heads: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group
                .split('}')
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .collect(),
            None => vec![rest],
        };
        for head in heads {
            let name: String = head
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                named.insert(name);
            }
        }
    }
    named
}

/// `(file, layer it names)` for every reference a layer may not make.
fn violations(files: &[(String, String)]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (path, source) in files {
        let layer = path
            .trim_start_matches("src/")
            .split(['/', '.'])
            .next()
            .unwrap_or("");
        let Some((_, allowed)) = LAYERS.iter().find(|(name, _)| *name == layer) else {
            continue; // lib.rs and main.rs: the crate's root
        };
        for named in layers_named(source) {
            if named != layer && !allowed.contains(&named.as_str()) {
                found.push((path.clone(), named));
            }
        }
    }
    found
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

#[test]
fn every_layer_uses_only_the_layers_below_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    rust_files(&root.join("src"), &mut paths);
    let files: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            let name = p.strip_prefix(root).unwrap().display().to_string();
            (name, std::fs::read_to_string(p).unwrap())
        })
        .collect();
    let layers: BTreeSet<&str> = files
        .iter()
        .filter_map(|(p, _)| p.trim_start_matches("src/").split(['/', '.']).next())
        .filter(|l| !matches!(*l, "lib" | "main"))
        .collect();
    for layer in &layers {
        assert!(
            LAYERS.iter().any(|(name, _)| name == layer),
            "src/{layer} is in no layer: add it to LAYERS and to README's map"
        );
    }
    let found = violations(&files);
    assert!(
        found.is_empty(),
        "references against the layering: {found:#?}"
    );
}

#[test]
fn a_reference_upwards_is_caught_in_either_form() {
    let files = vec![
        (
            "src/domain/x.rs".to_owned(),
            "use crate::telemetry;\nuse crate::{store::Store, telemetry::Census};".to_owned(),
        ),
        (
            "src/telemetry.rs".to_owned(),
            "fn f(_: crate::realtime::Fanout) {}".to_owned(),
        ),
    ];
    assert_eq!(
        violations(&files),
        [
            ("src/domain/x.rs".to_owned(), "store".to_owned()),
            ("src/telemetry.rs".to_owned(), "realtime".to_owned()),
        ]
    );
}
