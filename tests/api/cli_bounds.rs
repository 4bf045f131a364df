//! What the command line reads is bounded, through the real binary: an endless stdin and a
//! file far past the bound end at once with an error naming the flag and the bound, having
//! read at most a little past it, and the process stays small.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ticketing_tracker::input::{MAX_CARD_JSON_BYTES, MAX_ORDER_JSON_BYTES};

use crate::cli::std_command;
use crate::support::db::TestDb;

/// A feeder stops here, so that a binary reading without a bound fails the test rather than
/// the machine.
const FEED_STOP: u64 = 256 << 20;

/// What a bounded reader may take from a pipe: the bound, stdin's 8 KiB buffer, and the
/// pipe's own 64 KiB (Linux's default), with room to spare.
const PIPE_SLACK: u64 = 256 * 1024;

/// The peak RSS a run of the binary that read within its bound stays under. Measured (debug
/// build): 22-23 MiB whatever the input; 277 MiB before the bounds, having read 256 MiB.
const SMALL_RSS_KIB: i64 = 48 * 1024;

/// How a run of the binary ended.
#[derive(Debug)]
struct Ended {
    code: i32,
    stderr: String,
    /// Peak resident memory of the process, in KiB (`getrusage`'s `ru_maxrss`).
    max_rss_kib: i64,
    /// This test process's own peak (`VmHWM`) once the child was reaped. Linux hands the
    /// peak of the image a process replaced at `exec` on to the new one, and std spawns with
    /// `CLONE_VM` (the child runs in this process's memory until it execs), so the child's
    /// `ru_maxrss` is at least this process's peak at the time: it only tells the child's
    /// own growth when it is above that.
    parent_peak_kib: i64,
    /// Bytes the process (and the pipe before it) took from the feeder.
    fed: u64,
    took: Duration,
}

/// Runs the binary with `args`, stdin fed `byte` endlessly (until [`FEED_STOP`]) when given,
/// and reaps it itself to read its peak RSS.
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped with wait4, which std's Child cannot be told about"
)]
async fn run(args: &[&str], database_url: Option<&str>, byte: Option<u8>) -> Ended {
    let mut cmd = std_command(database_url);
    cmd.args(args);
    if byte.is_some() {
        cmd.stdin(Stdio::piped());
    }
    cmd.stdout(Stdio::null());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("the binary starts");
    let pid = i32::try_from(child.id()).unwrap();
    let feeder = child.stdin.take().map(|mut pipe| {
        let byte = byte.unwrap();
        std::thread::spawn(move || {
            let chunk = vec![byte; 64 * 1024];
            let mut fed = 0u64;
            while fed < FEED_STOP {
                match pipe.write(&chunk) {
                    Ok(n) if n > 0 => fed += n as u64,
                    // The reader is gone (EPIPE: the test binary ignores SIGPIPE).
                    _ => break,
                }
            }
            fed
        })
    });
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let reaped = tokio::task::spawn_blocking(move || {
        let mut status = 0;
        // SAFETY: rusage is plain integers, for which all zeroes is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a plain wait4 on our own child, with valid pointers to locals.
        let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(got, pid, "wait4: {}", std::io::Error::last_os_error());
        (status, usage.ru_maxrss)
    });
    let (status, max_rss_kib) = match tokio::time::timeout(Duration::from_secs(60), reaped).await {
        Ok(reaped) => reaped.unwrap(),
        Err(_) => {
            // SAFETY: kill on our own child, still unreaped, so the pid is still ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{args:?} did not end within 60 s");
        }
    };
    let took = started.elapsed();
    assert!(libc::WIFEXITED(status), "{args:?} was killed: {status}");
    Ended {
        code: libc::WEXITSTATUS(status),
        stderr: reader.join().unwrap(),
        max_rss_kib,
        parent_peak_kib: own_peak_kib(),
        fed: feeder.map_or(0, |f| f.join().unwrap()),
        took,
    }
}

/// This process's peak resident memory (`VmHWM` in /proc/self/status), in KiB.
fn own_peak_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[track_caller]
fn assert_refused_at_the_bound(ended: &Ended, says: &[&str]) {
    assert_eq!(ended.code, 1, "{ended:#?}");
    for s in says {
        assert!(ended.stderr.contains(s), "{s:?} in {ended:#?}");
    }
    assert!(!ended.stderr.contains("panicked"), "{ended:#?}");
    // Reading what it was fed (up to 256 MiB) would take the child far past both this
    // process's peak and SMALL_RSS_KIB; either one alone can be the floor of its ru_maxrss
    // (see `Ended::parent_peak_kib`).
    assert!(
        ended.parent_peak_kib + SMALL_RSS_KIB / 2 < 200 * 1024,
        "this test process's own peak hides the child's: {ended:#?}"
    );
    let bound = SMALL_RSS_KIB.max(ended.parent_peak_kib + SMALL_RSS_KIB / 2);
    assert!(
        ended.max_rss_kib < bound,
        "the process grew to {} KiB (bound {bound} KiB): {ended:#?}",
        ended.max_rss_kib
    );
    assert!(
        ended.took < Duration::from_secs(20),
        "a loaded machine, not a timing claim: {ended:#?}"
    );
}

#[tokio::test]
async fn an_endless_stdin_ends_each_reader_at_its_bound_and_the_process_stays_small() {
    let db = TestDb::new().await;
    let card = MAX_CARD_JSON_BYTES.to_string();
    let order = MAX_ORDER_JSON_BYTES.to_string();
    let cases: [(&[&str], Option<&str>, &str, &str); 4] = [
        (
            &[
                "enqueue",
                "--order-no",
                "TESTA20990101000000001",
                "--method",
                "3",
                "--card-file",
                "-",
            ],
            Some(card.as_str()),
            "--card-file - (stdin)",
            "the card JSON",
        ),
        (
            &["enqueue", "--from-json", "-"],
            Some(order.as_str()),
            "--from-json - (stdin)",
            "the order JSON",
        ),
        (
            &["retry", "TESTA20990101000000001", "--card-file", "-"],
            Some(card.as_str()),
            "--card-file - (stdin)",
            "the card JSON",
        ),
        (
            &["console-hash", "--iterations", "1000"],
            None,
            "console-hash: the password on stdin",
            "longer than 1024 bytes",
        ),
    ];
    for (args, bound, flag, what) in cases {
        // `yes` without its newlines: console-hash reads a line, and a line must not end.
        let ended = run(args, Some(&db.url()), Some(b'y')).await;
        let mut says = vec![flag, what];
        if let Some(bound) = bound {
            says.push(bound);
        }
        assert_refused_at_the_bound(&ended, &says);
        assert!(
            ended.fed < bound.map_or(1024, |b| b.parse().unwrap()) + PIPE_SLACK,
            "{args:?} took {} bytes of an endless stdin: {ended:#?}",
            ended.fed
        );
    }
}

#[tokio::test]
async fn a_file_far_past_the_bound_is_refused_without_being_read_whole() {
    let db = TestDb::new().await;
    // Sparse: 256 MiB of zeros on no disk, which a reader without a bound would hold whole.
    let path = std::env::temp_dir().join(format!(
        "tt-cli-huge-{}-{:016x}.json",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::File::create(&path)
        .unwrap()
        .set_len(FEED_STOP)
        .unwrap();
    let file = path.to_str().unwrap();
    for (args, says) in [
        (
            vec![
                "enqueue",
                "--order-no",
                "TESTA20990101000000001",
                "--method",
                "3",
                "--card-file",
                file,
            ],
            ["--card-file", "the card JSON is longer than 65536 bytes"],
        ),
        (
            vec!["enqueue", "--from-json", file],
            ["--from-json", "the order JSON is longer than 131072 bytes"],
        ),
    ] {
        let ended = run(&args, Some(&db.url()), None).await;
        assert_refused_at_the_bound(&ended, &says);
        assert!(ended.stderr.contains(file), "{ended:#?}");
    }
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn a_card_within_its_bound_is_still_read() {
    // A card file of exactly the bound (padded with spaces, which JSON allows) is read whole
    // and judged as a card: the bound refuses nothing a card can be.
    let db = TestDb::new().await;
    let mut card = crate::support::app::vcc_card().to_string().into_bytes();
    card.resize(usize::try_from(MAX_CARD_JSON_BYTES).unwrap(), b' ');
    let path = std::env::temp_dir().join(format!(
        "tt-cli-card-{}-{:016x}.json",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::write(&path, &card).unwrap();
    let ended = run(
        &[
            "enqueue",
            "--order-no",
            "TESTA20990101000000002",
            "--method",
            "3",
            "--card-file",
            path.to_str().unwrap(),
        ],
        Some(&db.url()),
        None,
    )
    .await;
    std::fs::remove_file(&path).unwrap();
    assert_eq!(ended.code, 0, "{ended:#?}");
    let state: String =
        sqlx::query_scalar("SELECT state::text FROM ticketing_jobs WHERE order_no = $1")
            .bind("TESTA20990101000000002")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(state, "pending");
}
