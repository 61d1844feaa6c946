//! One timer task for every socket of a layer, in place of a task per socket: the auth
//! deadline and the ping interval each have one duration, so a timer armed later is also due
//! later, and a first-in first-out queue is in deadline order with no sorting (a wheel with a
//! single spoke). Arming and cancelling are O(1) under a short lock; a cancelled timer drops
//! what it holds at once (its socket and session), and leaves only a 24-byte stale entry
//! behind in the queue, skipped when its time comes.
//!
//! The task runs only while timers are armed: it ends when the queue is empty, and the next
//! arming starts it again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What a timer does when due; returns whether it fires again one period later.
pub(crate) type Action = Box<dyn FnMut() -> bool + Send>;

/// Timers of one period, sharing one task. Cheap to clone.
#[derive(Clone)]
pub(crate) struct TimerQueue(Arc<Shared>);

impl std::fmt::Debug for TimerQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerQueue")
            .field("period", &self.0.period)
            .finish_non_exhaustive()
    }
}

struct Shared {
    period: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// (due, slot, generation), in deadline order.
    queue: VecDeque<(Instant, u32, u32)>,
    task: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Slot {
    /// Bumped at each cancellation and at each reuse: an entry of another generation is stale.
    generation: u32,
    /// Armed (the action may be out, running).
    armed: bool,
    action: Option<Action>,
}

impl Slot {
    /// Whether it holds the armed timer of `generation` (else an entry for it is stale).
    fn holds(&self, generation: u32) -> bool {
        self.generation == generation && self.armed
    }
}

/// One armed timer: cancel it, or ask whether it is still armed.
pub(crate) struct TimerKey {
    queue: Weak<Shared>,
    slot: u32,
    generation: u32,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TimerQueue {
    /// A queue whose timers are due `period` after they are armed (and, repeating, every
    /// `period` after each firing).
    pub(crate) fn new(period: Duration) -> Self {
        Self(Arc::new(Shared {
            period,
            state: Mutex::new(State::default()),
        }))
    }

    /// Arms `action`, due one period from now. Must be called within a tokio runtime.
    pub(crate) fn arm(&self, action: Action) -> TimerKey {
        let mut state = lock(&self.0.state);
        let slot = match state.free.pop() {
            Some(slot) => slot,
            None => {
                state.slots.push(Slot::default());
                (state.slots.len() - 1) as u32
            }
        };
        let entry = &mut state.slots[slot as usize];
        entry.armed = true;
        entry.action = Some(action);
        let generation = entry.generation;
        // `now` under the lock: entries are pushed in the order of their deadlines.
        state
            .queue
            .push_back((Instant::now() + self.0.period, slot, generation));
        // A task that ended with its runtime is replaced too.
        if state.task.as_ref().is_none_or(|task| task.is_finished()) {
            state.task = Some(tokio::spawn(run(Arc::downgrade(&self.0))));
        }
        TimerKey {
            queue: Arc::downgrade(&self.0),
            slot,
            generation,
        }
    }

    /// How many timers are armed.
    #[cfg(test)]
    fn armed(&self) -> usize {
        lock(&self.0.state).slots.iter().filter(|s| s.armed).count()
    }

    /// Whether the queue's task is running.
    #[cfg(test)]
    fn has_task(&self) -> bool {
        lock(&self.0.state)
            .task
            .as_ref()
            .is_some_and(|task| !task.is_finished())
    }
}

impl TimerKey {
    /// Cancels the timer (a no-op when it was cancelled already or has fired for good); what
    /// its action held is dropped now (after the action returns, if it is running).
    pub(crate) fn cancel(&self) {
        let Some(shared) = self.queue.upgrade() else {
            return;
        };
        let action = {
            let mut state = lock(&shared.state);
            let State { slots, free, .. } = &mut *state;
            match slots.get_mut(self.slot as usize) {
                Some(slot) if slot.holds(self.generation) => {
                    slot.generation = slot.generation.wrapping_add(1);
                    slot.armed = false;
                    // Freed now if idle; a running action's slot is freed when it returns.
                    if slot.action.is_some() {
                        free.push(self.slot);
                    }
                    slot.action.take()
                }
                _ => None,
            }
        };
        // Dropped outside the lock: it may hold anything.
        drop(action);
    }

    /// Whether the timer is still armed.
    pub(crate) fn is_armed(&self) -> bool {
        self.queue.upgrade().is_some_and(|shared| {
            lock(&shared.state)
                .slots
                .get(self.slot as usize)
                .is_some_and(|slot| slot.holds(self.generation))
        })
    }
}

/// Fires what is due, sleeps until the next deadline, and ends when nothing is armed.
async fn run(queue: Weak<Shared>) {
    loop {
        let Some(shared) = queue.upgrade() else {
            return;
        };
        let next = {
            let mut state = lock(&shared.state);
            loop {
                match state.queue.front().copied() {
                    None => {
                        state.task = None;
                        return;
                    }
                    Some((due, slot, generation)) => {
                        let live = state
                            .slots
                            .get(slot as usize)
                            .is_some_and(|s| s.holds(generation));
                        if !live {
                            state.queue.pop_front();
                            continue;
                        }
                        break due;
                    }
                }
            }
        };
        if next > Instant::now() {
            // Nothing armed after this can be due before it.
            drop(shared);
            tokio::time::sleep_until(next).await;
            continue;
        }
        fire_due(&shared);
    }
}

/// Runs every action due now, outside the lock, and queues again those that repeat.
fn fire_due(shared: &Shared) {
    let now = Instant::now();
    loop {
        let (slot, generation, mut action) = {
            let mut state = lock(&shared.state);
            let Some(&(due, slot, generation)) = state.queue.front() else {
                return;
            };
            if due > now {
                return;
            }
            state.queue.pop_front();
            let Some(entry) = state.slots.get_mut(slot as usize) else {
                continue;
            };
            if !entry.holds(generation) {
                continue;
            }
            let Some(action) = entry.action.take() else {
                continue;
            };
            (slot, generation, action)
        };
        let again = crate::plumbing::catch_panic_now(&mut action).unwrap_or_else(|panic| {
            tracing::error!(panic, "a timer's action panicked");
            false
        });
        let done = {
            let mut state = lock(&shared.state);
            let State {
                slots, free, queue, ..
            } = &mut *state;
            let entry = &mut slots[slot as usize];
            if entry.generation != generation {
                // Cancelled while it ran: its slot is free now.
                free.push(slot);
                Some(action)
            } else if again {
                entry.action = Some(action);
                queue.push_back((Instant::now() + shared.period, slot, generation));
                None
            } else {
                entry.armed = false;
                entry.generation = entry.generation.wrapping_add(1);
                free.push(slot);
                Some(action)
            }
        };
        // Dropped outside the lock: it may hold anything.
        drop(done);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn counting(count: &Arc<AtomicUsize>, repeat: bool) -> Action {
        let count = count.clone();
        Box::new(move || {
            count.fetch_add(1, Ordering::SeqCst);
            repeat
        })
    }

    #[tokio::test(start_paused = true)]
    async fn fires_once_after_the_period_then_the_task_ends() {
        let queue = TimerQueue::new(Duration::from_secs(10));
        let fired = Arc::new(AtomicUsize::new(0));
        let key = queue.arm(counting(&fired, false));
        assert!(key.is_armed() && queue.has_task());
        tokio::time::sleep(Duration::from_millis(9_999)).await;
        assert_eq!(fired.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(fired.load(Ordering::SeqCst), 1);
        assert!(!key.is_armed());
        tokio::task::yield_now().await;
        assert!(!queue.has_task(), "nothing armed: no task");
        assert_eq!(queue.armed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn repeats_every_period_until_cancelled() {
        let queue = TimerQueue::new(Duration::from_secs(1));
        let fired = Arc::new(AtomicUsize::new(0));
        let key = queue.arm(counting(&fired, true));
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        assert_eq!(fired.load(Ordering::SeqCst), 3);
        key.cancel();
        assert!(!key.is_armed());
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(fired.load(Ordering::SeqCst), 3);
        assert!(!queue.has_task());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_timer_drops_what_it_holds_at_once_and_never_fires() {
        let queue = TimerQueue::new(Duration::from_secs(1));
        let held = Arc::new(());
        let inside = held.clone();
        let fired = Arc::new(AtomicUsize::new(0));
        let count = fired.clone();
        let key = queue.arm(Box::new(move || {
            let _ = &inside;
            count.fetch_add(1, Ordering::SeqCst);
            false
        }));
        assert_eq!(Arc::strong_count(&held), 2);
        key.cancel();
        assert_eq!(Arc::strong_count(&held), 1, "released at the cancel");
        key.cancel(); // twice: a no-op
        // Its slot is reused by a new timer; the old key does not cancel the new one.
        let other = queue.arm(counting(&fired, false));
        key.cancel();
        assert!(other.is_armed());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(fired.load(Ordering::SeqCst), 1, "only the second one fired");
    }

    #[tokio::test(start_paused = true)]
    async fn many_timers_fire_in_the_order_they_were_armed() {
        let queue = TimerQueue::new(Duration::from_secs(1));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut keys = Vec::new();
        for n in 0..1_000 {
            let order = order.clone();
            keys.push(queue.arm(Box::new(move || {
                order.lock().unwrap().push(n);
                false
            })));
            tokio::time::advance(Duration::from_micros(100)).await;
        }
        // Every other one cancelled.
        for key in keys.iter().step_by(2) {
            key.cancel();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let fired = order.lock().unwrap().clone();
        assert_eq!(fired, (1..1_000).step_by(2).collect::<Vec<_>>());
        assert_eq!(queue.armed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_action_is_logged_and_the_others_still_fire() {
        let queue = TimerQueue::new(Duration::from_secs(1));
        let fired = Arc::new(AtomicUsize::new(0));
        let bad = queue.arm(Box::new(|| panic!("boom")));
        queue.arm(counting(&fired, false));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(fired.load(Ordering::SeqCst), 1);
        assert!(!bad.is_armed());
    }
}
