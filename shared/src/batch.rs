//! Group commit: many tasks each hand one item to a [`Batcher`] and wait for its result; one
//! writer task takes whatever has arrived (up to a cap) and writes it with one call — one
//! transaction, one commit — instead of one per item. Nothing waits for a batch to fill: an
//! item arriving at an idle batcher is written at once, and under load the items that arrive
//! while a write is in flight make the next batch.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

type Reply<R> = oneshot::Sender<Result<R, String>>;

/// A handle for submitting items; cheap to clone. The writer task ends with the last handle.
pub struct Batcher<T, R> {
    tx: mpsc::UnboundedSender<(T, Reply<R>)>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts the writer task. `write` gets up to `max` items and returns one result per item,
    /// in order (or one error for the whole batch).
    pub fn start<F, Fut>(max: usize, write: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<R>, String>> + Send + 'static,
    {
        Self::start_overlapping(max, 1, write)
    }

    /// [`Batcher::start`] with up to `writes` batches in flight at once: an item arriving
    /// while a write is in flight starts the next batch at once instead of waiting for it.
    /// For callers waiting on a round trip each (API requests), whose latency is the wait.
    pub fn start_overlapping<F, Fut>(max: usize, writes: usize, write: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<R>, String>> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(rx, max.max(1), writes.max(1), write));
        Self { tx }
    }

    /// Writes `item` with whatever else is waiting, and returns its result.
    pub async fn submit(&self, item: T) -> Result<R, String> {
        self.send(item).await
    }

    /// Hands `item` over now and returns the wait for its result: the caller goes on with
    /// other work while it is written. Items are written in the order they were handed over,
    /// so with one write at a time ([`Batcher::start`]) an item handed over later is never
    /// written before this one.
    pub fn send(&self, item: T) -> impl Future<Output = Result<R, String>> + Send + use<T, R> {
        let (reply, result) = oneshot::channel();
        let sent = self.tx.send((item, reply)).is_ok();
        async move {
            if !sent {
                return Err("the batch writer has stopped".to_owned());
            }
            result
                .await
                .map_err(|_| "the batch writer dropped the item".to_owned())?
        }
    }
}

/// Lets the tasks that are ready to run add their items before a batch is written: a burst of
/// tasks woken together (the slots a claim filled, the results one write confirmed) then
/// makes one batch instead of a first batch of one and a second of the rest. Costs no wait
/// when nothing else is ready (the scheduler runs this task again at once), so an idle
/// batcher still writes its single item immediately.
async fn gather_ready<T>(rx: &mut mpsc::UnboundedReceiver<T>, waiting: &mut Vec<T>, max: usize) {
    for _ in 0..GATHER_ROUNDS {
        if waiting.len() >= max {
            return;
        }
        let before = waiting.len();
        tokio::task::yield_now().await;
        while waiting.len() < max {
            match rx.try_recv() {
                Ok(item) => waiting.push(item),
                Err(_) => break,
            }
        }
        if waiting.len() == before {
            return;
        }
    }
}

/// How many times a batch yields for more items while each yield still brings some.
const GATHER_ROUNDS: usize = 4;

async fn write_loop<T, R, F, Fut>(
    mut rx: mpsc::UnboundedReceiver<(T, Reply<R>)>,
    max: usize,
    writes: usize,
    write: F,
) where
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = Result<Vec<R>, String>>,
{
    let mut in_flight = FuturesUnordered::new();
    let mut waiting = Vec::with_capacity(max);
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            received = rx.recv_many(&mut waiting, max), if open && in_flight.len() < writes => {
                if received == 0 {
                    open = false;
                    continue;
                }
                gather_ready(&mut rx, &mut waiting, max).await;
                let (items, replies): (Vec<T>, Vec<Reply<R>>) = waiting.drain(..).unzip();
                let written = contained(|| write(items));
                in_flight.push(async move { answer(replies, written.await) });
            }
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
        }
    }
}

/// Runs one write so that a panic in it (in `write` or in its future) fails that batch's
/// items with the panic's message instead of ending the writer task, which every later
/// submission would then find stopped until the process restarts.
fn contained<R, F, Fut>(write: F) -> impl Future<Output = Result<Vec<R>, String>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Vec<R>, String>>,
{
    let started = catch_unwind(AssertUnwindSafe(write));
    async move {
        match started {
            Ok(written) => AssertUnwindSafe(written)
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| Err(panicked(panic))),
            Err(panic) => Err(panicked(panic)),
        }
    }
}

fn panicked(payload: Box<dyn Any + Send>) -> String {
    format!(
        "the batch write failed: it panicked ({})",
        crate::panics::message(&*payload)
    )
}

/// Gives each item of a batch its result.
fn answer<R>(replies: Vec<Reply<R>>, written: Result<Vec<R>, String>) {
    let n = replies.len();
    match written {
        Ok(results) if results.len() == n => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Ok(results) => {
            let e = format!("a batch of {n} items gave {} results", results.len());
            replies
                .into_iter()
                .for_each(|r| drop(r.send(Err(e.clone()))));
        }
        Err(e) => replies
            .into_iter()
            .for_each(|r| drop(r.send(Err(e.clone())))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn items_submitted_together_are_written_together_and_each_gets_its_result() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let batcher = Batcher::start(64, move |items: Vec<u32>| {
            counted.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(items.iter().map(|i| i * 2).collect::<Vec<_>>())
            }
        });
        let results = futures::future::join_all((0..200).map(|i| {
            let b = batcher.clone();
            async move { b.submit(i).await }
        }))
        .await;
        let expected: Vec<Result<u32, String>> = (0..200).map(|i| Ok(i * 2)).collect();
        assert_eq!(results, expected);
        let writes = calls.load(Ordering::Relaxed);
        assert!(
            (4..=10).contains(&writes),
            "200 items in batches of ≤ 64: {writes} writes"
        );
    }

    #[tokio::test]
    async fn overlapping_batches_start_while_others_are_in_flight_up_to_the_cap() {
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (counted, highest) = (now.clone(), peak.clone());
        // One item per batch, two batches at once.
        let batcher = Batcher::start_overlapping(1, 2, move |items: Vec<u32>| {
            let writing = counted.fetch_add(1, Ordering::SeqCst) + 1;
            highest.fetch_max(writing, Ordering::SeqCst);
            let counted = counted.clone();
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                counted.fetch_sub(1, Ordering::SeqCst);
                Ok(items)
            }
        });
        let results = futures::future::join_all((0..6).map(|i| {
            let b = batcher.clone();
            async move { b.submit(i).await }
        }))
        .await;
        assert_eq!(results, (0..6).map(Ok).collect::<Vec<_>>());
        assert_eq!(
            peak.load(Ordering::SeqCst),
            2,
            "two writes in flight, never more"
        );
    }

    #[tokio::test]
    async fn a_write_that_panics_fails_its_batch_and_the_writer_goes_on() {
        // 13 panics while building its write, 7 in the write's future; the rest double.
        let batcher = Batcher::start(1, |items: Vec<u32>| {
            assert_ne!(items, [13], "unlucky");
            async move {
                if items == [7] {
                    panic!("seven");
                }
                Ok(items.iter().map(|i| i * 2).collect::<Vec<_>>())
            }
        });
        let (seven, thirteen) = (batcher.submit(7).await, batcher.submit(13).await);
        assert!(
            seven
                .as_ref()
                .is_err_and(|e| e.contains("panicked (seven)")),
            "{seven:?}"
        );
        assert!(
            thirteen.as_ref().is_err_and(|e| e.contains("unlucky")),
            "{thirteen:?}"
        );
        assert_eq!(
            batcher.submit(4).await,
            Ok(8),
            "the writer outlives the panics"
        );
    }

    #[tokio::test]
    async fn items_handed_over_first_are_written_first_while_their_senders_go_on() {
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = written.clone();
        let batcher = Batcher::start(2, move |items: Vec<u32>| {
            let log = log.clone();
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                log.lock().unwrap().extend(items.iter().copied());
                Ok(vec![(); items.len()])
            }
        });
        // Handed over before any is awaited, and awaited in reverse: the order they were
        // handed over in is the order they are written in.
        let waits: Vec<_> = (0..7).map(|i| batcher.send(i)).collect();
        for wait in waits.into_iter().rev() {
            wait.await.expect("written");
        }
        assert_eq!(*written.lock().unwrap(), (0..7).collect::<Vec<u32>>());
    }

    #[tokio::test]
    async fn a_failed_write_fails_every_item_of_its_batch() {
        let batcher = Batcher::start(8, |_: Vec<u8>| async {
            Err::<Vec<()>, _>("disk full".to_owned())
        });
        assert_eq!(batcher.submit(1).await, Err("disk full".to_owned()));
    }
}
