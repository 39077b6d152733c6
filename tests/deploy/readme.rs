//! The README against the product: its walkthrough run as written, and the facts it states about
//! the repository (what the two commands need, what the console is made of, which files it
//! links to).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{BIN, free_port};
use crate::markdown::{ShellLine, inline_commands, line_shows, output_shows, shell_lines};
use crate::{read, repo};

const README: &str = "README.md";
const QUICKSTART: &str = "examples/quickstart.toml";

/// A background process of the walkthrough (the gateway, the listener), killed when dropped.
struct Background {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Background {
    fn start(mut command: Command) -> Background {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start");
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
        }
        Background { child, lines }
    }

    fn printed(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// Waits until the printed lines show `shown`; panics with what was printed otherwise.
    fn wait_to_show(&self, shown: &[String], what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !output_shows(shown, &self.printed()) {
            assert!(
                Instant::now() < deadline,
                "{what}: the README shows {shown:#?}, it printed:\n{}",
                self.printed()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The walkthrough's machine: the quickstart config copied into a temporary directory with
/// free ports, `oncehook` on PATH, the gateway and the listener.
struct Walkthrough {
    dir: tempfile::TempDir,
    path: String,
    /// Text replaced in commands and in what the README shows: ports and the config's path.
    swaps: Vec<(String, String)>,
    admin: String,
    gateway: Option<Background>,
    listener: Option<Background>,
    /// The newest event id a command printed, for `EVENT_ID`.
    event_id: Option<String>,
}

impl Walkthrough {
    fn new() -> Walkthrough {
        let dir = tempfile::tempdir().expect("tempdir");
        let (intake, admin, listen) = (free_port(), free_port(), free_port());
        let swaps: Vec<(String, String)> = vec![
            (
                QUICKSTART.to_owned(),
                path_of(&dir.path().join("quickstart.toml")),
            ),
            (":8080".to_owned(), format!(":{intake}")),
            (":8081".to_owned(), format!(":{admin}")),
            (":9000".to_owned(), format!(":{listen}")),
            ("--port 9000".to_owned(), format!("--port {listen}")),
        ];
        let config = swap(&read(QUICKSTART), &swaps[1..]);
        std::fs::write(dir.path().join("quickstart.toml"), config).expect("config");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin");
        std::os::unix::fs::symlink(BIN, bin.join("oncehook")).expect("symlink");
        let path = format!(
            "{}:{}",
            path_of(&bin),
            std::env::var("PATH").unwrap_or_default()
        );
        Walkthrough {
            dir,
            path,
            swaps,
            admin: format!("127.0.0.1:{admin}"),
            gateway: None,
            listener: None,
            event_id: None,
        }
    }

    /// A command line as the README's reader would run it here: in the repository, through sh,
    /// with `oncehook` on PATH and no ONCEHOOK_* variables of the test's environment.
    fn shell(&self, line: &str) -> Command {
        let mut command = Command::new("sh");
        command
            .args(["-c", line])
            .current_dir(repo())
            .env("PATH", &self.path)
            .env_remove("ONCEHOOK_ADMIN_TOKEN")
            .env_remove("ONCEHOOK_CONFIG")
            .env("ONCEHOOK_LOG", "warn");
        command
    }

    fn deliveries(&self) -> i64 {
        let db = rusqlite::Connection::open_with_flags(
            self.dir.path().join("data/oncehook.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the walkthrough's store");
        db.query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))
            .expect("count")
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&self.admin).is_err() {
            assert!(Instant::now() < deadline, "the gateway did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn path_of(path: &Path) -> String {
    path.to_str().expect("utf-8 path").to_owned()
}

fn swap(text: &str, swaps: &[(String, String)]) -> String {
    swaps
        .iter()
        .fold(text.to_owned(), |text, (from, to)| text.replace(from, to))
}

/// The first UUID in `text`.
fn first_uuid(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .find(|word| word.len() == 36 && uuid::Uuid::parse_str(word).is_ok())
        .map(str::to_owned)
}

/// Commands the walkthrough does not run, and why.
fn not_run(command: &str) -> Option<&'static str> {
    if command.starts_with("scripts/") || command.starts_with("bench/") {
        Some("runs a suite of its own")
    } else if command.starts_with("cargo install") {
        Some("installs into ~/.cargo/bin; the walkthrough runs the binary under test")
    } else if command.starts_with("oncehook serve") && !command.contains(QUICKSTART) {
        Some("a PostgreSQL node (tests/deploy/two_nodes.rs runs that set-up)")
    } else if command.starts_with("curl")
        && !crate::tool_available("curl", "--version", "apt-get install curl")
    {
        Some("curl is not installed")
    } else {
        None
    }
}

/// Commands that only read: while the gateway catches up, run again until they show what the
/// README shows.
fn reads_only(command: &str) -> bool {
    ["oncehook events", "oncehook dlq", "oncehook stats", "curl "]
        .iter()
        .any(|prefix| command.starts_with(prefix))
}

#[test]
fn the_readme_walkthrough_runs_as_written_and_shows_what_it_says() {
    let readme = read(README);
    let mut machine = Walkthrough::new();
    let mut skipped: BTreeMap<String, &str> = BTreeMap::new();
    let mut ran = Vec::new();
    let mut listener_shows: Vec<String> = Vec::new();
    // What the listeners printed before they were restarted.
    let mut listener_history = String::new();
    let mut deliveries_before_bench = None;

    for line in shell_lines(&readme) {
        let (text, shows) = match line {
            ShellLine::Comment(comment) => {
                // `#   POST /webhooks …` under a sentence: what the listener prints.
                if let Some(shown) = comment.strip_prefix("   ") {
                    listener_shows.push(shown.trim().to_owned());
                    if let Some(listener) = &machine.listener {
                        listener.wait_to_show(&listener_shows, "the listener");
                    }
                }
                continue;
            }
            ShellLine::Command { text, shows, .. } => (text, shows),
        };
        let command = text
            .strip_prefix("cargo run --release -- ")
            .map_or(text.clone(), |rest| format!("oncehook {rest}"));
        if let Some(why) = not_run(&command) {
            let without_comment = command.split(" #").next().unwrap_or(&command).trim();
            skipped.insert(without_comment.to_owned(), why);
            continue;
        }
        let mut command = swap(&command, &machine.swaps);
        let shows: Vec<String> = shows.iter().map(|s| swap(s, &machine.swaps)).collect();
        if command.contains("EVENT_ID") {
            let id = machine
                .event_id
                .clone()
                .expect("an event id printed before EVENT_ID");
            command = command.replace("EVENT_ID", &id);
        }
        ran.push(command.clone());

        if command.starts_with("oncehook serve") {
            machine.gateway = Some(Background::start(machine.shell(&format!("exec {command}"))));
            machine.wait_healthy();
            continue;
        }
        if command.starts_with("oncehook listen") {
            // Ctrl-C, and start it again: the README restarts the listener this way.
            if let Some(previous) = machine.listener.take() {
                listener_history.push_str(&previous.printed());
                listener_history.push('\n');
            }
            let listener = Background::start(machine.shell(&format!("exec {command}")));
            listener.wait_to_show(&shows, &command);
            machine.listener = Some(listener);
            continue;
        }
        let bench = command.starts_with("oncehook bench");
        if bench {
            deliveries_before_bench = Some(machine.deliveries());
            // The README's 30 seconds, shortened.
            command = command.replace("--duration 30s", "--duration 1s");
        }

        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let output = machine.shell(&command).output().expect("run");
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            let shown = output.status.success() && output_shows(&shows, &stdout);
            if shown || !reads_only(&command) || Instant::now() > deadline {
                assert!(
                    output.status.success(),
                    "{command}\nexited {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                    output.status.code()
                );
                assert!(
                    shown,
                    "{command}\nthe README shows {shows:#?}\nit printed:\n{stdout}\nstderr:\n{stderr}"
                );
                if let Some(id) = first_uuid(&stdout) {
                    machine.event_id = Some(id);
                }
                if let (true, Some(before)) = (bench, deliveries_before_bench) {
                    assert_eq!(
                        machine.deliveries(),
                        before,
                        "the README says the bench source delivers nothing: {command}"
                    );
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    let listener = machine
        .listener
        .as_ref()
        .expect("the walkthrough starts a listener");
    listener_history.push_str(&listener.printed());
    let demo_deliveries = listener_history
        .lines()
        .filter(|l| line_shows("POST /webhooks event … source demo …", l))
        .count();
    assert_eq!(
        demo_deliveries, 1,
        "one delivery whatever the number of sends:\n{listener_history}"
    );
    assert!(
        deliveries_before_bench.is_some(),
        "the README runs the bench"
    );
    for expected in [
        "oncehook send",
        "oncehook events search",
        "oncehook events show",
        "oncehook dlq tail",
        "oncehook replay",
        "oncehook stats",
        "oncehook bench",
    ] {
        assert!(
            ran.iter().any(|c| c.starts_with(expected)),
            "the walkthrough ran no `{expected}`: {ran:#?}"
        );
    }
    eprintln!("not run from the README:");
    for (command, why) in &skipped {
        eprintln!("  {command}: {why}");
    }
}

/// What `scripts/test` and the scripts it calls use, and the words the README's list of
/// prerequisites must name for each.
const PREREQUISITES: &[(&str, &str)] = &[
    ("python3 -m venv", "venv"),
    ("pip", "pip"),
    ("promtool", "promtool"),
    ("pg_ctlcluster", "PostgreSQL"),
    ("chromium", "Chromium"),
    ("node", "Node.js 20+"),
    ("npm", "npm"),
    ("apt-get", "apt-get"),
    ("nextest", "cargo-nextest"),
];

#[test]
fn the_readme_names_every_prerequisite_of_its_two_commands() {
    let readme = read(README);
    let section = readme
        .split("## Two commands")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Two commands section")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let scripts: String = [
        "scripts/test",
        "scripts/ensure-postgres",
        "scripts/ensure-promtool",
        "scripts/ensure-browser",
    ]
    .iter()
    .map(|path| read(path))
    .collect();
    for (used, named) in PREREQUISITES {
        assert!(
            scripts.contains(used),
            "the scripts no longer use {used}: update this list"
        );
        assert!(
            section.contains(named),
            "scripts/test uses {used}, but the README's Two commands section does not name {named}"
        );
    }
    // The build: the Rust version Cargo.toml asks for, the C compiler SQLite needs, the time.
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml");
    let rust_version = manifest["package"]["rust-version"]
        .as_str()
        .expect("rust-version");
    for named in [rust_version, "C compiler", "10 minutes"] {
        assert!(
            section.contains(named),
            "the Two commands section does not say {named}"
        );
    }
    assert!(
        !section.contains("only a Rust toolchain"),
        "the Two commands section still says they need only a Rust toolchain"
    );
    // The install step that puts `oncehook` on PATH for the rest of the docs.
    for doc in [README, "docs/deploy.md"] {
        let text = read(doc);
        assert!(
            text.contains("cargo install --path .") && text.contains("target/release/oncehook"),
            "{doc}: no install step (cargo install --path ., or the release binary copied to PATH)"
        );
    }
}

#[test]
fn the_readme_counts_the_consoles_files() {
    let assets = std::fs::read_dir(repo().join("src/console/assets"))
        .expect("assets")
        .count();
    let words = ["no", "one", "two", "three", "four", "five", "six", "seven"];
    let said = format!("The page is {} small files", words[assets]);
    assert!(
        read(README).contains(&said),
        "the console has {assets} files: the README should say {said:?}"
    );
}

/// Relative links in the operator docs land on files that exist, and nothing cites a SPEC
/// file, which the repository does not have.
#[test]
fn the_docs_cite_only_files_the_repository_has() {
    let docs = [
        "README.md",
        "RUNBOOK.md",
        "ARCHITECTURE.md",
        "docs/configuration.md",
        "docs/deploy.md",
        "docs/fuzzing.md",
        "docs/providers.md",
        QUICKSTART,
        "deploy/systemd/oncehook.toml",
        "deploy/prometheus/alerts.yml",
    ];
    let mut problems = Vec::new();
    for doc in docs {
        let text = read(doc);
        if !repo().join("SPEC.md").exists() && text.contains("SPEC") {
            problems.push(format!(
                "{doc} cites a SPEC, which the repository does not have"
            ));
        }
        let dir: PathBuf = repo().join(doc).parent().expect("dir").to_owned();
        for target in text
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
        {
            let file = target.split('#').next().unwrap_or("");
            if file.is_empty() || file.contains("://") || file.starts_with("mailto:") {
                continue;
            }
            if !dir.join(file).exists() {
                problems.push(format!("{doc} links to {target}, which does not exist"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every `oncehook …` the README mentions in its prose names a real command.
#[test]
fn the_readmes_inline_commands_exist() {
    for command in inline_commands(&read(README), "oncehook ") {
        let words: Vec<&str> = command.split_whitespace().collect();
        let mut args: Vec<&str> = words[1..]
            .iter()
            .take_while(|w| !w.starts_with('-') && w.chars().all(|c| c.is_ascii_lowercase()))
            .copied()
            .collect();
        args.push("--help");
        let output = Command::new(BIN).args(&args).output().expect("run");
        assert!(
            output.status.success(),
            "`{command}` from the README: oncehook {} fails: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
