//! The `smtp-prober` binary: everything happens in [`smtp_prober::cli`].
#![forbid(unsafe_code)]

/// jemalloc rather than glibc's allocator: with 10,000 scheduled targets the exporter keeps
/// long-lived results between short-lived probe buffers, and glibc's arenas hold on to the gaps
/// (README *Scale and cost* has the figures of both).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    smtp_prober::cli::main()
}
