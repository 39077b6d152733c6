//! The `oncehook` binary: argument parsing and every command live in the library (`cli`).

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    oncehook::cli::main()
}
