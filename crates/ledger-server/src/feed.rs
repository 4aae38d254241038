//! Feeds: the change stream of every account read and encoded once, for all the
//! subscribers that want it. A subscriber of every account that has caught up sends the
//! feed's pages as they are (a reference count, no read, no encoding of its own), so
//! four live subscribers cost the server about what one does. One feed per
//! `include_rejected`, started by its first subscriber and stopped once it has none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledger_core::ledger::{Ledger, StreamFilter};
use tokio::sync::broadcast;

use crate::subscribe::{Page, read_page};

/// Transactions per page, at most.
const PAGE_TX_MAX: usize = 4096;
/// Pages kept for subscribers that have not taken them yet: the feed's memory bound.
/// One further behind misses pages and reads what it missed itself.
const PAGES_KEPT: usize = 16;
/// How long an idle feed waits for a commit before it looks whether anyone still
/// listens.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The server's feeds (one per `include_rejected`).
#[derive(Debug, Default)]
pub(crate) struct Feeds {
    slots: Mutex<[Option<Feed>; 2]>,
}

#[derive(Debug)]
struct Feed {
    ledger: Arc<Ledger>,
    pages: broadcast::Sender<Arc<Page>>,
    position: Arc<AtomicU64>,
}

/// A subscriber's end of a feed.
#[derive(Debug)]
pub(crate) struct FeedReceiver {
    pub(crate) pages: broadcast::Receiver<Arc<Page>>,
    position: Arc<AtomicU64>,
}

impl FeedReceiver {
    /// Where the feed's next page starts: every page before it was sent (a subscriber
    /// that has not received one reads that part itself).
    pub(crate) fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }
}

impl Feeds {
    /// The pages of `ledger`'s feed from now on, starting the feed if it is not running.
    pub(crate) fn receiver(
        self: &Arc<Self>,
        ledger: &Arc<Ledger>,
        include_rejected: bool,
    ) -> FeedReceiver {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut slots[usize::from(include_rejected)];
        if let Some(feed) = slot.as_ref().filter(|f| Arc::ptr_eq(&f.ledger, ledger)) {
            return FeedReceiver {
                pages: feed.pages.subscribe(),
                position: Arc::clone(&feed.position),
            };
        }
        let (pages, receiver) = broadcast::channel(PAGES_KEPT);
        let position = Arc::new(AtomicU64::new(ledger.pipeline_index().committed + 1));
        *slot = Some(Feed {
            ledger: Arc::clone(ledger),
            pages: pages.clone(),
            position: Arc::clone(&position),
        });
        tokio::spawn(run(
            Arc::clone(self),
            Arc::clone(ledger),
            include_rejected,
            pages,
            Arc::clone(&position),
        ));
        FeedReceiver {
            pages: receiver,
            position,
        }
    }

    /// Takes `pages`' feed out of its slot if it has no subscriber left (or `always`);
    /// whether it did. Under the lock [`receiver`](Self::receiver) subscribes with, so
    /// no subscriber joins a feed that is stopping.
    fn retire(
        &self,
        pages: &broadcast::Sender<Arc<Page>>,
        include_rejected: bool,
        always: bool,
    ) -> bool {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut slots[usize::from(include_rejected)];
        let mine = slot.as_ref().is_some_and(|f| f.pages.same_channel(pages));
        if mine && (always || pages.receiver_count() == 0) {
            *slot = None;
            return true;
        }
        !mine
    }
}

/// Reads pages from the committed index at its start, as they commit, until no one
/// listens. A read or wait that fails stops it: its subscribers go on by their own
/// reads, which meet the error themselves.
async fn run(
    feeds: Arc<Feeds>,
    ledger: Arc<Ledger>,
    include_rejected: bool,
    pages: broadcast::Sender<Arc<Page>>,
    position: Arc<AtomicU64>,
) {
    let filter = StreamFilter {
        accounts: Vec::new(),
        include_rejected,
    };
    let mut next = position.load(Ordering::Acquire);
    loop {
        if pages.receiver_count() == 0 && feeds.retire(&pages, include_rejected, false) {
            return;
        }
        if next > ledger.pipeline_index().committed {
            let waited = tokio::time::timeout(IDLE_CHECK, ledger.wait_committed_async(next));
            if let Ok(Err(_)) = waited.await {
                feeds.retire(&pages, include_rejected, true);
                return;
            }
            continue;
        }
        match read_page(&ledger, next, PAGE_TX_MAX, &filter).await {
            Ok(page) => {
                next = page.next;
                // The position first: a subscriber (subscribed before it looks) that
                // sees the old one receives this page; one that sees the new one reads
                // up to it itself and skips the page.
                position.store(next, Ordering::Release);
                // No receiver right now is fine: the loop's check retires the feed.
                let _ = pages.send(Arc::new(page));
            }
            Err(_) => {
                feeds.retire(&pages, include_rejected, true);
                return;
            }
        }
    }
}
