//! The worker processes: the real binary with `run`, started, SIGKILLed, paused (SIGSTOP) and
//! resumed (SIGCONT), and killed whenever this program ends, however it ends. Slot 0 runs with
//! its wall clock skewed (`TICKETING_CLOCK_SKEW_MS`); a slot may run with the test-only
//! failpoint `stop-before-pay:P` (`TICKETING_FAILPOINTS`), which makes the process SIGSTOP
//! itself right before a pay.do leaves: [`Fleet::stopped_itself`] sees it in /proc. Every
//! process also gets the fleet's other failpoints (`panic`, `error`, `pause`, see
//! src/worker/failpoint.rs), if any.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::workers;

/// One worker position: a process at a time, replaced after each kill.
pub struct Slot {
    pub index: usize,
    child: Option<Child>,
    /// The current process's worker id (`chaos-wN-PID`), as it writes it into `lease_owner`,
    /// the events and the `x-ticketing-worker` header.
    pub id: String,
    pub generation: usize,
    /// Frozen: SIGSTOPped by us, or stopped by its failpoint and held by us. Never killed.
    pub paused: bool,
    /// `stop-before-pay:P` for the processes started in this slot from now on.
    pub failpoint: Option<f64>,
    /// The failpoint of the current process.
    pub running_failpoint: Option<f64>,
    /// This slot's processes run with their wall clock this many ms ahead (0: none).
    pub skew_ms: i64,
    pub log: PathBuf,
    /// When the process was found gone on its own (it is restarted a second later, so a
    /// worker that cannot start while the database restarts does not spin).
    down_since: Option<Instant>,
}

/// The worker processes of a run.
pub struct Fleet {
    exe: PathBuf,
    env: Vec<(String, String)>,
    pub dir: PathBuf,
    pub slots: Vec<Slot>,
    /// Processes that ended without being killed by us: `(worker id, exit status, log)`.
    pub unexpected_exits: Vec<(String, String, PathBuf)>,
    /// Failpoints every process gets beside its slot's `stop-before-pay` (the
    /// `TICKETING_FAILPOINTS` syntax; empty: none).
    pub failpoints: String,
    /// Every process that ended before the run did (SIGKILLed by us, or on its own), and when
    /// (this machine's clock): whatever it held in memory was lost then.
    pub ended: Vec<(String, chrono::DateTime<chrono::Utc>)>,
}

impl Fleet {
    /// `workers` slots; slot 0's processes run with their clock `skew_ms` ahead.
    pub fn new(
        exe: PathBuf,
        env: Vec<(String, String)>,
        dir: PathBuf,
        workers: usize,
        skew_ms: i64,
    ) -> Fleet {
        let slots = (0..workers)
            .map(|index| Slot {
                index,
                child: None,
                id: String::new(),
                generation: 0,
                paused: false,
                failpoint: None,
                running_failpoint: None,
                skew_ms: if index == 0 { skew_ms } else { 0 },
                log: PathBuf::new(),
                down_since: None,
            })
            .collect();
        Fleet {
            exe,
            env,
            dir,
            slots,
            unexpected_exits: Vec::new(),
            failpoints: String::new(),
            ended: Vec::new(),
        }
    }

    /// Starts a new process in `slot` (its previous one must be gone).
    pub fn start(&mut self, slot: usize) -> Result<(), String> {
        let s = &mut self.slots[slot];
        s.generation += 1;
        s.log = self
            .dir
            .join(format!("chaos-w{}-{}.log", s.index, s.generation));
        let mut hooks: Vec<(&str, String)> = Vec::new();
        if s.skew_ms != 0 {
            hooks.push(("TICKETING_CLOCK_SKEW_MS", s.skew_ms.to_string()));
        }
        let failpoints: Vec<String> = s
            .failpoint
            .map(|p| format!("stop-before-pay:{p}"))
            .into_iter()
            .chain((!self.failpoints.is_empty()).then(|| self.failpoints.clone()))
            .collect();
        if !failpoints.is_empty() {
            hooks.push(("TICKETING_FAILPOINTS", failpoints.join(",")));
        }
        let child = workers::command(
            "chaos-worker",
            &self.exe,
            &self.env,
            &format!("chaos-w{}", s.index),
            &self.dir,
            &s.log,
        )?
        .envs(hooks)
        .spawn()
        .map_err(|e| format!("starting worker {}: {e}", s.index))?;
        s.id = format!("chaos-w{}-{}", s.index, child.id());
        s.paused = false;
        s.running_failpoint = s.failpoint;
        s.down_since = None;
        s.child = Some(child);
        Ok(())
    }

    pub fn start_all(&mut self) -> Result<(), String> {
        (0..self.slots.len()).try_for_each(|i| self.start(i))
    }

    /// SIGKILLs the slot's process, reaps it, and starts a new one. Returns the killed id.
    pub fn kill_and_restart(&mut self, slot: usize) -> Result<String, String> {
        let s = &mut self.slots[slot];
        let killed = s.id.clone();
        if let Some(mut child) = s.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.ended.push((killed.clone(), chrono::Utc::now()));
        }
        self.start(slot)?;
        Ok(killed)
    }

    /// Slots with a running process that is not paused: the ones a kill may pick.
    pub fn killable(&self) -> Vec<usize> {
        self.slots
            .iter()
            .filter(|s| s.child.is_some() && !s.paused)
            .map(|s| s.index)
            .collect()
    }

    pub fn pid(&self, slot: usize) -> Option<u32> {
        self.slots[slot].child.as_ref().map(Child::id)
    }

    /// Whether the slot's process (not paused by us) is stopped, which only its failpoint
    /// does: /proc/PID/stat says `T`.
    pub fn stopped_itself(&self, slot: usize) -> bool {
        let s = &self.slots[slot];
        if s.paused || s.running_failpoint.is_none() {
            return false;
        }
        self.pid(slot)
            .is_some_and(|pid| proc_state(pid) == Some('T'))
    }

    /// Marks a process that stopped itself as held (frozen, not killable) until `resume`.
    pub fn hold(&mut self, slot: usize) {
        self.slots[slot].paused = true;
    }

    /// SIGSTOP: the process freezes mid-whatever, its leases run out.
    pub fn pause(&mut self, slot: usize) -> Result<(), String> {
        self.signal(slot, "-STOP")?;
        self.slots[slot].paused = true;
        Ok(())
    }

    pub fn resume(&mut self, slot: usize) -> Result<(), String> {
        self.signal(slot, "-CONT")?;
        self.slots[slot].paused = false;
        Ok(())
    }

    fn signal(&self, slot: usize, sig: &str) -> Result<(), String> {
        let pid = self.pid(slot).ok_or("no process in that slot")?;
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .map_err(|e| format!("kill {sig} {pid}: {e}"))?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("kill {sig} {pid} failed: {status}"))
    }

    /// Notices processes that ended on their own, records them, and starts replacements (a
    /// second after they were found gone).
    pub fn restart_exited(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        for slot in 0..self.slots.len() {
            let s = &mut self.slots[slot];
            let exited = match s.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Err(e)) => Some(format!("wait failed: {e}")),
                _ => None,
            };
            if let Some(status) = exited {
                s.child = None;
                s.down_since = Some(Instant::now());
                self.ended.push((s.id.clone(), chrono::Utc::now()));
                self.unexpected_exits
                    .push((s.id.clone(), status.clone(), s.log.clone()));
                notes.push(format!("worker {} exited on its own ({status})", s.id));
            }
            let s = &self.slots[slot];
            if s.down_since
                .is_some_and(|t| t.elapsed() >= Duration::from_secs(1))
            {
                if let Err(e) = self.start(slot) {
                    notes.push(e);
                }
            }
        }
        notes
    }

    /// Kills every process (SIGKILL works on stopped ones too) and reaps it.
    pub fn kill_all(&mut self) {
        for s in &mut self.slots {
            if let Some(mut child) = s.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Every log file written so far.
    pub fn logs(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect()
            })
            .unwrap_or_default();
        logs.sort();
        logs
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// The state letter of /proc/PID/stat (`R`, `S`, `T`, ...), when the process exists.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": comm may hold spaces and parentheses; the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The lines of `log` that contain `needle`.
pub fn grep(log: &Path, needle: &str) -> Vec<String> {
    std::fs::read_to_string(log)
        .map(|text| {
            text.lines()
                .filter(|l| l.contains(needle))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}
