//! The transform interpreter on its own: outputs, failures, limits and compile errors.

use std::time::{Duration, Instant};

use super::*;

fn run(code: &str, body: &str) -> Result<String, TransformError> {
    let transform = Transform::compile(code).expect("compiles");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let body: serde_json::Value =
        serde_json::from_str(body).map_err(|e| TransformError::NotJson(e.to_string()))?;
    runtime
        .block_on(transform.apply(&body))
        .map(|bytes| String::from_utf8(bytes.to_vec()).expect("utf-8"))
}

#[test]
fn a_program_gives_the_one_value_it_yields() {
    let body = r#"{"type":"lead.created","data":{"email":"a@example.com","name":"A"}}"#;
    assert_eq!(
        run("{email: .data.email}", body).as_deref(),
        Ok(r#"{"email":"a@example.com"}"#)
    );
    assert_eq!(run(".", r#"{"a":1}"#).as_deref(), Ok(r#"{"a":1}"#));
    assert_eq!(
        run("[range(3)] | map(. * 2)", "{}").as_deref(),
        Ok("[0,2,4]")
    );
    assert_eq!(
        run(r#".data.name | ascii_downcase | test("a")"#, body).as_deref(),
        Ok("true")
    );
}

#[test]
fn failures_no_value_and_several_values_are_errors() {
    assert!(matches!(
        run(r#"error("no lead")"#, "{}"),
        Err(TransformError::Failed(m)) if m.contains("no lead")
    ));
    assert!(matches!(
        run(".a + 1", r#"{"a":"x"}"#),
        Err(TransformError::Failed(_))
    ));
    assert_eq!(run("empty", "{}"), Err(TransformError::NoValue));
    assert_eq!(run(".[]", "[1,2]"), Err(TransformError::SeveralValues));
    assert!(matches!(
        run(".", "not json"),
        Err(TransformError::NotJson(_))
    ));
}

#[test]
fn what_reaches_outside_the_evaluation_is_not_offered() {
    for code in ["env", "$ENV", "input"] {
        assert!(Transform::compile(code).is_err(), "{code} compiled");
    }
    // `halt` would end the process in jaq's own runner: here it is an error of the program.
    assert!(matches!(run("halt", "{}"), Err(TransformError::Failed(_))));
    assert!(matches!(
        run(r#""bye" | halt_error"#, "{}"),
        Err(TransformError::Failed(_))
    ));
    // `debug` and `stderr` pass their input on without printing it.
    assert_eq!(run("debug | stderr | .a", r#"{"a":1}"#).as_deref(), Ok("1"));
}

#[test]
fn a_program_that_loops_is_stopped_at_its_time_limit() {
    for code in [
        "def f: f; f",
        "last(repeat(1))",
        "[range(1e18)] | length",
        "last(range(1e18))",
        "until(false; .)",
    ] {
        let started = Instant::now();
        let result = run(code, "{}");
        let took = started.elapsed();
        // A loop that nests the interpreter's iterators deeper on each turn may reach the
        // stack limit before the deadline: stopped either way.
        assert!(
            matches!(
                result,
                Err(TransformError::TimeLimit(_) | TransformError::TooDeep)
            ),
            "{code}: {result:?}"
        );
        assert!(took < Duration::from_millis(900), "{code} took {took:?}");
    }
}

#[test]
fn unbounded_recursion_is_stopped_before_the_stack_runs_out() {
    let result = run("def f: 1 + f; f", "{}");
    assert!(
        matches!(
            result,
            Err(TransformError::TooDeep | TransformError::TimeLimit(_))
        ),
        "{result:?}"
    );
}

#[test]
fn compile_errors_give_their_position() {
    let cases = [
        ("{email: .data.email", 1, "expected"),
        (".a |\n  foo(1)", 2, "undefined filter foo"),
        (".a | $x", 1, "undefined variable"),
    ];
    for (code, line, message) in cases {
        let error = Transform::compile(code).expect_err(code);
        assert_eq!(error.line, line, "{code}: {error}");
        assert!(error.message.contains(message), "{code}: {error}");
    }
    let error = Transform::compile(".a |\n  foo(1)").expect_err("undefined");
    assert_eq!((error.line, error.column), (2, 3), "{error}");
}
