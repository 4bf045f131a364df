//! The world around the worker: a database whose commits have a durability, an ATRIP that
//! charges, a network that loses and redirects, worker processes that crash, pause and panic,
//! and an operator. Everything the worker *decides* is the product's code (`decide.rs` and the
//! `machine::{claim, durability, operator}` calls below); everything here is the environment,
//! written after the PostgreSQL statements (`jobs::apply`, `jobs::unleased`, the claim) it
//! stands for.

use ticketing_tracker::domain::State;
use ticketing_tracker::jobs::Effect;
use ticketing_tracker::machine::durability::{self, Level, Reading};
use ticketing_tracker::machine::{claim, operator, PayOutcome};

use crate::decide::{Decider, PayWire, QueryWire, Snap, Wire};

pub const MAXO: usize = 2;
pub const MAXW: usize = 2;

/// How the database keeps commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// One server. `sync_commit_off`: a DBA set `synchronous_commit = off` (the worker's
    /// statements pin it back on; the operator's do not). The server may crash and lose what
    /// was not flushed.
    Single { sync_commit_off: bool },
    /// A primary with an asynchronous streaming standby, which a failover promotes (and a new
    /// standby is cloned from the new primary).
    Async,
}

/// Old behaviours, each a switch: the model must find a counterexample with any one on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bugs {
    /// A 3xx to `pay.do` counted as "not sent".
    pub redirect_not_sent: bool,
    /// Intents taken as durable once committed on the primary (no standby check).
    pub durable_on_primary: bool,
    /// The worker's statements do not pin `synchronous_commit` (a DBA's `off` wins).
    pub unflushed_intent: bool,
    /// Evidence of payment dropped when the step's write found its lease lost.
    pub drop_evidence_on_lease_loss: bool,
    /// A batch's results matched to its writes by row id alone.
    pub match_by_id: bool,
    /// A panicking step keeps its lease (renewed by the heartbeat) and never ends.
    pub panic_keeps_lease: bool,
    /// Writes fenced by token only, not by the server the lease was taken on.
    pub no_server_fence: bool,
}

impl Bugs {
    pub const ALL: [(&'static str, Bugs); 7] = [
        (
            "a 3xx counted as not sent",
            Bugs {
                redirect_not_sent: true,
                ..Bugs::NONE
            },
        ),
        (
            "intents durable on the primary only (async failover)",
            Bugs {
                durable_on_primary: true,
                ..Bugs::NONE
            },
        ),
        (
            "an unflushed intent (crash with synchronous_commit=off)",
            Bugs {
                unflushed_intent: true,
                ..Bugs::NONE
            },
        ),
        (
            "an accepted answer dropped when the lease was lost",
            Bugs {
                drop_evidence_on_lease_loss: true,
                ..Bugs::NONE
            },
        ),
        (
            "batch answers matched by id alone",
            Bugs {
                match_by_id: true,
                ..Bugs::NONE
            },
        ),
        (
            "a panicking step that keeps its lease",
            Bugs {
                panic_keeps_lease: true,
                ..Bugs::NONE
            },
        ),
        (
            "writes fenced without the server (a failover re-issues tokens)",
            Bugs {
                no_server_fence: true,
                ..Bugs::NONE
            },
        ),
    ];

    pub const NONE: Bugs = Bugs {
        redirect_not_sent: false,
        durable_on_primary: false,
        unflushed_intent: false,
        drop_evidence_on_lease_loss: false,
        match_by_id: false,
        panic_keeps_lease: false,
        no_server_fence: false,
    };
}

#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub orders: usize,
    pub workers: usize,
    pub setup: Setup,
    /// ATRIP's duplicate guard: a second `pay.do` for a paid order answers 404 and charges
    /// nothing. Off: it charges again (the worst case; ATRIP does not document the guard).
    pub guard: bool,
    /// Faults in one run (crashes, pauses, lost answers, refusals, failovers, panics...).
    pub faults: u8,
    /// Operator actions in one run.
    pub ops: u8,
    pub bugs: Bugs,
    /// Assumption A7: an operator's `--repay` never races a frozen worker's old `pay.do`.
    pub operator_waits: bool,
}

/// A row as the table holds it (the columns the protocol reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Row {
    pub state: State,
    pub attempts: u8,
    pub not_sent: u8,
    pub permits: u8,
    pub paid: bool,
    pub last: Option<PayOutcome>,
    pub token: u8,
    pub owner: Option<u8>,
    /// `lease_expires_at` is in the future.
    pub live: bool,
    pub streak: u8,
    pub seen_once: bool,
    pub card: bool,
    /// `last_error` names a panic.
    pub panicked: bool,
    /// The phase has lasted past the settle time.
    pub aged: bool,
}

impl Row {
    fn new() -> Row {
        Row {
            state: State::Pending,
            attempts: 0,
            not_sent: 0,
            permits: 1,
            paid: false,
            last: None,
            token: 0,
            owner: None,
            live: false,
            streak: 0,
            seen_once: false,
            card: true,
            panicked: false,
            aged: false,
        }
    }

    pub fn sends(&self) -> u8 {
        self.attempts - self.not_sent
    }
}

/// ATRIP's side of one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Order {
    pub charges: u8,
    /// Charged, but the order query still shows it unpaid (a payment that settles late).
    pub late: bool,
    pub ticketed: bool,
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pc {
    /// Its intent is committed; the durability gate decides.
    Gate,
    /// Confirmed; `pay.do` is next.
    Send,
    /// An order query is next.
    Query,
    /// This write is next.
    Write(Effect),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Step {
    pub order: u8,
    pub token: u8,
    /// The server (timeline) the lease was taken on.
    pub epoch: u8,
    /// The row as this lease last wrote it (the fence) and read it.
    pub snap: Snap,
    /// An intent whose `pay.do` has not begun.
    pub intent_open: bool,
    /// The step holds evidence of payment.
    pub evidence: bool,
    pub pc: Pc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Keep {
    /// The epoch its write landed on, once it landed.
    pub landed_on: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Worker {
    pub step: Option<Step>,
    /// The keeper's evidence, per order (rule P3a).
    pub keep: [Option<Keep>; MAXO],
    /// Ghost: this process saw evidence of payment for the order.
    pub saw: [bool; MAXO],
    /// Ghost: the same, since the operator's last `--repay` of the order.
    pub saw_since_repay: [bool; MAXO],
    /// With `panic_keeps_lease`: the order whose lease a dead step keeps.
    pub stuck: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Violation {
    /// M1.
    DoubleCharge(u8),
    /// M2.
    PayAfterEvidence(u8),
    /// M3.
    EvidenceLost(u8),
    /// M4.
    CardInFinalRow(u8),
    /// M5. Found by the liveness pass, not by a transition.
    Stranded,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct World {
    pub live: [Row; MAXO],
    pub flushed: [Row; MAXO],
    pub standby: [Row; MAXO],
    pub epoch: u8,
    pub atrip: [Order; MAXO],
    pub workers: [Worker; MAXW],
    pub faults: u8,
    pub ops: u8,
    /// Ghosts for the properties.
    pub repays: [u8; MAXO],
    pub bad: Option<Violation>,
}

/// One labelled move of the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Claim { w: u8, o: u8 },
    GateOk { w: u8 },
    GateGiveBack { w: u8, why: &'static str },
    LeaseShortGiveBack { w: u8 },
    Pay { w: u8, charged: bool, wire: PayWire },
    Query { w: u8, wire: QueryWire },
    Write { w: u8, landed: bool },
    Panic { w: u8 },
    Crash { w: u8 },
    Pause { w: u8, o: u8 },
    LeaseRunsOut { o: u8 },
    KeeperWrites { w: u8, o: u8 },
    KeeperDone { w: u8, o: u8 },
    Flush,
    Replicate,
    DbCrash,
    Failover,
    Settle { o: u8 },
    Ticket { o: u8 },
    TimePasses { o: u8 },
    Retry { o: u8, repay: bool },
    Cancel { o: u8 },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Claim { w, o } => write!(f, "worker {w} claims order {o}"),
            Action::GateOk { w } => write!(f, "worker {w}: durability gate confirms the intent"),
            Action::GateGiveBack { w, why } => {
                write!(f, "worker {w}: gate refuses ({why}); row given back unsent")
            }
            Action::LeaseShortGiveBack { w } => {
                write!(
                    f,
                    "worker {w}: too little lease left; row given back unsent"
                )
            }
            Action::Pay { w, charged, wire } => write!(
                f,
                "worker {w} sends pay.do; ATRIP {}; the worker gets {wire:?}",
                if *charged {
                    "CHARGES"
                } else {
                    "charges nothing"
                }
            ),
            Action::Query { w, wire } => write!(f, "worker {w} queries the order: {wire:?}"),
            Action::Write { w, landed } => write!(
                f,
                "worker {w} writes its result: {}",
                if *landed {
                    "landed"
                } else {
                    "fence failed (lease lost)"
                }
            ),
            Action::Panic { w } => write!(f, "worker {w}: the step panics"),
            Action::Crash { w } => write!(f, "worker {w} crashes (and restarts empty)"),
            Action::Pause { w, o } => {
                write!(f, "worker {w} freezes past its lease on order {o}")
            }
            Action::LeaseRunsOut { o } => write!(f, "the orphaned lease on order {o} runs out"),
            Action::KeeperWrites { w, o } => {
                write!(f, "worker {w}'s keeper writes the evidence of order {o}")
            }
            Action::KeeperDone { w, o } => {
                write!(f, "worker {w}'s keeper: evidence of order {o} durable")
            }
            Action::Flush => write!(f, "the server flushes its WAL"),
            Action::Replicate => write!(f, "the standby catches up"),
            Action::DbCrash => write!(
                f,
                "PostgreSQL crashes and restarts (unflushed commits lost)"
            ),
            Action::Failover => write!(
                f,
                "the primary dies; the standby is promoted (unreplicated commits lost)"
            ),
            Action::Settle { o } => write!(f, "ATRIP's late payment of order {o} shows"),
            Action::Ticket { o } => write!(f, "ATRIP tickets order {o}"),
            Action::TimePasses { o } => write!(f, "time passes on order {o}'s phase"),
            Action::Retry { o, repay } => write!(
                f,
                "operator: retry{} order {o}",
                if *repay { " --repay" } else { "" }
            ),
            Action::Cancel { o } => write!(f, "operator: cancel order {o}"),
        }
    }
}

/// A successor: the move, whether it is a fault (excluded from the fair runs of the liveness
/// check), and the world after it.
pub struct Move {
    pub action: Action,
    pub fault: bool,
    pub to: World,
}

fn epoch_name(e: u8) -> String {
    format!("server/{e}")
}

impl World {
    pub fn new(c: &Config) -> World {
        let mut live = [Row::new(); MAXO];
        for row in live.iter_mut().skip(c.orders) {
            row.state = State::Cancelled;
            row.card = false;
        }
        World {
            live,
            flushed: live,
            standby: live,
            epoch: 0,
            atrip: [Order::default(); MAXO],
            workers: [Worker::default(); MAXW],
            faults: 0,
            ops: 0,
            repays: [0; MAXO],
            bad: None,
        }
    }

    /// The rows a failover or a crash would leave: where a commit is durable.
    fn durable(&self, c: &Config) -> &[Row; MAXO] {
        match c.setup {
            Setup::Single { .. } => &self.flushed,
            Setup::Async => &self.standby,
        }
    }

    /// All orders finished and no lease held by anyone.
    pub fn done(&self, c: &Config) -> bool {
        (0..c.orders).all(|o| {
            let r = &self.live[o];
            r.state.is_finished() && !r.live
        }) && self.workers[..c.workers]
            .iter()
            .all(|w| w.keep.iter().all(Option::is_none))
    }

    /// The properties that must hold in every state.
    pub fn check(&self, c: &Config) -> Option<Violation> {
        if let Some(v) = self.bad {
            return Some(v);
        }
        for o in 0..c.orders {
            if self.atrip[o].charges > 1 + self.repays[o] {
                return Some(Violation::DoubleCharge(o as u8));
            }
            let r = &self.live[o];
            let resolved = matches!(r.state, State::Ticketed | State::Failed | State::Cancelled)
                || (r.state == State::NeedsReview && r.sends() > 0)
                || r.paid;
            if r.card && resolved {
                return Some(Violation::CardInFinalRow(o as u8));
            }
            for w in &self.workers[..c.workers] {
                let holds = w.keep[o].is_some()
                    || w.step.is_some_and(|s| s.order as usize == o && s.evidence);
                if w.saw[o] && !holds && !self.durable(c)[o].paid {
                    return Some(Violation::EvidenceLost(o as u8));
                }
            }
        }
        None
    }

    fn fault(&mut self, c: &Config) -> bool {
        if self.faults >= c.faults {
            return false;
        }
        self.faults += 1;
        true
    }

    fn level(&self, c: &Config) -> Level {
        match c.setup {
            Setup::Async if !c.bugs.durable_on_primary => Level::Replicated,
            _ => Level::Local,
        }
    }

    /// A commit by a worker's statement: flushed unless a DBA's `off` is not pinned back on.
    fn committed(&mut self, c: &Config, pinned: bool) {
        let flushes = match c.setup {
            Setup::Single { sync_commit_off } => {
                !sync_commit_off || (pinned && !c.bugs.unflushed_intent)
            }
            Setup::Async => true,
        };
        if flushes {
            self.flushed = self.live;
        }
    }

    /// The fence of `jobs::apply` (rule W1).
    fn fence(&self, c: &Config, s: &Step) -> bool {
        let r = &self.live[s.order as usize];
        r.token == s.token
            && r.state == s.snap.state
            && r.attempts == s.snap.attempts
            && r.not_sent == s.snap.not_sent
            && (c.bugs.no_server_fence || s.epoch == self.epoch)
    }

    /// `jobs::apply`'s UPDATE, for one row.
    fn apply(&mut self, o: usize, e: &Effect) {
        let r = &mut self.live[o];
        r.state = e.to;
        if e.release {
            r.owner = None;
            r.live = false;
        }
        let intent = u8::from(e.intent);
        let not_sent = u8::from(e.not_sent);
        if e.evidence.is_some() {
            r.paid = true;
            r.permits = r
                .permits
                .min((r.attempts + intent).saturating_sub(r.not_sent + not_sent));
        }
        r.attempts += intent;
        r.not_sent += not_sent;
        r.last = if e.intent {
            None
        } else {
            e.pay_outcome.or(r.last)
        };
        if e.new_phase {
            r.aged = false;
        }
        if !e.give_back {
            r.streak = if e.unclear { r.streak + 1 } else { 0 };
            r.seen_once = e.tickets_seen;
            r.panicked = false;
        }
        if e.erase_card {
            r.card = false;
        }
    }

    fn snap(&self, c: &Config, o: usize) -> Snap {
        let r = &self.live[o];
        Snap {
            state: r.state,
            attempts: r.attempts,
            not_sent: r.not_sent,
            permits: r.permits,
            paid: r.paid,
            last: r.last,
            streak: r.streak,
            seen_once: r.seen_once,
            aged: r.aged,
            durable: self.may_pay(c),
        }
    }

    /// `Gate::may_pay`: a new intent could be made durable now (the standby is connected).
    fn may_pay(&self, _c: &Config) -> bool {
        true
    }

    /// The gate's verdict on a commit made on `epoch`, `have` saying whether the durable copy
    /// has it: `machine::durability::verdict`.
    fn verdict(&self, c: &Config, epoch: u8, have: bool) -> Option<Result<(), String>> {
        let committed_on = epoch_name(epoch);
        let now_on = epoch_name(self.epoch);
        let reading = Reading {
            server: &now_on,
            flushed: i64::from(have),
        };
        durability::verdict(self.level(c), &committed_on, Some(&reading), 1)
    }

    fn saw(&mut self, w: usize, o: usize) {
        self.workers[w].saw[o] = true;
        self.workers[w].saw_since_repay[o] = true;
    }

    /// Every move from here.
    pub fn moves(&self, c: &Config, d: &Decider) -> Vec<Move> {
        let mut out = Vec::new();
        let mut push = |action: Action, fault: bool, mut to: World| {
            to.canon();
            out.push(Move { action, fault, to })
        };
        let orders = c.orders;
        for wi in 0..c.workers {
            let w = &self.workers[wi];
            let wu = wi as u8;
            if w.stuck.is_none() {
                match w.step {
                    None => {
                        // Claim: machine::claim decides which rows a claim takes.
                        let wants = claim::Wants {
                            pay: self.may_pay(c),
                            follow: true,
                        };
                        for o in 0..orders {
                            let r = &self.live[o];
                            let shape = claim::Shape {
                                state: r.state,
                                due: true,
                                lease_live: r.live,
                            };
                            if !claim::claims(shape, wants) {
                                continue;
                            }
                            let mut n = self.clone();
                            let (to, intent) = claim::on_claim(r.state);
                            let row = &mut n.live[o];
                            row.token += 1;
                            row.owner = Some(wu);
                            row.live = true;
                            row.state = to;
                            if intent {
                                row.attempts += 1;
                                row.last = None;
                                row.aged = false;
                            }
                            n.committed(c, true);
                            let snap = n.snap(c, o);
                            n.workers[wi].step = Some(Step {
                                order: o as u8,
                                token: n.live[o].token,
                                epoch: n.epoch,
                                snap,
                                intent_open: intent,
                                evidence: false,
                                pc: if intent { Pc::Gate } else { Pc::Query },
                            });
                            push(Action::Claim { w: wu, o: o as u8 }, false, n);
                        }
                    }
                    Some(s) => self.step_moves(c, d, wi, s, &mut push),
                }
            }
            // The keeper (rule P3a).
            for o in 0..orders {
                let Some(k) = w.keep[o] else { continue };
                match k.landed_on {
                    Some(epoch) if epoch == self.epoch => {
                        if let Some(Ok(())) = self.verdict(c, epoch, self.durable(c)[o].paid) {
                            let mut n = self.clone();
                            n.workers[wi].keep[o] = None;
                            push(Action::KeeperDone { w: wu, o: o as u8 }, false, n);
                        }
                    }
                    _ => {
                        // Not written yet, or written on a server since replaced: write it.
                        let mut n = self.clone();
                        let r = &mut n.live[o];
                        if !r.paid {
                            r.paid = true;
                            r.attempts = r.attempts.max(1);
                            r.permits = r.permits.min(r.attempts - r.not_sent);
                            if matches!(r.state, State::Pending | State::Paying) {
                                r.state = State::Ticketing;
                                r.streak = 0;
                                r.aged = false;
                            }
                            r.card = false;
                        }
                        n.committed(c, true);
                        n.workers[wi].keep[o] = Some(Keep {
                            landed_on: Some(n.epoch),
                        });
                        push(Action::KeeperWrites { w: wu, o: o as u8 }, false, n);
                    }
                }
            }
            // A crash: the process and everything it held in memory is gone.
            if w.step.is_some() || w.keep.iter().any(Option::is_some) || w.stuck.is_some() {
                let mut n = self.clone();
                if n.fault(c) {
                    n.workers[wi] = Worker::default();
                    push(Action::Crash { w: wu }, true, n);
                }
            }
        }
        // Leases run out: the holder froze (a fault), or nobody holds it any more (fair).
        for o in 0..orders {
            let r = &self.live[o];
            if !r.live {
                continue;
            }
            let holder = r.owner.map(|w| &self.workers[w as usize]);
            let working = holder.is_some_and(|w| {
                w.step
                    .is_some_and(|s| s.order as usize == o && s.token == r.token)
            });
            let kept_alive = holder.is_some_and(|w| w.stuck == Some(o as u8));
            if kept_alive {
                continue;
            }
            let mut n = self.clone();
            // Time passes for every copy of the row alike.
            for copy in [&mut n.live, &mut n.flushed, &mut n.standby] {
                if copy[o].token == r.token && copy[o].owner == r.owner {
                    copy[o].live = false;
                }
            }
            if working {
                if n.fault(c) {
                    push(
                        Action::Pause {
                            w: r.owner.unwrap(),
                            o: o as u8,
                        },
                        true,
                        n,
                    );
                }
            } else {
                push(Action::LeaseRunsOut { o: o as u8 }, false, n);
            }
        }
        // The database.
        if self.flushed != self.live {
            let mut n = self.clone();
            n.flushed = n.live;
            push(Action::Flush, false, n);
        }
        match c.setup {
            Setup::Single { .. } => {
                let mut n = self.clone();
                if n.fault(c) {
                    n.live = n.flushed;
                    // Connections break: nothing else changes for the workers, whose next
                    // statement meets the restarted server.
                    push(Action::DbCrash, true, n);
                }
            }
            Setup::Async => {
                if self.standby != self.flushed {
                    let mut n = self.clone();
                    n.standby = n.flushed;
                    push(Action::Replicate, false, n);
                }
                let mut n = self.clone();
                if n.fault(c) {
                    n.live = n.standby;
                    n.flushed = n.standby;
                    n.epoch += 1;
                    push(Action::Failover, true, n);
                }
            }
        }
        // ATRIP and time.
        for o in 0..orders {
            let a = &self.atrip[o];
            if a.late {
                let mut n = self.clone();
                n.atrip[o].late = false;
                push(Action::Settle { o: o as u8 }, false, n);
            }
            if a.charges > 0 && !a.late && !a.ticketed {
                let mut n = self.clone();
                n.atrip[o].ticketed = true;
                push(Action::Ticket { o: o as u8 }, false, n);
            }
            let r = &self.live[o];
            if !r.aged && !r.state.is_finished() {
                let mut n = self.clone();
                for copy in [&mut n.live, &mut n.flushed, &mut n.standby] {
                    copy[o].aged = true;
                }
                push(Action::TimePasses { o: o as u8 }, false, n);
            }
        }
        // The operator.
        if self.ops < c.ops {
            for o in 0..orders {
                let r = &self.live[o];
                let view = operator::RowView {
                    state: r.state,
                    method: 3,
                    needs_card: true,
                    has_card: r.card,
                    paid: r.paid.then_some("evidence"),
                    last_pay_outcome: r.last,
                    sends: i32::from(r.sends()),
                    permits: i32::from(r.permits),
                    leased: r.owner.is_some(),
                    atrip_cancelled: false,
                };
                // --repay only after the operator saw ATRIP show the order unpaid, and only
                // while no pay.do of the order can still be on its way (assumption A7: no
                // worker is frozen between its lease check and its send).
                let shows_unpaid = self.atrip[o].charges == 0 || self.atrip[o].late;
                let sending = self.workers[..c.workers].iter().any(|w| {
                    w.step.is_some_and(|s| {
                        s.order as usize == o && matches!(s.pc, Pc::Gate | Pc::Send)
                    })
                });
                for repay in [false, true] {
                    if repay && (!shows_unpaid || (sending && c.operator_waits)) {
                        continue;
                    }
                    let card_given = !r.card;
                    let plan = operator::retry(&view, repay, card_given)
                        .or_else(|_| operator::retry(&view, repay, false));
                    let Ok(plan) = plan else { continue };
                    let mut n = self.clone();
                    n.ops += 1;
                    let row = &mut n.live[o];
                    row.state = plan.to;
                    row.permits = plan.permits as u8;
                    row.owner = None;
                    row.live = false;
                    row.streak = 0;
                    row.seen_once = false;
                    row.panicked = false;
                    row.aged = false;
                    if plan.may_pay && !row.card {
                        row.card = true;
                    }
                    n.committed(c, false);
                    // A --repay allows a second charge only when ATRIP had taken the first
                    // while showing the order unpaid (a late payment): one that follows a
                    // pay.do which charged nothing must still end with one charge.
                    if repay {
                        n.repays[o] += u8::from(n.atrip[o].charges > 0);
                        for w in &mut n.workers {
                            w.saw_since_repay[o] = false;
                        }
                    }
                    push(Action::Retry { o: o as u8, repay }, false, n);
                }
                if operator::may_cancel(&view) {
                    let mut n = self.clone();
                    n.ops += 1;
                    n.live[o].state = State::Cancelled;
                    n.live[o].card = false;
                    n.committed(c, false);
                    push(Action::Cancel { o: o as u8 }, false, n);
                }
            }
        }
        out
    }

    fn step_moves(
        &self,
        c: &Config,
        d: &Decider,
        wi: usize,
        s: Step,
        push: &mut impl FnMut(Action, bool, World),
    ) {
        let wu = wi as u8;
        let o = s.order as usize;
        // A panic, at any point of the step (rule W5).
        {
            let mut n = self.clone();
            if n.fault(c) {
                n.panicked(c, d, wi, s);
                push(Action::Panic { w: wu }, true, n);
            }
        }
        match s.pc {
            Pc::Gate => {
                let have = {
                    let r = &self.durable(c)[o];
                    r.token >= s.token && r.attempts >= s.snap.attempts
                };
                match self.verdict(c, s.epoch, have) {
                    Some(Ok(())) => {
                        // The lease check before the send: a frozen worker whose lease ran out
                        // may still send (it froze after the check), or may notice and give back.
                        let mut n = self.clone();
                        n.step_mut(wi).pc = Pc::Send;
                        push(Action::GateOk { w: wu }, false, n);
                    }
                    verdict => {
                        // Refused (committed on another server), or not yet: it waits (the
                        // standby may catch up) or the wait runs out. Either way: given back.
                        let why = match verdict {
                            Some(_) => "committed on another server",
                            None => "no standby flushed it within the wait",
                        };
                        push(
                            Action::GateGiveBack { w: wu, why },
                            false,
                            self.given_back(d, wi),
                        );
                    }
                }
            }
            Pc::Send => {
                if !self.live[o].live || self.live[o].token != s.token {
                    push(
                        Action::LeaseShortGiveBack { w: wu },
                        false,
                        self.given_back(d, wi),
                    );
                }
                self.send_moves(c, d, wi, s, push);
            }
            Pc::Query => {
                let a = self.atrip[o];
                let truth = if a.charges == 0 || a.late {
                    QueryWire::Unpaid
                } else if a.ticketed {
                    QueryWire::Ticketed
                } else {
                    QueryWire::Paid
                };
                for (wire, fault) in [
                    (truth, false),
                    (QueryWire::Lost, true),
                    (QueryWire::NotFound, true),
                ] {
                    let mut n = self.clone();
                    if fault && !n.fault(c) {
                        continue;
                    }
                    let decision = d.decide(Wire::Query(wire), &s.snap);
                    n.after_answer(wi, s, decision);
                    push(Action::Query { w: wu, wire }, fault, n);
                }
            }
            Pc::Write(e) => {
                let landed = self.fence(c, &s);
                let mut n = self.clone();
                if landed {
                    n.apply(o, &e);
                    n.committed(c, true);
                }
                // What the worker believes became of its write: matched by id and token, or
                // (the old bug) by id alone, which finds the row whatever its lease.
                let believed = landed || c.bugs.match_by_id;
                let step = n.step_mut(wi);
                if believed && e.intent {
                    // A new intent: the lease stays, the send is next (after the gate).
                    step.snap.attempts += 1;
                    step.snap.last = None;
                    step.snap.aged = false;
                    step.snap.state = e.to;
                    step.intent_open = true;
                    step.pc = Pc::Gate;
                    push(Action::Write { w: wu, landed }, false, n);
                    return;
                }
                // The step ends. Evidence it held stays with the keeper until a write of it
                // is durable (rule P3a).
                let evidence = step.evidence;
                n.workers[wi].step = None;
                if evidence {
                    let durable_now = landed
                        && matches!(n.verdict(c, n.epoch, n.durable(c)[o].paid), Some(Ok(())));
                    let keep = if landed {
                        !durable_now
                    } else {
                        !(c.bugs.drop_evidence_on_lease_loss || believed)
                    };
                    if keep {
                        n.workers[wi].keep[o] = Some(Keep {
                            landed_on: landed.then_some(n.epoch),
                        });
                    }
                }
                push(Action::Write { w: wu, landed }, false, n);
            }
        }
    }

    fn send_moves(
        &self,
        c: &Config,
        d: &Decider,
        wi: usize,
        s: Step,
        push: &mut impl FnMut(Action, bool, World),
    ) {
        let o = s.order as usize;
        let wu = wi as u8;
        // What ATRIP does if the request reaches it: charge, or (the guard) 404 on a paid order;
        // refusals are faults (a declined card, a balance).
        let a = self.atrip[o];
        let paid = a.charges > 0;
        let mut outcomes: Vec<(bool, PayWire, bool)> = Vec::new(); // (reached, wire, fault)
        if paid && c.guard {
            outcomes.push((true, PayWire::AlreadyPaid, false));
        } else {
            outcomes.push((true, PayWire::Accepted, false));
            outcomes.push((true, PayWire::Refused, true));
            outcomes.push((true, PayWire::PaymentError, true));
        }
        // The network: the answer lost after ATRIP acted; a redirect from something in
        // between, which may or may not have passed the request on; nothing sent at all.
        outcomes.push((true, PayWire::Lost, true));
        outcomes.push((true, PayWire::Redirect, true));
        outcomes.push((false, PayWire::Redirect, true));
        outcomes.push((false, PayWire::ConnectFailed, true));
        for (reached, wire, fault) in outcomes {
            let mut n = self.clone();
            if fault && !n.fault(c) {
                continue;
            }
            // No pay.do from a process that saw the order paid, nor for an intent recorded on
            // a row that said so (the table's CHECKs refuse that intent; this checks that the
            // worker never relies on them).
            if n.workers[wi].saw_since_repay[o] || s.snap.paid {
                n.bad = Some(Violation::PayAfterEvidence(o as u8));
            }
            // ATRIP acts on a request that reached it.
            let charged = reached
                && (!paid || !c.guard)
                && !matches!(
                    wire,
                    PayWire::Refused | PayWire::PaymentError | PayWire::AlreadyPaid
                );
            if charged {
                n.atrip[o].charges += 1;
            }
            let mut wire_seen = wire;
            if c.bugs.redirect_not_sent && wire == PayWire::Redirect {
                wire_seen = PayWire::ConnectFailed;
            }
            let decision = d.decide(Wire::Pay(wire_seen), &s.snap);
            // The step marked the send as begun: a panic from here counts it as sent.
            n.step_mut(wi).intent_open = false;
            n.after_answer(wi, s, decision);
            let action = Action::Pay {
                w: wu,
                charged,
                wire,
            };
            // A payment that settles late: charged, but the order query shows it unpaid.
            if charged && !paid {
                let mut late = n.clone();
                late.atrip[o].late = true;
                push(action, fault, late);
            }
            push(action, fault, n);
        }
    }

    fn after_answer(&mut self, wi: usize, s: Step, decision: crate::decide::Decision) {
        let o = s.order as usize;
        if decision.evidence {
            self.saw(wi, o);
        }
        let step = self.step_mut(wi);
        step.evidence |= decision.evidence;
        step.pc = Pc::Write(decision.write);
    }

    /// `Worker::after_panic` and `JobStore::review_panicked`.
    fn panicked(&mut self, c: &Config, d: &Decider, wi: usize, s: Step) {
        let o = s.order as usize;
        if c.bugs.panic_keeps_lease {
            self.workers[wi].step = None;
            self.workers[wi].stuck = Some(s.order);
            if s.evidence {
                self.workers[wi].keep[o] = Some(Keep { landed_on: None });
            }
            return;
        }
        self.workers[wi].step = None;
        if s.evidence {
            // The evidence is written and the order followed; the lease leaves the book.
            self.workers[wi].keep[o] = Some(Keep { landed_on: None });
            return;
        }
        let r = self.live[o];
        let fenced = r.token == s.token
            && r.owner == Some(wi as u8)
            && matches!(r.state, State::Paying | State::Ticketing)
            && s.epoch == self.epoch;
        if !fenced {
            return;
        }
        let to_review = r.panicked || r.streak + 1 >= d.max_error_streak();
        let not_sent = u8::from(s.intent_open);
        let row = &mut self.live[o];
        if to_review {
            row.state = State::NeedsReview;
            if row.attempts - row.not_sent - not_sent > 0 {
                row.card = false;
            }
        }
        row.owner = None;
        row.live = false;
        row.streak += 1;
        row.not_sent += not_sent;
        if s.intent_open {
            row.last = Some(PayOutcome::NotSent);
        }
        row.panicked = true;
        self.committed(c, true);
    }

    /// Renames lease tokens to the smallest numbers that keep their order: only comparisons
    /// between tokens decide anything, and without this a row that is claimed again and again
    /// would make every claim a new world.
    pub fn canon(&mut self) {
        for o in 0..MAXO {
            let mut seen: Vec<u8> = vec![
                self.live[o].token,
                self.flushed[o].token,
                self.standby[o].token,
            ];
            for w in &self.workers {
                if let Some(s) = w.step.filter(|s| s.order as usize == o) {
                    seen.push(s.token);
                }
            }
            seen.sort_unstable();
            seen.dedup();
            let rank = |t: u8| seen.iter().position(|x| *x == t).unwrap() as u8;
            self.live[o].token = rank(self.live[o].token);
            self.flushed[o].token = rank(self.flushed[o].token);
            self.standby[o].token = rank(self.standby[o].token);
            for w in &mut self.workers {
                if let Some(s) = w.step.as_mut().filter(|s| s.order as usize == o) {
                    s.token = rank(s.token);
                }
            }
        }
    }

    /// The step gives its row back before sending: its open intent counted as not sent.
    fn given_back(&self, d: &Decider, wi: usize) -> World {
        let mut n = self.clone();
        let step = n.step_mut(wi);
        step.pc = Pc::Write(d.give_back(State::Paying, true));
        step.intent_open = false;
        n
    }

    fn step_mut(&mut self, wi: usize) -> &mut Step {
        self.workers[wi].step.as_mut().expect("a step")
    }
}
