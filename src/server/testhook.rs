//! Test hooks (debug builds only; nothing in a release build): a test names
//! a directory in an environment variable, and the code holds at that point
//! until the test says go, so that a test can change a victim at an exact
//! moment (between the decision and the re-check, between the re-check and
//! the KILL) instead of hoping a race comes out its way.

/// With `$var=DIR`: writes `ids` to `DIR/held`, waits (at most 30 s) for
/// `DIR/go`, then removes both.
#[cfg(debug_assertions)]
pub fn hold(var: &str, ids: &[u64]) {
    use std::time::{Duration, Instant};
    let Some(dir) = std::env::var_os(var) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    let go = dir.join("go");
    if std::fs::write(dir.join("held"), ids.join(",")).is_err() {
        return;
    }
    let end = Instant::now() + Duration::from_secs(30);
    while !go.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(&go);
    let _ = std::fs::remove_file(dir.join("held"));
}

#[cfg(not(debug_assertions))]
pub fn hold(_: &str, _: &[u64]) {}
