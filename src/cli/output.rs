//! What the commands print on stdout. A closed pipe (`oncehook dlq tail | head -3`) means the
//! reader has what it wanted: the command ends there, quietly, with exit 0, as `head` meant.
//! Any other write error (a full disk under `> file`) is reported and exits 1.

use std::fmt;
use std::io::Write;

/// `println!` that ends the command quietly when stdout is a closed pipe.
macro_rules! outln {
    () => {
        $crate::cli::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// One line on stdout.
pub fn line(args: fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        stop(&e);
    }
}

/// Text as it is (an API answer), ending with one newline.
pub fn text(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let newline: &[u8] = if text.ends_with('\n') { b"" } else { b"\n" };
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.write_all(newline))
        .and_then(|()| stdout.flush())
    {
        stop(&e);
    }
}

fn stop(error: &std::io::Error) -> ! {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write the output: {error}");
    std::process::exit(1);
}

/// `println!` elsewhere (a command that does not print through [`line`]) panics on a closed
/// pipe with std's "failed printing to stdout" message: that one panic ends the process like
/// [`line`] does; every other panic goes to the default hook.
pub fn exit_quietly_when_stdout_closes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout")
            && message.to_ascii_lowercase().contains("broken pipe")
        {
            std::process::exit(0);
        }
        default(info);
    }));
}
