//! A connection's rate limit, with the calls that move a job ahead of reads.
//!
//! Every call takes a token of the connection's bucket (`rateLimit.qps`, `burst`). With the
//! default 10 calls/s a hundred running jobs ask for more polls than that; were every waiter to
//! race for each token, a new job's create or start would wait behind that crowd by chance, for
//! as long as luck has it. So creates and operations on a job (start, revoke, terminate) wait
//! first in, first out among themselves, reads first in, first out among themselves, and a read
//! takes a token only when no such call is waiting, or once it has waited [`READ_DEFERRAL`]: then
//! it races the one waiting create for the next token, so that a long stream of creates
//! (thousands applied at once at 10 calls/s) slows the polls of running jobs without stopping
//! them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::DefaultDirectRateLimiter;
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

/// How long a read gives way to calls that move a job; poll intervals are 2–30 s.
pub(crate) const READ_DEFERRAL: Duration = Duration::from_secs(5);

/// The bucket and the two queues in front of it.
pub(crate) struct Tokens {
    limiter: DefaultDirectRateLimiter,
    /// Held by the one call of each class that waits on the bucket; the others queue here.
    urgent_turn: Mutex<()>,
    read_turn: Mutex<()>,
    /// Calls that move a job, waiting or holding their turn.
    urgent_waiting: AtomicUsize,
    /// Signalled when that count drops to zero.
    urgent_gone: Notify,
    /// How long a read gives way at most.
    read_deferral: Duration,
}

impl Tokens {
    pub(crate) fn new(limiter: DefaultDirectRateLimiter, read_deferral: Duration) -> Self {
        Tokens {
            limiter,
            urgent_turn: Mutex::new(()),
            read_turn: Mutex::new(()),
            urgent_waiting: AtomicUsize::new(0),
            urgent_gone: Notify::new(),
            read_deferral,
        }
    }

    /// Waits for a token. `moves_a_job`: a create or an operation on a job, served before any
    /// read that is waiting. Dropping the future gives up its place.
    pub(crate) async fn take(&self, moves_a_job: bool) {
        if moves_a_job {
            let _waiting = Waiting::new(self);
            let _turn = self.urgent_turn.lock().await;
            self.limiter.until_ready().await;
            return;
        }
        // From when the read began to wait, its turn in the queue included.
        let given_way_until = Instant::now() + self.read_deferral;
        let _turn = self.read_turn.lock().await;
        loop {
            // Registered before the count is read, so a drop to zero in between is not missed.
            let gone = self.urgent_gone.notified();
            if self.urgent_waiting.load(Ordering::SeqCst) == 0 {
                break;
            }
            if tokio::time::timeout_at(given_way_until, gone)
                .await
                .is_err()
            {
                break;
            }
        }
        self.limiter.until_ready().await;
    }
}

/// Counts a call that moves a job while it waits, also when its future is dropped.
struct Waiting<'a>(&'a Tokens);

impl<'a> Waiting<'a> {
    fn new(tokens: &'a Tokens) -> Self {
        tokens.urgent_waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(tokens)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.0.urgent_waiting.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.urgent_gone.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::Arc;
    use std::time::Duration;

    use governor::{Quota, RateLimiter};

    use super::*;

    type Order = Arc<std::sync::Mutex<Vec<String>>>;

    /// Takes a token in a task of its own, then appends `label` to `order`.
    fn take_in_turn(
        tokens: &Arc<Tokens>,
        order: &Order,
        moves_a_job: bool,
        label: String,
    ) -> tokio::task::JoinHandle<()> {
        let (tokens, order) = (tokens.clone(), order.clone());
        tokio::spawn(async move {
            tokens.take(moves_a_job).await;
            order.lock().unwrap().push(label);
        })
    }

    /// Waits for every task, then where `label` came in `order`.
    async fn position(
        tasks: Vec<tokio::task::JoinHandle<()>>,
        order: &Order,
        label: &str,
    ) -> usize {
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap();
        order
            .iter()
            .position(|c| c == label)
            .unwrap_or_else(|| panic!("{label} never took a token: {order:?}"))
    }

    fn tokens(per_second: u32, read_deferral: Duration) -> Arc<Tokens> {
        let quota = Quota::per_second(NonZeroU32::new(per_second).unwrap())
            .allow_burst(NonZeroU32::new(1).unwrap());
        Arc::new(Tokens::new(RateLimiter::direct(quota), read_deferral))
    }

    #[tokio::test]
    async fn a_call_that_moves_a_job_goes_ahead_of_the_waiting_reads() {
        let tokens = tokens(50, READ_DEFERRAL);
        let order = Order::default();
        let mut tasks: Vec<_> = (0..20)
            .map(|i| take_in_turn(&tokens, &order, false, format!("read {i}")))
            .collect();
        tokio::time::sleep(Duration::from_millis(30)).await;
        // The reads served before the create began to wait, whatever the scheduler did.
        let served_before = order.lock().unwrap().len();
        assert!(
            served_before < 15,
            "the reads were not queued: {served_before}"
        );
        tasks.push(take_in_turn(&tokens, &order, true, "create".into()));
        let at = position(tasks, &order, "create").await;
        // At most the one read already waiting on the bucket may take the next token first.
        assert!(
            at <= served_before + 1,
            "the create came {at}th, {served_before} reads were served before it waited: {order:?}"
        );
        assert_eq!(order.lock().unwrap().len(), 21);
    }

    #[tokio::test]
    async fn a_call_given_up_while_waiting_does_not_hold_the_reads_back() {
        let tokens = tokens(20, READ_DEFERRAL);
        tokens.take(false).await; // the bucket is empty now
        let gave_up = tokio::time::timeout(Duration::from_millis(5), tokens.take(true)).await;
        assert!(gave_up.is_err(), "the bucket had a token to spare");
        assert_eq!(tokens.urgent_waiting.load(Ordering::SeqCst), 0);
        tokio::time::timeout(Duration::from_secs(5), tokens.take(false))
            .await
            .expect("a read after a given-up create gets its token");
    }

    #[tokio::test]
    async fn a_read_gives_way_for_a_while_not_for_ever() {
        let tokens = tokens(50, Duration::from_millis(100));
        let order = Order::default();
        // 40 creates waiting at once: 0.8 s of tokens.
        let mut tasks: Vec<_> = (0..40)
            .map(|i| take_in_turn(&tokens, &order, true, format!("create {i}")))
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        tasks.push(take_in_turn(&tokens, &order, false, "read".into()));
        let at = position(tasks, &order, "read").await;
        // After 100 ms of giving way (5 tokens) it races the creates for the next one.
        assert!(at < 20, "the read came {at}th of 41: {order:?}");
    }
}
