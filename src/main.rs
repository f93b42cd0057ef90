//! The `smtp-prober` binary: everything happens in [`smtp_prober::cli`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    smtp_prober::cli::main()
}
