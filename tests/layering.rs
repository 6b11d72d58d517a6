//! The layers stay layers: `src/lib.rs` declares the top-level modules top to bottom, and a
//! module may use only the ones declared below it. Two modules that import each other, or a
//! module that reaches up, fail here with the file and line. Reads the sources as text; `make
//! lint` runs it beside clippy.

use std::path::{Path, PathBuf};

/// The top-level modules in the order `src/lib.rs` declares them.
fn declared_order(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').trim().to_string())
        .collect()
}

/// Every `.rs` file of module `name`: `src/name.rs` and everything under `src/name/`.
fn files_of(src: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let file = src.join(format!("{name}.rs"));
    if file.exists() {
        out.push(file);
    }
    let mut dirs = vec![src.join(name)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

/// The top-level modules a line names through `crate::`, including `use crate::{a, b::c}`.
fn crate_refs(line: &str, modules: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => {
                let group = group.split('}').next().unwrap_or("");
                group.split(',').collect()
            }
            None => vec![rest],
        };
        for n in names {
            let ident: String = n
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&ident) {
                found.push(ident);
            }
        }
    }
    found
}

#[test]
fn modules_use_only_the_ones_declared_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order = declared_order(&src);
    assert!(order.len() >= 5, "src/lib.rs declares {order:?}");
    let mut violations = Vec::new();
    for (rank, module) in order.iter().enumerate() {
        let files = files_of(&src, module);
        assert!(!files.is_empty(), "no source for module {module}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (no, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for used in crate_refs(line, &order) {
                    let used_rank = order.iter().position(|m| *m == used).unwrap();
                    if used_rank < rank {
                        violations.push(format!(
                            "{}:{}: `{module}` uses `{used}`, which src/lib.rs declares above it",
                            file.strip_prefix(&src).unwrap_or(&file).display(),
                            no + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering broken (move the shared piece below both, or the module lower in src/lib.rs \
         if nothing below uses it):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_inline_paths() {
    let modules: Vec<String> = ["api", "cache", "backend"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        crate_refs("use crate::{api::server, cache::Cache};", &modules),
        ["api", "cache"]
    );
    assert_eq!(
        crate_refs(
            "let x = crate::backend::Key::secret(a, None, None);",
            &modules
        ),
        ["backend"]
    );
    assert!(crate_refs("use crate::{start, StartError};", &modules).is_empty());
}
