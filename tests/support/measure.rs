//! Wall time and heap peak of in-process work, for the hostile-server tests' ceilings.

use std::time::{Duration, Instant};

/// Runs `work` on a current-thread runtime of its own: its result, wall time and heap peak
/// (allocation-counter counts per thread, so tests running in parallel do not disturb it).
pub fn measured<T>(work: impl std::future::Future<Output = T>) -> (T, Duration, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut out = None;
    let began = Instant::now();
    let info = allocation_counter::measure(|| out = Some(rt.block_on(work)));
    (out.unwrap(), began.elapsed(), info.bytes_max)
}
