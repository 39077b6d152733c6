//! A route's `transform`: a jq program (the jaq interpreter) compiled once when the runtime is
//! built, and run at send time on the stored JSON body. Its one output is the body delivered.
//!
//! jaq has no interruption of its own, so each evaluation runs on a thread of its own with a
//! budget the interpreter consults on every step: jaq asks its run-time data for the program's
//! look-up table before it evaluates each term, and `RunData::lut` is that hook. Past the
//! deadline, or when the evaluation has used most of its thread's stack (unbounded recursion),
//! the hook unwinds the evaluation thread (`resume_unwind`, which skips the panic hook), the
//! thread ends and the delivery fails with reason `transform`. `range`, the one native filter
//! that yields unboundedly without evaluating terms, is replaced by a version that consults the
//! budget per value. `env` (the node's environment holds its secrets), `input`s, and the
//! filters that print to the node's standard error are not offered; `halt` is an error.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jaq_core::data::HasLut;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::native::{Fun, v};
use jaq_core::{Ctx, DataT, Exn, Lut, Native, ValX, ValXs, Vars};
use jaq_json::Val;

use crate::domain::condition::FieldCondition;

/// How long one evaluation may run (SPEC: 100 ms).
pub const TIME_LIMIT: Duration = Duration::from_millis(100);
/// The stack of an evaluation thread; only what is touched is ever committed.
const STACK_SIZE: usize = 64 * 1024 * 1024;
/// The stack an evaluation may use before it is stopped: the rest is the margin for the frames
/// between two checks and for unwinding.
const STACK_LIMIT: usize = 48 * 1024 * 1024;
/// The clock is read once per this many steps.
const STEPS_PER_CLOCK_READ: u32 = 1024;
/// How much longer than its limit the caller waits for an evaluation thread before giving up on
/// it (the budget stops evaluations itself; this only guards against a native filter that runs
/// long between two steps).
const ABANDON_AFTER: Duration = Duration::from_secs(2);

/// A compiled `transform` program.
pub struct Transform {
    source: Arc<str>,
    filter: Arc<jaq_core::compile::Filter<Native<Program>>>,
    time_limit: Duration,
}

impl fmt::Debug for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transform")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Which `transform` applies to a delivery. A delivery is one per event and destination: a
/// destination named by several routes of a source gets the first route whose `when` matches
/// (as intake chose it), so the same choice is made again here from the stored body.
#[derive(Debug, Default)]
pub struct RouteTransforms {
    /// (source, destination) → that source's routes naming the destination, in config order;
    /// only pairs where one of them has a transform.
    pairs: HashMap<(Arc<str>, Arc<str>), RouteChoice>,
}

/// The routes of one source that name one destination.
#[derive(Debug, Default)]
pub struct RouteChoice {
    routes: Vec<(Option<FieldCondition>, Option<Arc<Transform>>)>,
}

impl RouteTransforms {
    /// Adds a route of `source` to `destinations`, with its `when` and its transform.
    pub fn add_route(
        &mut self,
        source: &Arc<str>,
        destinations: &[Arc<str>],
        when: Option<FieldCondition>,
        transform: Option<Arc<Transform>>,
    ) {
        for destination in destinations {
            self.pairs
                .entry((Arc::clone(source), Arc::clone(destination)))
                .or_default()
                .routes
                .push((when.clone(), transform.clone()));
        }
    }

    /// Drops the pairs none of whose routes transforms: their bodies go as stored.
    pub fn finish(mut self) -> RouteTransforms {
        self.pairs
            .retain(|_, choice| choice.routes.iter().any(|(_, t)| t.is_some()));
        self
    }

    /// The routes to choose from for a delivery, when any of them transforms.
    pub fn find(&self, source: &str, destination: &str) -> Option<&RouteChoice> {
        if self.pairs.is_empty() {
            return None;
        }
        self.pairs.get(&(Arc::from(source), Arc::from(destination)))
    }
}

impl RouteChoice {
    /// The transform of the first route whose `when` matches `body`.
    pub fn pick(&self, body: Option<&serde_json::Value>) -> Option<&Transform> {
        self.routes
            .iter()
            .find(|(when, _)| when.as_ref().is_none_or(|w| w.matches(body)))
            .and_then(|(_, transform)| transform.as_deref())
    }
}

/// Why a transform did not give a body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the program failed: {0}")]
    Failed(String),
    #[error("the program yielded no value")]
    NoValue,
    #[error("the program yielded more than one value")]
    SeveralValues,
    #[error("the program ran longer than {} ms", .0.as_millis())]
    TimeLimit(Duration),
    #[error("the program recursed too deeply")]
    TooDeep,
    #[error("the program's value is not JSON: {0}")]
    NotJsonOutput(String),
    #[error("the program could not be run: {0}")]
    Unavailable(String),
}

/// A program that does not compile: what is wrong and where (line and column from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl Transform {
    /// Compiles `code`; the first error found, with its position.
    pub fn compile(code: &str) -> Result<Transform, CompileError> {
        Self::compile_with_limit(code, TIME_LIMIT)
    }

    fn compile_with_limit(code: &str, time_limit: Duration) -> Result<Transform, CompileError> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|errors| load_error(code, errors))?;
        let filter = jaq_core::Compiler::default()
            .with_funs(functions())
            .compile(modules)
            .map_err(|errors| {
                let (at, message) = errors
                    .into_iter()
                    .flat_map(|(_, undefined)| undefined)
                    .map(|(name, kind)| (name, format!("undefined {} {name}", kind.as_str())))
                    .next()
                    .unwrap_or(("", "the program does not compile".to_owned()));
                position(code, at, message)
            })?;
        Ok(Transform {
            source: Arc::from(code),
            filter: Arc::new(filter),
            time_limit,
        })
    }

    /// The program's text, as configured.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Runs the program on `body` on a thread of its own, within the time limit: the one value
    /// it yields, as JSON bytes.
    pub async fn apply(&self, body: &serde_json::Value) -> Result<bytes::Bytes, TransformError> {
        let input = body.clone();
        let filter = Arc::clone(&self.filter);
        let time_limit = self.time_limit;
        let (send, receive) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("oncehook-transform".into())
            .stack_size(STACK_SIZE)
            .spawn(move || {
                let _ = send.send(evaluate(&filter, input, time_limit));
            })
            .map_err(|e| TransformError::Unavailable(e.to_string()))?;
        match tokio::time::timeout(time_limit + ABANDON_AFTER, receive).await {
            Ok(Ok(result)) => result.map(bytes::Bytes::from),
            Ok(Err(_)) => Err(TransformError::Unavailable(
                "the evaluation thread ended without an answer".into(),
            )),
            Err(_) => Err(TransformError::TimeLimit(time_limit)),
        }
    }
}

/// The marker type of the data programs run on: JSON values, and the budget beside the table.
pub struct Program;

impl DataT for Program {
    type V<'a> = Val;
    type Data<'a> = RunData<'a>;
}

/// What an evaluation carries: the program's table and its budget.
#[derive(Clone)]
pub struct RunData<'a> {
    lut: &'a Lut<Program>,
    budget: &'a Budget,
}

impl<'a> HasLut<'a, Program> for RunData<'a> {
    fn lut(&self) -> &'a Lut<Program> {
        // jaq asks for the table before every term it evaluates: the step hook.
        self.budget.step();
        self.lut
    }
}

/// Why an evaluation was stopped, carried by the unwinding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    TimeLimit,
    TooDeep,
}

/// The limits of one evaluation, on its own thread.
struct Budget {
    deadline: Instant,
    steps: Cell<u32>,
    /// The address of a local of the evaluation's first frame: the stack grows down from here.
    stack_base: usize,
}

impl Budget {
    fn step(&self) {
        let here = 0u8;
        let depth = self
            .stack_base
            .saturating_sub(std::ptr::addr_of!(here) as usize);
        if depth > STACK_LIMIT {
            std::panic::resume_unwind(Box::new(Stopped::TooDeep));
        }
        let steps = self.steps.get().wrapping_add(1);
        self.steps.set(steps);
        if steps.is_multiple_of(STEPS_PER_CLOCK_READ) && Instant::now() >= self.deadline {
            std::panic::resume_unwind(Box::new(Stopped::TimeLimit));
        }
    }
}

/// Runs the program on its thread: exactly one value, as JSON text.
fn evaluate(
    filter: &jaq_core::compile::Filter<Native<Program>>,
    input: serde_json::Value,
    time_limit: Duration,
) -> Result<Vec<u8>, TransformError> {
    let base = 0u8;
    let budget = Budget {
        deadline: Instant::now() + time_limit,
        steps: Cell::new(0),
        stack_base: std::ptr::addr_of!(base) as usize,
    };
    let run = std::panic::AssertUnwindSafe(|| -> Result<Vec<u8>, TransformError> {
        let input = serde_json::from_value::<Val>(input)
            .map_err(|e| TransformError::NotJson(e.to_string()))?;
        let data = RunData {
            lut: &filter.lut,
            budget: &budget,
        };
        let ctx = Ctx::<Program>::new(data, Vars::new([]));
        // Not `jaq_core::unwrap_valr`: it ends the process on `halt`.
        let mut outputs = filter.id.run((ctx, input)).map(|output| {
            output.map_err(|exception| match exception.get_err() {
                Ok(error) => error.to_string(),
                Err(_) => "the program called halt".to_owned(),
            })
        });
        let value = match outputs.next() {
            None => return Err(TransformError::NoValue),
            Some(Err(e)) => return Err(TransformError::Failed(e)),
            Some(Ok(value)) => value,
        };
        match outputs.next() {
            None => {}
            Some(Err(e)) => return Err(TransformError::Failed(e)),
            Some(Ok(_)) => return Err(TransformError::SeveralValues),
        }
        // jaq writes JSON text; serde_json reads it back to refuse what JSON cannot hold (a
        // byte string, NaN) and to write the body the way the rest of the node does.
        let text = value.to_string();
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| TransformError::NotJsonOutput(e.to_string()))?;
        serde_json::to_vec(&json).map_err(|e| TransformError::NotJsonOutput(e.to_string()))
    });
    match std::panic::catch_unwind(run) {
        Ok(result) => result,
        Err(payload) => match payload.downcast_ref::<Stopped>() {
            Some(Stopped::TimeLimit) => Err(TransformError::TimeLimit(time_limit)),
            Some(Stopped::TooDeep) => Err(TransformError::TooDeep),
            None => Err(TransformError::Failed(
                "the interpreter stopped unexpectedly".into(),
            )),
        },
    }
}

/// The native filters programs may call: jaq's, less those that reach outside the evaluation.
fn functions() -> impl Iterator<Item = Fun<Program>> {
    const LEFT_OUT: &[&str] = &["range", "env", "stderr_empty", "debug_empty"];
    let quiet: [Fun<Program>; 2] = [
        (
            "stderr_empty",
            v(0),
            Native::new(|_| Box::new(std::iter::empty())),
        ),
        (
            "debug_empty",
            v(0),
            Native::new(|_| Box::new(std::iter::empty())),
        ),
    ];
    jaq_core::funs::<Program>()
        .chain(jaq_std::funs::<Program>())
        .chain(jaq_json::funs::<Program>())
        .filter(|(name, ..)| !LEFT_OUT.contains(name))
        .chain(quiet)
        .chain([("range", v(3), Native::<Program>::new(range))])
}

/// `range($from; $to; $by)` as jaq has it natively, consulting the budget per value.
fn range<'a>(mut cv: jaq_core::Cv<'a, Program>) -> ValXs<'a, <Program as DataT>::V<'a>> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let by = cv.0.pop_var();
    let to = cv.0.pop_var();
    let from = cv.0.pop_var();
    let budget = cv.0.data().budget;
    let direction = by.partial_cmp(&Val::from(0usize)).unwrap_or(Equal);
    let mut next: ValX<Val> = Ok(from);
    Box::new(std::iter::from_fn(move || {
        budget.step();
        match next.clone() {
            Ok(x) => match direction {
                Greater => x < to,
                Less => x > to,
                Equal => x != to,
            }
            .then(|| std::mem::replace(&mut next, (x + by.clone()).map_err(Exn::from))),
            error @ Err(_) => {
                next = Ok(to.clone());
                Some(error)
            }
        }
    }))
}

/// The first load error, with its position.
fn load_error(code: &str, errors: jaq_core::load::Errors<&str, ()>) -> CompileError {
    use jaq_core::load::Error;
    for (_, error) in errors {
        match error {
            Error::Io(list) => {
                if let Some((at, message)) = list.into_iter().next() {
                    return position(code, at, message);
                }
            }
            Error::Lex(list) => {
                if let Some((expected, at)) = list.into_iter().next() {
                    return position(code, at, format!("expected {}", expected.as_str()));
                }
            }
            Error::Parse(list) => {
                if let Some((expected, at)) = list.into_iter().next() {
                    let found = if at.is_empty() {
                        "the end of the program".to_owned()
                    } else {
                        format!("{at:?}")
                    };
                    return position(
                        code,
                        at,
                        format!("expected {}, found {found}", expected.as_str()),
                    );
                }
            }
        }
    }
    CompileError {
        line: 1,
        column: 1,
        message: "the program does not parse".into(),
    }
}

/// `message` at the place of `at` (a slice of `code`, or any other text: then the start).
fn position(code: &str, at: &str, message: String) -> CompileError {
    let start = at.as_ptr() as usize;
    let base = code.as_ptr() as usize;
    let offset = if start >= base && start <= base + code.len() {
        start - base
    } else {
        0
    };
    let mut offset = offset.min(code.len());
    while !code.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &code[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    CompileError {
        line,
        column,
        message,
    }
}

#[cfg(test)]
mod tests;
