//! Reading the shell commands out of the operator docs, and matching what a doc shows under a
//! command against what the command printed.

/// One line of a ```sh block: a command (continuation lines joined), with the `# …` lines right
/// under it (no blank line between), which show its output; or a comment line of its own.
#[derive(Debug, Clone)]
pub enum ShellLine {
    Command {
        /// The `## …` heading the block is under.
        heading: String,
        text: String,
        shows: Vec<String>,
    },
    /// A comment line not attached to a command (after a blank line, or at the top).
    Comment(String),
}

/// Every line of every ```sh block, in order.
pub fn shell_lines(markdown: &str) -> Vec<ShellLine> {
    let mut out = Vec::new();
    let mut heading = String::new();
    let mut in_shell = false;
    let mut in_other = false;
    let mut attached = false;
    let mut pending = String::new();
    for raw in markdown.lines() {
        let line = raw.trim();
        if let Some(info) = line.strip_prefix("```") {
            if in_shell || in_other {
                in_shell = false;
                in_other = false;
            } else if info.trim() == "sh" {
                in_shell = true;
                attached = false;
            } else {
                in_other = true;
            }
            continue;
        }
        if !in_shell {
            if !in_other && let Some(title) = line.strip_prefix("## ") {
                heading = title.to_owned();
            }
            continue;
        }
        if !pending.is_empty() {
            pending.push(' ');
            pending.push_str(line.trim_end_matches('\\').trim());
            if !line.ends_with('\\') {
                out.push(ShellLine::Command {
                    heading: heading.clone(),
                    text: std::mem::take(&mut pending),
                    shows: Vec::new(),
                });
                attached = true;
            }
            continue;
        }
        if line.is_empty() {
            attached = false;
        } else if let Some(comment) = raw.trim_start().strip_prefix('#') {
            match out.last_mut() {
                Some(ShellLine::Command { shows, .. }) if attached => {
                    shows.push(comment.trim().to_owned());
                }
                _ => out.push(ShellLine::Comment(comment.to_owned())),
            }
        } else if line.ends_with('\\') {
            pending = line.trim_end_matches('\\').trim().to_owned();
        } else {
            out.push(ShellLine::Command {
                heading: heading.clone(),
                text: line.to_owned(),
                shows: Vec::new(),
            });
            attached = true;
        }
    }
    out
}

/// The inline code spans of the prose (outside fenced blocks) that start with `prefix`; a span
/// may run over a line break.
pub fn inline_commands(markdown: &str, prefix: &str) -> Vec<String> {
    let mut prose = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            prose.push_str(line);
            prose.push(' ');
        }
    }
    prose
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|span| span.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|span| span.starts_with(prefix))
        .collect()
}

/// Whitespace runs as one space, ends trimmed.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether a printed line is what a doc shows: `…` stands for any text, and an id written
/// `0193…` for any id (the hex digits before `…` are part of the elision).
pub fn line_shows(shown: &str, printed: &str) -> bool {
    let shown = squeeze(shown);
    let printed = squeeze(printed);
    let mut pieces: Vec<String> = vec![String::new()];
    for c in shown.chars() {
        if c == '…' {
            let last = pieces.last_mut().expect("a piece");
            while last.ends_with(|c: char| c.is_ascii_hexdigit()) {
                last.pop();
            }
            pieces.push(String::new());
        } else {
            pieces.last_mut().expect("a piece").push(c);
        }
    }
    if pieces.len() == 1 {
        return printed == pieces[0];
    }
    let first = &pieces[0];
    let last = &pieces[pieces.len() - 1];
    let Some(mut rest) = printed.strip_prefix(first.as_str()) else {
        return false;
    };
    for middle in &pieces[1..pieces.len() - 1] {
        match rest.find(middle.as_str()) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    rest.ends_with(last.as_str())
}

/// Whether every shown line is printed, in order.
pub fn output_shows(shown: &[String], printed: &str) -> bool {
    let mut lines = printed.lines();
    shown
        .iter()
        .all(|want| lines.by_ref().any(|line| line_shows(want, line)))
}

#[test]
fn markdown_helpers() {
    let doc = "## One\n\n```sh\n# prose\nrun a \\\n   --flag   # note\n# out 1\n# out …\n\n#   indented\nrun b\n```\n\
               ```toml\n## not a heading\n```\nSee `oncehook dlq tail\n--follow` and `other`.\n";
    let lines = shell_lines(doc);
    assert!(
        matches!(&lines[0], ShellLine::Comment(c) if c == " prose"),
        "{lines:?}"
    );
    match &lines[1] {
        ShellLine::Command {
            heading,
            text,
            shows,
        } => {
            assert_eq!(heading, "One");
            assert_eq!(text, "run a --flag   # note");
            assert_eq!(shows, &["out 1", "out …"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&lines[2], ShellLine::Comment(c) if c == "   indented"));
    assert!(matches!(&lines[3], ShellLine::Command { text, .. } if text == "run b"));
    assert_eq!(
        inline_commands(doc, "oncehook "),
        ["oncehook dlq tail --follow"]
    );

    assert!(line_shows(
        r#"1: 202 {"event_id":"0193…","key":"msg_…"}"#,
        r#"1: 202 {"event_id":"01a2219e-626c","key":"msg_01a2"}"#
    ));
    assert!(!line_shows("msg_…", "evt_1"));
    assert!(line_shows("a  b …", "a b c"));
    assert!(!line_shows("a b", "a b c"));
    assert!(output_shows(
        &["x …".to_owned(), "z".to_owned()],
        "x 1\ny\nz\n"
    ));
    assert!(!output_shows(
        &["z".to_owned(), "x …".to_owned()],
        "x 1\ny\nz\n"
    ));
}
