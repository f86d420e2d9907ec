//! ARCHITECTURE.md's invariants, checked against the source: what each part must not know,
//! where subjects are spelled, and how big a file may grow. Reads `src/` as text (comments
//! left out); runs no code of the crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, with its code lines (comment lines dropped).
fn sources(dir: &str) -> BTreeMap<PathBuf, Vec<String>> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<String>>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let code =
                    text.lines().filter(|l| !l.trim_start().starts_with("//")).map(str::to_string).collect::<Vec<_>>();
                out.insert(p, code);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut out);
    assert!(!out.is_empty(), "no sources under {dir}");
    out
}

/// `check(part, forbidden)`: no code line under `part` names any of `forbidden`.
fn check(part: &str, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, lines) in sources(part) {
        for line in lines {
            for f in forbidden {
                if line.contains(f) {
                    found.push(format!("{}: `{f}` in: {}", path.display(), line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn each_part_knows_only_what_it_may() {
    // (part, what it must not name, why) — the "Invariants" of ARCHITECTURE.md.
    let rules: [(&str, &[&str], &str); 7] = [
        (
            "src/bridge",
            &["crate::formats", "crate::quota", "crate::providers", "crate::worker", "crate::router", "jetstream"],
            "the bridge knows a route table and format tags, nothing of formats, billing or upstreams",
        ),
        (
            "src/providers",
            &["crate::formats", "crate::bus", "async_nats", "crate::worker", "crate::quota"],
            "providers know nothing of NATS or of client formats",
        ),
        (
            "src/formats",
            &[
                "async_nats",
                "reqwest",
                "hyper",
                "axum",
                "crate::bus",
                "crate::providers",
                "crate::worker",
                "crate::quota",
            ],
            "formats know nothing of NATS, HTTP, upstreams or billing",
        ),
        (
            "src/protocol",
            &["crate::formats", "crate::providers", "crate::worker", "crate::quota", "crate::bridge"],
            "protocol types are the bottom layer",
        ),
        (
            "src/bus",
            &["crate::formats", "crate::providers", "crate::worker", "crate::quota", "crate::bridge"],
            "the bus knows subjects, codecs and headers only",
        ),
        (
            "src/quota",
            &["crate::worker", "crate::bridge", "crate::formats", "crate::providers"],
            "billing knows no request path",
        ),
        (
            "src/client",
            &["crate::worker", "crate::quota", "crate::formats", "crate::providers"],
            "the requester knows the reply protocol only",
        ),
    ];
    let mut all = Vec::new();
    for (part, forbidden, why) in rules {
        let found = check(part, forbidden);
        if !found.is_empty() {
            all.push(format!("{part} ({why}):\n  {}", found.join("\n  ")));
        }
    }
    assert!(all.is_empty(), "{}", all.join("\n"));
}

/// The layer of each top-level module, as ARCHITECTURE.md's "Layers" lists them.
const LAYERS: [(&str, u8); 34] = [
    ("protocol", 1),
    ("sse", 1),
    ("clock", 1),
    ("credential", 1),
    ("error", 1),
    ("redact", 1),
    ("wildcard", 1),
    ("shutdown", 1),
    ("metrics", 1),
    ("streams", 1),
    ("nats_server", 1),
    ("seal", 1),
    ("bus", 2),
    ("formats", 2),
    ("pricing", 2),
    ("tokenize", 2),
    ("kv_mirror", 2),
    ("telemetry", 2),
    ("providers", 3),
    ("channel", 3),
    ("quota", 3),
    ("stats", 3),
    ("client", 3),
    ("router", 4),
    ("bridge", 4),
    ("live", 4),
    ("config", 5),
    ("seed_config", 5),
    ("worker", 5),
    ("audit", 5),
    ("cli", 6),
    ("main", 6),
    ("lib", 6),
    ("tests", 0),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

#[test]
fn no_module_uses_a_higher_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for (path, lines) in sources("src") {
        let rel = path.strip_prefix(&root).unwrap_or(&path);
        let first = rel.components().next().map(|c| c.as_os_str().to_string_lossy().to_string()).unwrap_or_default();
        let own = first.trim_end_matches(".rs").to_string();
        let Some(own_layer) = layer(&own) else {
            found.push(format!("{}: module {own} is in no layer of ARCHITECTURE.md", rel.display()));
            continue;
        };
        let mut in_tests = false;
        for line in &lines {
            // A unit-test module may reach up (it is not part of the layer's code).
            if line.trim_start().starts_with("mod tests") {
                in_tests = true;
            }
            if in_tests {
                continue;
            }
            for (i, _) in line.match_indices("crate::") {
                let used: String =
                    line[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                match layer(&used) {
                    Some(l) if l > own_layer => {
                        found.push(format!("{}: {own} (layer {own_layer}) uses {used} (layer {l})", rel.display()))
                    }
                    Some(_) => {}
                    None => found.push(format!("{}: {used} is in no layer of ARCHITECTURE.md", rel.display())),
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn subjects_are_spelled_only_in_bus_subjects() {
    let mut found = Vec::new();
    for (path, lines) in sources("src") {
        if path.ends_with("bus/subjects.rs") {
            continue;
        }
        for line in &lines {
            for prefix in ["\"llm.", "\"quota.", "\"user.", "\"ailurus.api", "\"$KV."] {
                if line.contains(prefix) {
                    found.push(format!("{}: {}", path.display(), line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "subjects built outside src/bus/subjects.rs:\n{}", found.join("\n"));
}

#[test]
fn files_stay_small_or_say_why() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut big = Vec::new();
    for path in sources("src").keys() {
        let lines = std::fs::read_to_string(path).unwrap_or_default().lines().count();
        let rel = path.strip_prefix(root).unwrap_or(path).display().to_string();
        if lines > 700 && !doc.contains(&format!("`{rel}`")) {
            big.push(format!("{rel}: {lines} lines"));
        }
    }
    assert!(big.is_empty(), "files over 700 lines that ARCHITECTURE.md does not explain:\n{}", big.join("\n"));
}

#[test]
fn the_code_map_names_every_folder_and_top_level_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut missing = Vec::new();
    for e in std::fs::read_dir(root.join("src")).expect("src").flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let shown = if e.path().is_dir() { format!("`src/{name}/`") } else { format!("`src/{name}`") };
        if !doc.contains(&shown) && name != "lib.rs" && name != "main.rs" {
            missing.push(shown);
        }
    }
    assert!(missing.is_empty(), "ARCHITECTURE.md's code map lacks {}", missing.join(", "));
}
