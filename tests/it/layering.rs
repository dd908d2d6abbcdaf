//! The layering of the workspace and of the gateway's modules (docs/ARCHITECTURE.md), checked
//! from the manifests and the sources, so a dependency in the wrong direction fails here
//! instead of growing quietly. Reads files and runs `cargo metadata --no-deps`: no build, no
//! network, well under a second.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

const GATEWAY: &str = "bbb-gateway";
const API: &str = "bbb-api";
const SIM: &str = "bbb-sim";
const BENCH: &str = "bbb-bench";

/// Wiring: listeners, application state, command line, settings, metrics.
const WIRING: &[&str] = &[
    "admin",
    "cli",
    "client",
    "config",
    "demo",
    "http",
    "metrics",
    "startup",
    "state",
    "user_refresh",
];
const ACTORS: &[&str] = &["session", "coordinator"];
const JOIN: &str = "join";
/// What both actors build on.
const BOTTOM: &[&str] = &[
    "auth",
    "bbb",
    "db",
    "end_callback",
    "ids",
    "in_flight",
    "limits",
    "moderation",
    "permissions",
    "profile",
    "protocol",
    "registry",
    "user",
    "world",
];

/// One dependency between workspace packages, as `cargo metadata` reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Dep {
    from: String,
    to: String,
    /// `None` for a normal dependency, else `"dev"` or `"build"`.
    kind: Option<String>,
    optional: bool,
}

/// Every dependency of a workspace package on another one, and the packages found.
fn workspace_deps(root: &Path) -> (BTreeSet<String>, Vec<Dep>) {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let packages = meta["packages"].as_array().expect("a package list");
    let names: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    let mut deps = Vec::new();
    for p in packages {
        let from = p["name"].as_str().expect("a package name");
        for d in p["dependencies"].as_array().expect("a dependency list") {
            let to = d["name"].as_str().expect("a dependency name");
            if names.contains(to) {
                deps.push(Dep {
                    from: from.to_string(),
                    to: to.to_string(),
                    kind: d["kind"].as_str().map(str::to_string),
                    optional: d["optional"].as_bool().unwrap_or(false),
                });
            }
        }
    }
    (names, deps)
}

/// The dependencies that break the crate layering.
fn crate_violations(names: &BTreeSet<String>, deps: &[Dep]) -> Vec<String> {
    let mut bad = Vec::new();
    for expected in [GATEWAY, API, SIM, BENCH] {
        if !names.contains(expected) {
            bad.push(format!("the workspace has no package {expected}"));
        }
    }
    for d in deps {
        let normal = d.kind.is_none();
        let why = match (d.from.as_str(), d.to.as_str()) {
            (API, _) => Some("bbb-api speaks BBB only and depends on no workspace crate"),
            (SIM, to) if to != API => Some("bbb-sim depends on bbb-api only"),
            (GATEWAY, BENCH) if normal => {
                Some("the gateway uses bbb-bench only as a dev-dependency")
            }
            (GATEWAY, SIM) if normal && !d.optional => {
                Some("the gateway uses bbb-sim only through the optional `demo` feature")
            }
            (from, GATEWAY) if normal && from != BENCH => {
                Some("only bbb-bench may depend on the gateway")
            }
            _ => None,
        };
        if let Some(why) = why {
            bad.push(format!("{} -> {} ({:?}): {why}", d.from, d.to, d.kind));
        }
    }
    bad
}

#[test]
fn workspace_crates_depend_in_one_direction() {
    let (names, deps) = workspace_deps(Path::new(ROOT));
    let bad = crate_violations(&names, &deps);
    assert!(bad.is_empty(), "crate layering broken:\n{}", bad.join("\n"));
    assert!(
        deps.iter().any(|d| d.from == BENCH && d.to == GATEWAY),
        "the metadata was read (bbb-bench depends on the gateway)"
    );
}

#[test]
fn crate_rules_catch_a_wrong_dependency() {
    let names: BTreeSet<String> = [GATEWAY, API, SIM, BENCH].map(String::from).into();
    let dep = |from: &str, to: &str, kind: Option<&str>, optional| Dep {
        from: from.into(),
        to: to.into(),
        kind: kind.map(String::from),
        optional,
    };
    let allowed = [
        dep(GATEWAY, API, None, false),
        dep(GATEWAY, SIM, None, true),
        dep(GATEWAY, SIM, Some("dev"), false),
        dep(GATEWAY, BENCH, Some("dev"), false),
        dep(SIM, API, None, false),
        dep(BENCH, GATEWAY, None, false),
    ];
    assert_eq!(crate_violations(&names, &allowed), Vec::<String>::new());
    for wrong in [
        dep(API, SIM, Some("dev"), false),
        dep(SIM, GATEWAY, None, false),
        dep(GATEWAY, SIM, None, false),
        dep(GATEWAY, BENCH, None, false),
    ] {
        assert_eq!(
            crate_violations(&names, std::slice::from_ref(&wrong)).len(),
            1,
            "{wrong:?}"
        );
    }
    let missing: BTreeSet<String> = [GATEWAY, SIM, BENCH].map(String::from).into();
    assert_eq!(crate_violations(&missing, &[]).len(), 1);
}

/// The top-level modules named by `crate::` (or `$crate::`) paths in the code of `source`,
/// grouped imports (`use crate::{a, b::C}`) included. Line comments are skipped, so doc links
/// may point anywhere.
fn crate_imports(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let path = rest.trim_start();
        if let Some(group) = path.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if item_start && depth == 1 && !c.is_whitespace() => {
                        item_start = false;
                        found.insert(identifier(&group[i..]));
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(identifier(path));
        }
    }
    found.remove("");
    found.remove("self");
    found
}

fn identifier(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// What each top-level module of the gateway imports through `crate::` in the files `read`
/// accepts, with the file of each import.
fn module_imports(
    src: &Path,
    read: impl Fn(&Path) -> bool,
) -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut imports: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for file in files.into_iter().filter(|f| read(f)) {
        let rel = file.strip_prefix(src).expect("a file under src");
        let first = rel
            .components()
            .next()
            .expect("a path")
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs");
        // `permissions_tests.rs` is the test module of `permissions`.
        let module = module.trim_end_matches("_tests").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let source = std::fs::read_to_string(&file).expect("a readable source file");
        let entry = imports.entry(module.clone()).or_default();
        for target in crate_imports(&source) {
            if target != module {
                entry.entry(target).or_insert_with(|| file.clone());
            }
        }
    }
    imports
}

/// The imports that break the module layering.
fn module_violations(imports: &BTreeMap<String, BTreeMap<String, PathBuf>>) -> Vec<String> {
    let mut bad = Vec::new();
    for (module, targets) in imports {
        let m = module.as_str();
        let forbidden: Vec<&str> = if BOTTOM.contains(&m) {
            ACTORS.iter().chain(WIRING).copied().chain([JOIN]).collect()
        } else if m == JOIN {
            ACTORS.iter().chain(WIRING).copied().collect()
        } else if m == "coordinator" {
            WIRING.iter().copied().chain(["session"]).collect()
        } else if m == "session" || WIRING.contains(&m) {
            Vec::new()
        } else {
            bad.push(format!(
                "module {m} is in no layer: add it to tests/it/layering.rs and \
                 docs/ARCHITECTURE.md"
            ));
            continue;
        };
        for (target, file) in targets {
            if forbidden.contains(&target.as_str()) {
                bad.push(format!(
                    "{m} imports crate::{target} ({})",
                    file.strip_prefix(ROOT).unwrap_or(file).display()
                ));
            }
        }
    }
    bad
}

#[test]
fn gateway_modules_import_downwards_only() {
    // Tests included: a module's tests stay in its layer too.
    let imports = module_imports(&Path::new(ROOT).join("src"), |_| true);
    let bad = module_violations(&imports);
    assert!(
        bad.is_empty(),
        "module layering broken:\n{}",
        bad.join("\n")
    );
    // The scan sees real imports (else it would pass on anything).
    assert!(imports["session"].contains_key("coordinator"));
    assert!(imports["coordinator"].contains_key("join"));
}

#[test]
fn import_scan_reads_paths_groups_and_skips_comments() {
    let source = "use crate::{ids::MeetingKey, join::{self, JoinTable},\n    protocol};\n\
                  // crate::session in a comment\n\
                  /// [`x`](crate::coordinator)\n\
                  let c = $crate::db::DbConn::Sqlite; let u = crate:: world::load();\n\
                  let other = my_crate::session::x; let s = \"crate::\";";
    let found: Vec<String> = crate_imports(source).into_iter().collect();
    assert_eq!(found, ["db", "ids", "join", "protocol", "world"]);
    let mut imports = BTreeMap::new();
    imports.insert(
        "db".to_string(),
        BTreeMap::from([("session".to_string(), PathBuf::from("src/db/x.rs"))]),
    );
    imports.insert("coordinator".to_string(), BTreeMap::new());
    imports.insert("newcomer".to_string(), BTreeMap::new());
    assert_eq!(module_violations(&imports).len(), 2, "{imports:?}");
}

/// Whether a source file is test code (left out of the cycle check: a test may drive a
/// module through the layers above it).
fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string());
    name.as_deref() == Some("tests.rs")
        || name.as_deref().is_some_and(|n| n.ends_with("_tests.rs"))
        || path.components().any(|c| c.as_os_str() == "tests")
}

/// The import cycles between top-level modules, each as the modules on it in order.
fn module_cycles(imports: &BTreeMap<String, BTreeMap<String, PathBuf>>) -> Vec<Vec<String>> {
    let mut cycles = Vec::new();
    let mut reported: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    for start in imports.keys() {
        // Depth-first from `start`, looking for a path back to it.
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        let mut seen: BTreeSet<String> = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for next in imports.get(&at).into_iter().flat_map(BTreeMap::keys) {
                if next == start {
                    let members: BTreeSet<String> = path.iter().cloned().collect();
                    if reported.insert(members) {
                        cycles.push(path.clone());
                    }
                } else if imports.contains_key(next) && seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    cycles
}

#[test]
fn gateway_modules_import_each_other_in_no_circle() {
    let imports = module_imports(&Path::new(ROOT).join("src"), |f| !is_test_file(f));
    let cycles = module_cycles(&imports);
    assert!(
        cycles.is_empty(),
        "modules importing each other in a circle: {cycles:?}"
    );
    // The check finds a planted circle.
    let mut planted = BTreeMap::new();
    planted.insert(
        "db".to_string(),
        BTreeMap::from([("world".to_string(), PathBuf::from("src/db/x.rs"))]),
    );
    planted.insert(
        "world".to_string(),
        BTreeMap::from([("db".to_string(), PathBuf::from("src/world/y.rs"))]),
    );
    assert_eq!(module_cycles(&planted).len(), 1);
    // Test code is left out of the scan: a test may drive its module through the layers above.
    for test in [
        "src/world/tests.rs",
        "src/permissions_tests.rs",
        "src/coordinator/tests/moves.rs",
    ] {
        assert!(is_test_file(Path::new(test)), "{test}");
    }
    assert!(!is_test_file(Path::new("src/world/store.rs")));
}
