//! The project's invariants, checked on every `cargo test`: which crate may
//! depend on which, a `//!` header on every module, no ignored tests or
//! unfinished markers, unsafe code only where it is allowed, every metric
//! described, every configuration key documented, and no source file too
//! long to read in one sitting.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in ["src", "crates", "tests", "fuzz/fuzz_targets"] {
        rust_files(&root().join(d), &mut out);
    }
    out.sort();
    out
}

/// The names under a manifest's `[dependencies]` (not dev or build ones).
fn dependencies(manifest: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut deps = BTreeSet::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap().trim();
            deps.insert(name.to_owned());
        }
    }
    deps
}

const DATABASE_DRIVERS: &[&str] = &[
    "rusqlite",
    "tokio-postgres",
    "postgres",
    "sqlx",
    "mysql",
    "mysql_async",
    "diesel",
];

#[test]
fn crates_depend_only_on_what_their_layer_may_use() {
    // (crate, natter crates it may use, other crates it must not use)
    let rules: &[(&str, &[&str], &[&str])] = &[
        ("proto", &[], &["tokio", "axum", "tokio-tungstenite"]),
        ("runtime", &[], &["axum", "prost", "tokio-tungstenite"]),
        (
            "domain",
            &[],
            &["tokio", "axum", "prost", "tokio-tungstenite"],
        ),
        (
            "store",
            &["natter-domain", "natter-runtime"],
            &["axum", "prost", "tokio-tungstenite"],
        ),
        (
            "service",
            &["natter-domain", "natter-store", "natter-runtime"],
            &["axum", "prost", "tokio-tungstenite", "hyper"],
        ),
        (
            "gateway",
            &["natter-proto", "natter-service", "natter-runtime"],
            &["axum", "hyper"],
        ),
        (
            "api",
            &["natter-service", "natter-runtime"],
            &["prost", "tokio-tungstenite"],
        ),
        ("client", &["natter-proto"], &["axum"]),
        (
            "bench",
            &["natter-proto", "natter-client", "natter-runtime"],
            &["axum"],
        ),
        (
            "cluster",
            &["natter-service", "natter-gateway", "natter-runtime"],
            &["axum", "hyper"],
        ),
        ("testkit", &[], &["axum", "prost", "tokio-tungstenite"]),
    ];
    let dirs: BTreeSet<String> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let named: BTreeSet<String> = rules.iter().map(|r| r.0.to_owned()).collect();
    assert_eq!(dirs, named, "every crate has a rule here");
    for (krate, natter, banned) in rules {
        let deps = dependencies(&root().join("crates").join(krate).join("Cargo.toml"));
        for d in &deps {
            if d.starts_with("natter-") {
                assert!(
                    natter.contains(&d.as_str()),
                    "{krate} must not depend on {d}"
                );
            }
            assert!(
                !banned.contains(&d.as_str()),
                "{krate} must not depend on {d}"
            );
            // The test kit makes throwaway schemas for tests; it holds no data.
            if *krate != "store" && *krate != "testkit" {
                assert!(
                    !DATABASE_DRIVERS.contains(&d.as_str()),
                    "only store knows SQL: {krate} depends on {d}"
                );
            }
        }
    }
}

/// The domain is pure: types and rules over loaded facts. Anything that can
/// do I/O (a runtime, a driver, a socket, a clock) belongs to a layer above.
#[test]
fn the_domain_has_no_io_dependency() {
    let pure = ["serde", "serde_json", "thiserror"];
    let deps = dependencies(&root().join("crates/domain/Cargo.toml"));
    assert!(
        !deps.is_empty(),
        "crates/domain's dependencies were not found"
    );
    for d in &deps {
        assert!(
            pure.contains(&d.as_str()),
            "crates/domain must stay free of I/O, but depends on {d}"
        );
    }
    for f in sources() {
        if !f.starts_with(root().join("crates/domain")) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for io in [
            "std::fs",
            "std::net",
            "std::thread",
            "std::time::",
            "std::process",
            "natter_",
        ] {
            assert!(!text.contains(io), "{} uses {io}", f.display());
        }
    }
}

/// System events are composed by the rules alone: a backend or an edge that
/// built one itself would be a second place deciding what a change records.
#[test]
fn system_events_are_built_only_in_the_domain() {
    let mut seen = 0;
    for f in sources() {
        let text = std::fs::read_to_string(&f).unwrap();
        let uses = text.matches(concat!("SystemEvent", "::")).count();
        if f.starts_with(root().join("crates/domain")) {
            seen += uses;
        } else {
            assert_eq!(uses, 0, "{} names a SystemEvent variant", f.display());
        }
    }
    assert!(
        seen > 10,
        "the domain's system events were not found ({seen})"
    );
}

/// The store's backends stand side by side: neither reaches into the
/// other, so a third is an engine plus the topic files, not a graft.
#[test]
fn the_store_backends_never_import_each_other() {
    let store = root().join("crates/store/src");
    let mut seen = 0;
    // The shared SQL (`sql/`) names neither backend nor any driver: a
    // backend gives it a `Db`, never the other way round.
    for (dir, others) in [
        (
            "sqlite",
            &["postgres", "tokio_postgres", "mysql", "mysql_async"][..],
        ),
        (
            "postgres",
            &["sqlite", "rusqlite", "mysql", "mysql_async"][..],
        ),
        (
            "mysql",
            &["sqlite", "rusqlite", "postgres", "tokio_postgres"][..],
        ),
        (
            "sql",
            &[
                "sqlite",
                "postgres",
                "mysql",
                "rusqlite",
                "tokio_postgres",
                "mysql_async",
            ][..],
        ),
    ] {
        for f in sources() {
            if !f.starts_with(store.join(dir)) {
                continue;
            }
            seen += 1;
            let text = std::fs::read_to_string(&f).unwrap();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                for other in others {
                    assert!(
                        !code.contains(&format!("{other}::"))
                            && !code.contains(&format!("mod {other}")),
                        "{} reaches into {other}: {line}",
                        f.display()
                    );
                }
            }
        }
    }
    assert!(seen > 20, "the backends' files were not found ({seen})");
}

#[test]
fn every_module_says_what_it_is_for() {
    for f in sources() {
        let text = std::fs::read_to_string(&f).unwrap();
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        assert!(
            first.starts_with("//!"),
            "{} does not start with a //! header",
            f.display()
        );
    }
}

#[test]
fn no_ignored_tests_and_no_unfinished_markers() {
    let markers = [
        concat!("#[", "ignore"),
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
    ];
    for f in sources() {
        let text = std::fs::read_to_string(&f).unwrap();
        for m in markers {
            assert!(!text.contains(m), "{} contains {m}", f.display());
        }
    }
}

#[test]
fn unsafe_code_lives_only_in_its_named_modules() {
    // The last: a test's counting allocator, the only way to see what the
    // metrics recorder holds.
    let allowed = [
        "src/server/memory.rs",
        "crates/client/src/sys.rs",
        "tests/metrics_upkeep.rs",
    ];
    for f in sources() {
        let rel = f
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&f).unwrap();
        let uses = text.contains(concat!("unsafe", " {"))
            || text.contains(concat!("allow(", "unsafe_code)"));
        if uses {
            assert!(allowed.contains(&rel.as_str()), "unsafe code in {rel}");
        }
    }
    // Every crate root refuses it (deny, so the named modules may opt in).
    for lib in ["src/lib.rs", "src/main.rs"] {
        let text = std::fs::read_to_string(root().join(lib)).unwrap();
        assert!(
            text.contains("#![forbid(unsafe_code)]") || text.contains("#![deny(unsafe_code)]"),
            "{lib} must forbid or deny unsafe code"
        );
    }
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(manifest.contains("unsafe_code = \"deny\""));
}

#[test]
fn every_metric_in_the_code_is_described() {
    let described = std::fs::read_to_string(root().join("src/server/metrics.rs")).unwrap();
    let (mut missing, mut seen) = (Vec::new(), 0);
    for f in sources() {
        if f.starts_with(root().join("tests")) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for kind in ["counter!(", "gauge!(", "histogram!("] {
            for piece in text.split(kind).skip(1) {
                let name = piece.trim_start().trim_start_matches('"');
                let name: String = name
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.starts_with("natter_") {
                    continue;
                }
                seen += 1;
                if !described.contains(&format!("\"{name}\"")) {
                    missing.push(format!("{name} ({})", f.display()));
                }
                // A label value written out in the call is among those
                // registered at zero from start-up (`metrics::zero`).
                let call = piece.split(')').next().unwrap_or_default();
                for value in call.split("=>").skip(1) {
                    let value = value.trim_start();
                    if let Some(v) = value.strip_prefix('"').and_then(|v| v.split('"').next()) {
                        if !described.contains(&format!("\"{v}\"")) {
                            missing.push(format!("{name}'s label {v:?} ({})", f.display()));
                        }
                    }
                }
            }
        }
    }
    assert!(seen > 30, "the metric names were not found ({seen})");
    assert!(
        missing.is_empty(),
        "not described (or not registered at zero) in src/server/metrics.rs: {missing:?}"
    );
}

#[test]
fn the_clippy_configuration_bans_what_the_house_rules_ban() {
    let clippy = std::fs::read_to_string(root().join("clippy.toml")).unwrap();
    for banned in [
        "std::time::Instant::now",
        "std::time::SystemTime::now",
        "std::thread::sleep",
        // No untracked task: the server spawns on its TaskTracker.
        "\"tokio::spawn\"",
        "\"tokio::task::spawn\"",
    ] {
        assert!(clippy.contains(banned), "clippy.toml does not ban {banned}");
    }
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(manifest.contains("unwrap_used = \"deny\""));
}

#[test]
fn the_gateway_dispatches_through_one_exhaustive_table() {
    // An Internal error built in the gateway would be a request that found
    // no handler; dispatch.rs's exhaustive match lets the compiler rule that
    // out. (Mapping one to its wire code, `Internal(_) =>`, is fine.)
    let built = concat!("ServiceError::", "Internal(");
    // A connection's methods live in one file, so what a request handler may
    // touch of a connection is visible in one place.
    let conn_impls = [concat!("impl ", "Conn {"), concat!("for ", "Conn {")];
    let gateway = root().join("crates/gateway/src");
    let mut checked = 0;
    for f in sources() {
        if !f.starts_with(&gateway) {
            continue;
        }
        checked += 1;
        let rel = f.strip_prefix(root()).unwrap().display().to_string();
        let text = std::fs::read_to_string(&f).unwrap();
        for piece in text.split(built).skip(1) {
            assert!(
                piece.starts_with("_)"),
                "{rel} builds a ServiceError::Internal; the gateway answers every request through dispatch.rs"
            );
        }
        if rel != "crates/gateway/src/connection.rs" {
            for i in conn_impls {
                assert!(
                    !text.contains(i),
                    "{rel} has `{i}`: Conn's methods belong in connection.rs"
                );
            }
        }
    }
    assert!(checked > 5, "the gateway's sources were not found");
}

/// The keys `docs/CONFIG.md` documents: `key = ...` lines in its TOML blocks,
/// as `section.key` under a `[section]` header and `key` before any.
fn documented_keys() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("docs/CONFIG.md")).unwrap();
    let (mut keys, mut in_toml, mut section) = (BTreeSet::new(), false, String::new());
    for line in text.lines() {
        if line.starts_with("```") {
            in_toml = line == "```toml";
            section.clear();
            continue;
        }
        if !in_toml {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            section = name.to_owned();
            continue;
        }
        let key: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !key.is_empty() && line[key.len()..].trim_start().starts_with('=') {
            keys.insert(if section.is_empty() {
                key
            } else {
                format!("{section}.{key}")
            });
        }
    }
    keys
}

/// Every key the server reads, taken from the code (the default
/// configuration, serialized) so the list cannot drift, is in
/// docs/CONFIG.md, and the document names no key the server does not read.
#[test]
fn every_config_key_is_documented() {
    fn flatten(prefix: &str, value: &serde_json::Value, keys: &mut BTreeSet<String>) {
        for (name, value) in value.as_object().unwrap() {
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match value.is_object() {
                // A section within a section (`[files.s3]`).
                true => flatten(&key, value, keys),
                false => {
                    keys.insert(key);
                }
            }
        }
    }
    let config = serde_json::to_value(natter::Config::default()).unwrap();
    let mut keys = BTreeSet::new();
    flatten("", &config, &mut keys);
    assert!(keys.len() > 100, "the keys were not found ({})", keys.len());
    let documented = documented_keys();
    let missing: Vec<_> = keys.difference(&documented).collect();
    assert!(missing.is_empty(), "not in docs/CONFIG.md: {missing:?}");
    let unknown: Vec<_> = documented.difference(&keys).collect();
    assert!(
        unknown.is_empty(),
        "docs/CONFIG.md documents keys the server does not read: {unknown:?}"
    );
}

/// Source files stay small enough to read in one sitting; tests are exempt.
#[test]
fn no_source_file_is_over_700_lines() {
    const MAX: usize = 700;
    let mut long = Vec::new();
    for f in sources() {
        let rel = f
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let is_test = rel.starts_with("tests/")
            || rel.contains("/tests/")
            || rel.ends_with("/tests.rs")
            || rel.starts_with("fuzz/");
        if is_test {
            continue;
        }
        let lines = std::fs::read_to_string(&f).unwrap().lines().count();
        if lines > MAX {
            long.push(format!("{rel} ({lines} lines)"));
        }
    }
    assert!(long.is_empty(), "over {MAX} lines: {long:?}");
}

#[test]
fn the_cluster_sees_the_gateway_only_through_delivery() {
    // The cluster routes to the sessions here through `delivery`'s narrow
    // interface; reaching past it would couple the cluster to the
    // registry's implementation again.
    let cluster = root().join("crates/cluster/src");
    let path = concat!("natter_gateway", "::");
    let mut seen = 0;
    for f in sources() {
        if !f.starts_with(&cluster) {
            continue;
        }
        let rel = f.strip_prefix(root()).unwrap().display().to_string();
        let text = std::fs::read_to_string(&f).unwrap();
        for piece in text.split(path).skip(1) {
            seen += 1;
            assert!(
                piece.starts_with("delivery"),
                "{rel} imports natter_gateway::{}; the cluster may use only natter_gateway::delivery",
                piece.split([';', '\n']).next().unwrap_or("")
            );
        }
    }
    assert!(seen > 0, "the cluster's gateway imports were not found");
}

#[test]
fn the_cluster_spawns_only_tracked_tasks() {
    // Shutdown waits for the node's tracker: a task the cluster started
    // with a bare spawn would be cut off mid-write instead (it starts them
    // through `Shared::spawn` or on the tracker `Cluster::join` receives).
    let cluster = root().join("crates/cluster/src");
    let bare = [
        concat!("tokio::", "spawn("),
        concat!("tokio::task::", "spawn("),
    ];
    for f in sources() {
        if !f.starts_with(&cluster) {
            continue;
        }
        let rel = f.strip_prefix(root()).unwrap().display().to_string();
        let text = std::fs::read_to_string(&f).unwrap();
        for b in bare {
            assert!(!text.contains(b), "{rel} calls {b}); spawn on the tracker");
        }
    }
}
