//! Tidy: architecture invariants of `src/`, checked by reading the source inside the test suite
//! (`cargo nextest run --test tidy`, or `cargo test --test tidy`; add `--no-capture` to see the
//! import graph):
//!
//! - the import graph between the top-level modules of `src/` has no cycle;
//! - no module below `app` imports `config` (only `app`, `cli`, `main`, `lib` and `config` do);
//! - every `.rs` file under `src/` starts with a `//!` module doc;
//! - `src/domain/` imports no I/O crates;
//! - only `src/metrics.rs` calls the `metrics` crate's macros.
//!
//! Imports are read from the tokens of each file with comments and literals left out: every
//! `crate::x` path counts, grouped ones (`use crate::{a, b::c}`) too, and `super::` stays inside
//! a module. Every check is also run on a planted violation (the `*_is_caught` tests), so a check
//! that stopped seeing anything fails too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules that may import `config`: those above `app`, `app` itself, and `config`.
const CONFIG_IMPORTERS: [&str; 5] = ["app", "cli", "main", "lib", "config"];

/// Crates that do I/O, which `src/domain/` must not import (`std::fs` and `std::net` too).
const IO_CRATES: [&str; 10] = [
    "tokio",
    "tokio_util",
    "tokio_postgres",
    "axum",
    "hyper",
    "hyper_util",
    "reqwest",
    "rusqlite",
    "deadpool",
    "deadpool_postgres",
];
const IO_STD_MODULES: [&str; 2] = ["fs", "net"];

/// The `metrics` crate's recording macros.
const METRIC_MACROS: [&str; 6] = [
    "counter",
    "gauge",
    "histogram",
    "describe_counter",
    "describe_gauge",
    "describe_histogram",
];

struct SourceFile {
    /// Relative to `src/`, with `/` between components.
    path: String,
    text: String,
}

impl SourceFile {
    /// The top-level module the file belongs to: `app/runtime.rs` → `app`, `config.rs` →
    /// `config`, `lib.rs` → `lib`.
    fn module(&self) -> &str {
        let first = self.path.split('/').next().unwrap_or("");
        first.strip_suffix(".rs").unwrap_or(first)
    }
}

fn source_tree() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let relative = path
                    .strip_prefix(&root)
                    .expect("under src/")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                files.push(SourceFile {
                    path: relative,
                    text,
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    assert!(
        files.iter().any(|f| f.path == "lib.rs"),
        "no src/lib.rs under {}",
        root.display()
    );
    files
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    /// `::`
    PathSep,
    Open,
    Close,
    Comma,
    Bang,
    Dollar,
    Other,
}

/// The tokens of Rust source that matter for paths, each with its line. Comments, string, byte
/// string, raw string and char literals are left out; lifetimes leave an `Other`.
fn tokens(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skips a quoted literal whose opening quote is at `i`; returns the index after it.
    let skip_quoted = |mut i: usize, quote: char, line: &mut usize| {
        i += 1;
        while i < chars.len() && chars[i] != quote {
            if chars[i] == '\\' {
                i += 1;
            }
            if at(i) == '\n' {
                *line += 1;
            }
            i += 1;
        }
        i + 1
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            '/' if at(i + 1) == '/' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == '*' => {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && at(i + 1) == '*' {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && at(i + 1) == '/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if chars[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            '"' => i = skip_quoted(i, '"', &mut line),
            // A char literal (`'x'`, `'\n'`); a lifetime or label falls through to `Other`.
            '\'' if at(i + 1) == '\\' || (at(i + 1) != '\'' && at(i + 2) == '\'') => {
                i = skip_quoted(i, '\'', &mut line);
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let ident: String = chars[start..i].iter().collect();
                let literal_prefix = matches!(ident.as_str(), "r" | "b" | "br" | "c" | "cr");
                if literal_prefix && at(i) == '\'' && ident == "b" {
                    i = skip_quoted(i, '\'', &mut line);
                } else if literal_prefix && at(i) == '"' && !ident.contains('r') {
                    i = skip_quoted(i, '"', &mut line);
                } else if literal_prefix && ident.contains('r') && matches!(at(i), '"' | '#') {
                    let mut hashes = 0;
                    while at(i + hashes) == '#' {
                        hashes += 1;
                    }
                    if at(i + hashes) == '"' {
                        // A raw string: ends at `"` followed by as many `#`.
                        i += hashes + 1;
                        while i < chars.len()
                            && !(chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#'))
                        {
                            if chars[i] == '\n' {
                                line += 1;
                            }
                            i += 1;
                        }
                        i += hashes + 1;
                    } else {
                        // A raw identifier, `r#name`: the name follows.
                        out.push((Token::Other, line));
                        i += hashes;
                    }
                } else {
                    out.push((Token::Ident(ident), line));
                }
            }
            ':' if at(i + 1) == ':' => {
                out.push((Token::PathSep, line));
                i += 2;
            }
            '{' => {
                out.push((Token::Open, line));
                i += 1;
            }
            '}' => {
                out.push((Token::Close, line));
                i += 1;
            }
            ',' => {
                out.push((Token::Comma, line));
                i += 1;
            }
            '!' => {
                out.push((Token::Bang, line));
                i += 1;
            }
            '$' => {
                out.push((Token::Dollar, line));
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            _ => {
                out.push((Token::Other, line));
                i += 1;
            }
        }
    }
    out
}

fn is_ident(token: Option<&(Token, usize)>, name: &str) -> bool {
    matches!(token, Some((Token::Ident(ident), _)) if ident == name)
}

/// Whether the token at `i` is the first of a `use` path (`use x` or `use ::x`).
fn follows_use(tokens: &[(Token, usize)], i: usize) -> bool {
    (i > 0 && is_ident(tokens.get(i - 1), "use"))
        || (i > 1 && tokens[i - 1].0 == Token::PathSep && is_ident(tokens.get(i - 2), "use"))
}

/// The first segment after every `root::` path: `root::a::b` gives `a`, and a group
/// `root::{a, b::c, d::{e}}` gives `a`, `b` and `d`. Each with its line. A `root` right after
/// `$` (`$crate` in a macro) or after `::` (not a path's root) is skipped.
fn segments_after(tokens: &[(Token, usize)], root: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for i in 0..tokens.len() {
        if !is_ident(tokens.get(i), root)
            || tokens.get(i + 1).map(|t| &t.0) != Some(&Token::PathSep)
        {
            continue;
        }
        if i > 0 && matches!(tokens[i - 1].0, Token::Dollar | Token::PathSep) {
            continue;
        }
        match tokens.get(i + 2) {
            Some((Token::Ident(first), line)) => found.push((first.clone(), *line)),
            Some((Token::Open, _)) => {
                let mut depth = 0;
                let mut item_starts = true;
                for (token, line) in &tokens[i + 2..] {
                    match token {
                        Token::Open => {
                            depth += 1;
                            item_starts = depth == 1;
                        }
                        Token::Close => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        Token::Comma if depth == 1 => item_starts = true,
                        Token::Ident(ident) if item_starts => {
                            if ident != "self" {
                                found.push((ident.clone(), *line));
                            }
                            item_starts = false;
                        }
                        _ => item_starts = false,
                    }
                }
            }
            _ => {}
        }
    }
    found
}

/// Which top-level module imports which, with the first place each import is made.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn import_graph(files: &[SourceFile]) -> Graph {
    let modules: BTreeSet<&str> = files.iter().map(SourceFile::module).collect();
    let mut graph = Graph::new();
    for file in files {
        let from = file.module();
        let edges = graph.entry(from.to_owned()).or_default();
        for (to, line) in segments_after(&tokens(&file.text), "crate") {
            if to != from && modules.contains(to.as_str()) {
                edges
                    .entry(to)
                    .or_insert_with(|| format!("src/{}:{line}", file.path));
            }
        }
    }
    graph
}

fn render(graph: &Graph) -> String {
    graph
        .iter()
        .filter(|(_, edges)| !edges.is_empty())
        .map(|(from, edges)| {
            let to: Vec<&str> = edges.keys().map(String::as_str).collect();
            format!("{from} -> {}", to.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A cycle of the graph as a path that ends where it starts, when there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_owned(), Mark::Open);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(cycle) = visit(next, graph, marks, stack) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New
            && let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

fn check_no_cycle(files: &[SourceFile]) -> Vec<String> {
    let graph = import_graph(files);
    match find_cycle(&graph) {
        None => Vec::new(),
        Some(cycle) => {
            let places: Vec<String> = cycle
                .windows(2)
                .map(|pair| {
                    format!(
                        "  {} -> {}: {}",
                        pair[0], pair[1], graph[&pair[0]][&pair[1]]
                    )
                })
                .collect();
            vec![format!(
                "import cycle: {}\n{}\nthe whole graph:\n{}",
                cycle.join(" -> "),
                places.join("\n"),
                render(&graph)
            )]
        }
    }
}

fn check_config_importers(files: &[SourceFile]) -> Vec<String> {
    let graph = import_graph(files);
    let mut problems = Vec::new();
    for (from, edges) in &graph {
        let Some(place) = edges.get("config") else {
            continue;
        };
        if !CONFIG_IMPORTERS.contains(&from.as_str()) {
            problems.push(format!(
                "{from} imports config ({place}): below app, modules take the pieces app builds"
            ));
        }
    }
    problems
}

fn check_module_docs(files: &[SourceFile]) -> Vec<String> {
    files
        .iter()
        .filter(|file| {
            let first = file.text.lines().find(|line| !line.trim().is_empty());
            !first.is_some_and(|line| line.starts_with("//!"))
        })
        .map(|file| format!("src/{} does not start with a `//!` module doc", file.path))
        .collect()
}

fn check_domain_is_pure(files: &[SourceFile]) -> Vec<String> {
    let mut problems = Vec::new();
    for file in files.iter().filter(|f| f.path.starts_with("domain/")) {
        let tokens = tokens(&file.text);
        for (i, (token, line)) in tokens.iter().enumerate() {
            let Token::Ident(ident) = token else {
                continue;
            };
            let next = tokens.get(i + 1).map(|t| &t.0);
            let after_use = follows_use(&tokens, i);
            let extern_crate = i > 1
                && is_ident(tokens.get(i - 1), "crate")
                && is_ident(tokens.get(i - 2), "extern");
            if IO_CRATES.contains(&ident.as_str())
                && (next == Some(&Token::PathSep) || after_use || extern_crate)
            {
                problems.push(format!("src/{}:{line} uses {ident}", file.path));
            }
        }
        for (module, line) in segments_after(&tokens, "std") {
            if IO_STD_MODULES.contains(&module.as_str()) {
                problems.push(format!("src/{}:{line} uses std::{module}", file.path));
            }
        }
    }
    problems
}

fn check_metrics_recorded_in_one_place(files: &[SourceFile]) -> Vec<String> {
    let mut problems = Vec::new();
    for file in files.iter().filter(|f| f.path != "metrics.rs") {
        let tokens = tokens(&file.text);
        for (i, (token, line)) in tokens.iter().enumerate() {
            let Token::Ident(ident) = token else {
                continue;
            };
            let macro_call = METRIC_MACROS.contains(&ident.as_str())
                && tokens.get(i + 1).map(|t| &t.0) == Some(&Token::Bang);
            let exporter = ident == "metrics_exporter_prometheus";
            // `use metrics::…` names the crate; `crate::metrics` is this module.
            let crate_import = ident == "metrics" && follows_use(&tokens, i);
            if macro_call || exporter || crate_import {
                problems.push(format!(
                    "src/{}:{line}: records metrics with the metrics crate ({ident}); \
                     add a function to src/metrics.rs instead",
                    file.path
                ));
            }
        }
    }
    problems
}

fn assert_none(check: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{check}:\n{}", problems.join("\n"));
}

#[test]
fn no_import_cycle_among_top_level_modules() {
    let files = source_tree();
    println!("{}", render(&import_graph(&files)));
    assert_none("the module graph", check_no_cycle(&files));
}

#[test]
fn no_module_below_app_imports_config() {
    assert_none("config importers", check_config_importers(&source_tree()));
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    assert_none("module docs", check_module_docs(&source_tree()));
}

#[test]
fn domain_imports_no_io_crates() {
    assert_none("domain/", check_domain_is_pure(&source_tree()));
}

#[test]
fn only_metrics_rs_records_metrics() {
    assert_none(
        "metrics",
        check_metrics_recorded_in_one_place(&source_tree()),
    );
}

/// A source tree of the given files, for planting violations.
fn tree(files: &[(&str, &str)]) -> Vec<SourceFile> {
    files
        .iter()
        .map(|(path, text)| SourceFile {
            path: (*path).to_owned(),
            text: (*text).to_owned(),
        })
        .collect()
}

#[test]
fn imports_are_read_from_paths_and_groups_but_not_comments_or_literals() {
    let files = tree(&[
        (
            "lib.rs",
            "//! x\npub mod a;\npub mod b;\npub mod c;\npub mod d;\npub mod e;\n",
        ),
        (
            "a/mod.rs",
            "//! x\nuse crate::{b, c::{X, Y}, self};\nuse super::z;\n\
             // crate::d in a comment\nconst S: &str = \"crate::d\";\n\
             const R: &str = r#\"crate::d \"quoted\"\"#;\nconst C: char = '\"';\n\
             fn f<'a>(x: &'a str) { $crate::d::m!(); pub(crate) fn g() {} }\n",
        ),
        ("a/deep.rs", "//! x\nfn f() { crate::e::run(); }\n"),
        ("b.rs", "//! x\n"),
        ("c.rs", "//! x\n"),
        ("d.rs", "//! x\n"),
        ("e.rs", "//! x\n"),
    ]);
    let graph = import_graph(&files);
    let from_a: Vec<&str> = graph["a"].keys().map(String::as_str).collect();
    assert_eq!(from_a, ["b", "c", "e"], "{}", render(&graph));
    assert_eq!(graph["a"]["c"], "src/a/mod.rs:2");
    assert_eq!(graph["a"]["e"], "src/a/deep.rs:2");
}

#[test]
fn a_cycle_is_caught_and_printed() {
    let files = tree(&[
        ("lib.rs", "//! x\n"),
        ("metrics.rs", "//! x\nuse crate::stats::Recorder;\n"),
        (
            "stats.rs",
            "//! x\nuse crate::{clock, metrics::IntakeOutcome};\n",
        ),
        ("clock.rs", "//! x\n"),
    ]);
    let problems = check_no_cycle(&files);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("metrics -> stats -> metrics")
            || problems[0].contains("stats -> metrics -> stats"),
        "{}",
        problems[0]
    );
    assert!(problems[0].contains("src/stats.rs:2"), "{}", problems[0]);
}

#[test]
fn a_config_import_below_app_is_caught() {
    let files = tree(&[
        ("lib.rs", "//! x\n"),
        ("config.rs", "//! x\n"),
        ("app.rs", "//! x\nuse crate::config::Config;\n"),
        ("cli/mod.rs", "//! x\nuse crate::config::Config;\n"),
        ("store/mod.rs", "//! x\nuse crate::config::Config;\n"),
        (
            "delivery/attempt.rs",
            "//! x\nfn f(c: &crate::config::Config) {}\n",
        ),
    ]);
    let mut problems = check_config_importers(&files);
    problems.sort();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("delivery imports config (src/delivery/attempt.rs:2)"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("store imports config (src/store/mod.rs:2)"),
        "{problems:?}"
    );
}

#[test]
fn a_file_without_a_module_doc_is_caught() {
    let files = tree(&[
        ("lib.rs", "\n//! The crate.\n"),
        (
            "a.rs",
            "/// An item doc is not a module doc.\npub struct A;\n",
        ),
        ("b/mod.rs", "pub mod c;\n"),
    ]);
    assert_eq!(
        check_module_docs(&files),
        [
            "src/a.rs does not start with a `//!` module doc",
            "src/b/mod.rs does not start with a `//!` module doc"
        ]
    );
}

#[test]
fn io_in_domain_is_caught() {
    let files = tree(&[
        (
            "domain/a.rs",
            "//! x\nuse std::{collections::HashMap, fs};\nuse tokio::sync::Mutex;\n\
             fn f() { let _ = std::net::TcpStream::connect(\"x\"); }\n",
        ),
        (
            "domain/b.rs",
            "//! x\nuse reqwest;\n// tokio::spawn in a comment\n",
        ),
        ("store.rs", "//! x\nuse rusqlite::Connection;\n"),
    ]);
    assert_eq!(
        check_domain_is_pure(&files),
        [
            "src/domain/a.rs:3 uses tokio",
            "src/domain/a.rs:2 uses std::fs",
            "src/domain/a.rs:4 uses std::net",
            "src/domain/b.rs:2 uses reqwest",
        ]
    );
}

#[test]
fn a_metric_recorded_outside_metrics_rs_is_caught() {
    let files = tree(&[
        (
            "metrics.rs",
            "//! x\nuse metrics::counter;\nfn f() { counter!(\"a\").increment(1); }\n",
        ),
        (
            "intake/mod.rs",
            "//! x\nuse crate::metrics::{self, IntakeOutcome};\n\
             fn f() { metrics::intake(); metrics::counter!(\"b\").increment(1); }\n",
        ),
        ("store/mod.rs", "//! x\nuse metrics::histogram;\n"),
        (
            "delivery/mod.rs",
            "//! x\nfn f() { gauge!(\"c\").set(1.0); }\n",
        ),
    ]);
    let problems = check_metrics_recorded_in_one_place(&files);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].starts_with("src/intake/mod.rs:3:"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("src/store/mod.rs:2:"),
        "{problems:?}"
    );
    assert!(
        problems[2].starts_with("src/delivery/mod.rs:2:"),
        "{problems:?}"
    );
}
