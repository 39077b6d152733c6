//! The `oncehook` binary: argument parsing and every command live in the library (`cli`).

fn main() -> std::process::ExitCode {
    oncehook::cli::main()
}
