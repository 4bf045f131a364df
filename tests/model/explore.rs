//! The checker: breadth-first over every reachable world (so a counterexample is a shortest
//! one), the safety properties in every world, then liveness: from every reachable world, a run
//! without further faults reaches a world where every order is finished and no lease or
//! evidence is held (faults stop eventually; fair moves keep happening).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::decide::Decider;
use crate::world::{Action, Config, Violation, World};

/// The rustc "Fx" hash: a multiply and a rotate per word. SipHash (the default) resists
/// hash flooding, which a model's own states do not need, and costs most of the search's time.
#[derive(Default)]
pub struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type Index = HashMap<World, u32, BuildHasherDefault<Fx>>;

pub struct Outcome {
    pub states: usize,
    pub depth: usize,
    /// Edges followed.
    pub edges: usize,
    pub violation: Option<(Violation, Vec<String>)>,
}

/// Explores `c` completely (the fault and operator budgets bound it); `cap` guards against
/// a model grown past what the caller expects.
pub fn explore(c: &Config, d: &Decider, cap: usize) -> Outcome {
    let init = World::new(c);
    let mut index: Index = Index::default();
    // For each world: its parent, the move from the parent, and its depth.
    let mut parent: Vec<(u32, Option<Action>, u16)> = Vec::new();
    // Fair edges, as (to, from), for the liveness pass.
    let mut fair: Vec<(u32, u32)> = Vec::new();
    let mut done: Vec<u32> = Vec::new();
    let mut queue: VecDeque<(u32, World)> = VecDeque::new();
    index.insert(init.clone(), 0);
    parent.push((0, None, 0));
    queue.push_back((0, init));
    let mut edges = 0;
    let mut depth = 0;
    while let Some((id, world)) = queue.pop_front() {
        if let Some(v) = world.check(c) {
            return Outcome {
                states: index.len(),
                depth,
                edges,
                violation: Some((v, trace(c, d, &index, &parent, id))),
            };
        }
        if world.done(c) {
            done.push(id);
        }
        let level = parent[id as usize].2;
        for m in world.moves(c, d) {
            edges += 1;
            let fresh = u32::try_from(index.len()).expect("fewer than 2^32 states");
            let next = match index.entry(m.to) {
                Entry::Occupied(e) => *e.get(),
                Entry::Vacant(e) => {
                    assert!(
                        (fresh as usize) < cap,
                        "the model has more than {cap} states: raise the cap or lower the bound"
                    );
                    queue.push_back((fresh, e.key().clone()));
                    e.insert(fresh);
                    parent.push((id, Some(m.action), level + 1));
                    depth = depth.max(usize::from(level) + 1);
                    fresh
                }
            };
            if !m.fault {
                fair.push((next, id));
            }
        }
    }
    // Liveness: backwards from the finished worlds over fair moves.
    let n = index.len();
    fair.sort_unstable();
    let mut start = vec![0usize; n + 1];
    for (to, _) in &fair {
        start[*to as usize + 1] += 1;
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut reaches = vec![false; n];
    let mut stack: Vec<u32> = done.clone();
    for &d in &done {
        reaches[d as usize] = true;
    }
    while let Some(to) = stack.pop() {
        for &(_, from) in &fair[start[to as usize]..start[to as usize + 1]] {
            if !reaches[from as usize] {
                reaches[from as usize] = true;
                stack.push(from);
            }
        }
    }
    let stranded = (0..n).find(|&i| !reaches[i]);
    Outcome {
        states: n,
        depth,
        edges,
        violation: stranded.map(|i| {
            let mut steps = trace(c, d, &index, &parent, i as u32);
            steps.push(
                "... and from here no run without further faults finishes every order and frees every lease"
                    .into(),
            );
            (Violation::Stranded, steps)
        }),
    }
}

/// The moves from the first world to world `id`, replayed so that each line can say what
/// happened.
fn trace(
    c: &Config,
    d: &Decider,
    index: &Index,
    parent: &[(u32, Option<Action>, u16)],
    id: u32,
) -> Vec<String> {
    let mut path = Vec::new();
    let mut at = id;
    while let (p, Some(action), _) = parent[at as usize] {
        path.push((at, action));
        at = p;
    }
    path.reverse();
    let mut world = World::new(c);
    let mut lines = Vec::new();
    for (i, (want, action)) in path.into_iter().enumerate() {
        let m = world
            .moves(c, d)
            .into_iter()
            .find(|m| m.action == action && index.get(&m.to) == Some(&want))
            .expect("the trace replays");
        world = m.to;
        lines.push(format!(
            "{:>2}. {action}{}",
            i + 1,
            if m.fault { "  [fault]" } else { "" }
        ));
        lines.push(format!("    {}", describe(c, &world)));
    }
    lines
}

/// The rows and ATRIP's view, in one line.
fn describe(c: &Config, w: &World) -> String {
    (0..c.orders)
        .map(|o| {
            let r = &w.live[o];
            format!(
                "order {o}: {} attempts={} not_sent={} permits={} paid={} lease={}; ATRIP charges={}{}",
                r.state,
                r.attempts,
                r.not_sent,
                r.permits,
                r.paid,
                match (r.owner, r.live) {
                    (Some(w), true) => format!("w{w}#{}", r.token),
                    (Some(w), false) => format!("w{w}#{} (run out)", r.token),
                    _ => "none".into(),
                },
                w.atrip[o].charges,
                if w.atrip[o].late { " (shows unpaid)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(" | ")
}
