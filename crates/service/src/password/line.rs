//! The line in front of the hashing threads, shared fairly between the
//! sources asking: each source (an address) has its own queue, and the
//! threads take the next job from the source served least among the last
//! jobs (of several, in turn), so sources flooding at full speed share the
//! threads evenly and a source not heard from lately goes first: a flood
//! from many addresses delays a login from another by a few hashes, never by
//! the whole line. Jobs from sources known to the account
//! (an address that gave its password before) wait in a lane of their own,
//! served in alternation with the rest, so a flood of strangers gets no more
//! than half the threads while they wait.
//!
//! The line holds at most `cap` waiting jobs in all (plus one per idle
//! thread). When it is full, a newcomer takes the place of the newest job of
//! the stranger that uses the line most (the jobs it has waiting plus those
//! served among the last few), if that source uses it more than the
//! newcomer; otherwise the newcomer is refused. A known source takes a
//! stranger's place in any case, and its own place is never taken, but the
//! known lane holds at most half the line (past that, its jobs wait with the
//! strangers'). So memory stays bounded, a source that has not been heard
//! from lately always gets a place, sources flooding at full speed only take
//! places from each other, and one that proved the password before is not
//! levelled with them for having been served.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Which lane a job waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// A source that gave this account's password before.
    Known,
    Others,
}

struct Queues<K, J> {
    jobs: HashMap<K, VecDeque<J>>,
    held: usize,
    /// Sources with a job waiting, in the order they are served.
    turn: VecDeque<K>,
}

impl<K: Hash + Eq + Clone, J> Queues<K, J> {
    fn new() -> Self {
        Queues {
            jobs: HashMap::new(),
            held: 0,
            turn: VecDeque::new(),
        }
    }

    fn held_by(&self, source: &K) -> usize {
        self.jobs.get(source).map_or(0, VecDeque::len)
    }

    fn push(&mut self, source: K, job: J) {
        let queue = self.jobs.entry(source.clone()).or_default();
        if queue.is_empty() {
            self.turn.push_back(source);
        }
        queue.push_back(job);
        self.held += 1;
    }

    /// The oldest job of the source served least lately (`served`; of
    /// several, the first in turn), with its source; the source goes to the
    /// back of the turn.
    fn pop(&mut self, served: &HashMap<K, usize>) -> Option<(J, K)> {
        let least = |k: &K| served.get(k).copied().unwrap_or(0);
        let (at, _) = self
            .turn
            .iter()
            .enumerate()
            .min_by_key(|(i, k)| (least(k), *i))?;
        let source = self.turn.remove(at)?;
        let queue = self.jobs.get_mut(&source)?;
        let job = queue.pop_front()?;
        self.held -= 1;
        if queue.is_empty() {
            self.jobs.remove(&source);
        } else {
            self.turn.push_back(source.clone());
        }
        Some((job, source))
    }

    /// Takes the newest job of `source`.
    fn evict(&mut self, source: &K) -> Option<J> {
        let queue = self.jobs.get_mut(source)?;
        let job = queue.pop_back()?;
        self.held -= 1;
        if queue.is_empty() {
            self.jobs.remove(source);
            self.turn.retain(|k| k != source);
        }
        Some(job)
    }
}

struct State<K, J> {
    known: Queues<K, J>,
    others: Queues<K, J>,
    /// The sources of the last jobs served, oldest first, and how many
    /// each has among them.
    served: VecDeque<K>,
    served_by: HashMap<K, usize>,
    /// Whether the known lane was served last (the lanes alternate).
    known_last: bool,
    waiting: usize,
    idle: usize,
    closed: bool,
}

impl<K: Hash + Eq + Clone, J> State<K, J> {
    /// How much `source` uses the line: jobs waiting and lately served.
    fn usage(&self, source: &K) -> usize {
        self.known.held_by(source)
            + self.others.held_by(source)
            + self.served_by.get(source).copied().unwrap_or(0)
    }

    /// Remembers the last `keep` jobs' sources.
    fn note_served(&mut self, source: K, keep: usize) {
        *self.served_by.entry(source.clone()).or_default() += 1;
        self.served.push_back(source);
        while self.served.len() > keep {
            let Some(old) = self.served.pop_front() else {
                break;
            };
            if let Some(n) = self.served_by.get_mut(&old) {
                *n -= 1;
                if *n == 0 {
                    self.served_by.remove(&old);
                }
            }
        }
    }
}

/// What became of a job offered to the line.
pub enum Admitted<J> {
    /// It waits; `J` (if any) lost its place to it and must be refused.
    Queued(Option<J>),
    /// The line is full of jobs from sources using it no more than this one.
    Refused(J),
}

pub struct Line<K, J> {
    state: Mutex<State<K, J>>,
    ready: Condvar,
    cap: usize,
}

impl<K: Hash + Eq + Clone, J> Line<K, J> {
    pub fn new(cap: usize) -> Self {
        Line {
            state: Mutex::new(State {
                known: Queues::new(),
                others: Queues::new(),
                served: VecDeque::new(),
                served_by: HashMap::new(),
                known_last: false,
                waiting: 0,
                idle: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<K, J>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, source: K, lane: Lane, job: J) -> Admitted<J> {
        let mut s = self.lock();
        // The known lane holds at most half the line; past that its jobs
        // wait with the rest.
        let known = lane == Lane::Known && s.known.held < (self.cap / 2).max(1);
        let mut evicted = None;
        if s.waiting >= self.cap + s.idle {
            // The stranger using the line most loses a place: to a known
            // source in any case, to another stranger if it uses the line
            // more. A known source's place is never taken.
            let own = if known { 0 } else { s.usage(&source) };
            let victim = s
                .others
                .jobs
                .keys()
                .map(|k| (k, s.usage(k)))
                .filter(|(_, n)| *n > own)
                .max_by_key(|(_, n)| *n)
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else {
                return Admitted::Refused(job);
            };
            evicted = s.others.evict(&victim);
            s.waiting -= usize::from(evicted.is_some());
        }
        if known {
            s.known.push(source, job);
        } else {
            s.others.push(source, job);
        }
        s.waiting += 1;
        drop(s);
        self.ready.notify_one();
        Admitted::Queued(evicted)
    }

    /// The next job for a thread, waiting for one; None once closed.
    pub fn next(&self) -> Option<J> {
        let mut s = self.lock();
        loop {
            if s.closed {
                return None;
            }
            let known_first = !s.known_last;
            let State {
                known,
                others,
                served_by,
                ..
            } = &mut *s;
            let job = if known_first {
                known.pop(served_by).map(|(j, k)| (j, k, true))
            } else {
                others.pop(served_by).map(|(j, k)| (j, k, false))
            }
            .or_else(|| {
                if known_first {
                    others.pop(served_by).map(|(j, k)| (j, k, false))
                } else {
                    known.pop(served_by).map(|(j, k)| (j, k, true))
                }
            });
            if let Some((job, source, known)) = job {
                s.known_last = known;
                s.waiting -= 1;
                s.note_served(source, self.cap.max(32) * 2);
                return Some(job);
            }
            s.idle += 1;
            s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner());
            s.idle -= 1;
        }
    }

    /// Wakes every thread to leave; jobs still waiting are dropped.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.lock().waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued<J>(a: Admitted<J>) -> Option<J> {
        match a {
            Admitted::Queued(evicted) => evicted,
            Admitted::Refused(_) => panic!("refused"),
        }
    }

    #[test]
    fn sources_are_served_in_turn() {
        let line = Line::new(100);
        for i in 0..5 {
            queued(line.push("flood", Lane::Others, format!("flood {i}")));
        }
        queued(line.push("alice", Lane::Others, "alice".to_string()));
        let order: Vec<_> = (0..3).map(|_| line.next().unwrap()).collect();
        assert_eq!(order, ["flood 0", "alice", "flood 1"]);
    }

    #[test]
    fn a_source_not_served_lately_goes_first() {
        let line = Line::new(100);
        for who in ["a", "b", "c", "a", "b", "c", "d"] {
            queued(line.push(who, Lane::Others, who));
        }
        let order: Vec<_> = (0..7).map(|_| line.next().unwrap()).collect();
        assert_eq!(order, ["a", "b", "c", "d", "a", "b", "c"]);
        for who in ["a", "b", "e", "c"] {
            queued(line.push(who, Lane::Others, who));
        }
        assert_eq!(line.next(), Some("e"));
    }

    #[test]
    fn the_known_lane_alternates_with_the_rest() {
        let line = Line::new(100);
        for i in 0..4 {
            queued(line.push(i, Lane::Others, format!("stranger {i}")));
        }
        queued(line.push(9, Lane::Known, "owner".to_string()));
        assert_eq!(line.next().unwrap(), "owner");
        queued(line.push(9, Lane::Known, "owner again".to_string()));
        assert_eq!(line.next().unwrap(), "stranger 0");
        assert_eq!(line.next().unwrap(), "owner again");
        assert_eq!(line.next().unwrap(), "stranger 1");
    }

    #[test]
    fn a_full_line_takes_a_place_from_whoever_holds_the_most() {
        let line = Line::new(4);
        for i in 0..3 {
            queued(line.push("flood", Lane::Others, i));
        }
        queued(line.push("other", Lane::Others, 10));
        // Full: a newcomer holding nothing takes the flood's newest place.
        assert_eq!(queued(line.push("alice", Lane::Others, 20)), Some(2));
        assert_eq!(queued(line.push("bob", Lane::Others, 30)), Some(1));
        // Now everyone holds one: a source holding one is refused.
        assert!(matches!(
            line.push("flood", Lane::Others, 3),
            Admitted::Refused(3)
        ));
        assert_eq!(line.waiting(), 4);
    }

    #[test]
    fn sources_served_lately_give_way_to_one_that_was_not() {
        let line = Line::new(2);
        // The flood was served twice lately, "other" once.
        for (who, n) in [("flood", 0), ("other", 1), ("flood", 2)] {
            queued(line.push(who, Lane::Others, n));
            assert_eq!(line.next(), Some(n));
        }
        queued(line.push("flood", Lane::Others, 3));
        queued(line.push("other", Lane::Others, 4));
        // Full, one each: a newcomer takes the flood's place, then the
        // other's; the flood, using the line most, cannot take one back.
        assert_eq!(queued(line.push("alice", Lane::Others, 5)), Some(3));
        assert!(matches!(
            line.push("flood", Lane::Others, 6),
            Admitted::Refused(6)
        ));
        assert_eq!(queued(line.push("bob", Lane::Others, 7)), Some(4));
        // Alice, waiting, is not pushed out by a flood that was served.
        assert!(matches!(
            line.push("other", Lane::Others, 8),
            Admitted::Refused(8)
        ));
        assert_eq!(line.next(), Some(5));
        assert_eq!(line.next(), Some(7));
    }

    #[test]
    fn strangers_never_take_a_known_place_and_the_known_hold_half() {
        let line = Line::new(4);
        queued(line.push("owner", Lane::Known, 1));
        queued(line.push("flood", Lane::Others, 2));
        queued(line.push("flood", Lane::Others, 3));
        queued(line.push("alice", Lane::Others, 4));
        // Full: a stranger takes the flood's newest place, not the owner's
        // (who holds as much and was not heard from either).
        assert_eq!(queued(line.push("carol", Lane::Others, 5)), Some(3));
        assert!(matches!(
            line.push("flood", Lane::Others, 6),
            Admitted::Refused(6)
        ));
        // A known source takes a stranger's place, though it holds more.
        assert!(queued(line.push("owner", Lane::Known, 7)).is_some());
        // Half the line is known now: the next known job waits with the
        // strangers, as a source holding two, and finds no place.
        assert!(matches!(
            line.push("owner", Lane::Known, 8),
            Admitted::Refused(8)
        ));
        // A newcomer takes the last stranger's place, never a known one.
        assert!(queued(line.push("erin", Lane::Others, 9)).is_some());
        let served: Vec<_> = (0..4).map(|_| line.next().unwrap()).collect();
        for kept in [1, 7, 9] {
            assert!(served.contains(&kept), "{served:?}");
        }
    }

    #[test]
    fn an_idle_thread_takes_a_job_even_with_no_room_to_wait() {
        let line = std::sync::Arc::new(Line::new(0));
        let worker = {
            let line = line.clone();
            std::thread::spawn(move || line.next())
        };
        while line.lock().idle == 0 {
            std::thread::yield_now();
        }
        queued(line.push(1, Lane::Others, "job"));
        assert_eq!(worker.join().unwrap(), Some("job"));
        assert!(matches!(
            line.push(1, Lane::Others, "more"),
            Admitted::Refused(_)
        ));
        line.close();
        assert_eq!(line.next(), None);
    }
}
