fn main() -> std::process::ExitCode {
    oncehook::cli::main()
}
