//! BKFlow polling by batch: the tasks of one space polled within a short window share one
//! `get_tasks_states` call, so poll calls grow with the number of spaces, not tasks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::connection::Resolved;
use crate::bk::BkError;
use crate::bk::facade::{JobRef, Progress};

/// BKFlow polls of one space arriving within this window share one `get_tasks_states` call, so
/// a space is polled at most ten times a second however many of its tasks run.
pub const BKFLOW_BATCH_WINDOW: Duration = Duration::from_millis(100);

type Answer = Result<Arc<HashMap<i64, Progress>>, Arc<BkError>>;

struct Round {
    ids: Arc<Mutex<(bool, Vec<i64>)>>,
    answer: Shared<BoxFuture<'static, Answer>>,
}

/// Coalesces BKFlow polls per connection and space.
pub struct BkflowBatcher {
    window: Duration,
    rounds: Mutex<HashMap<(String, i64), Round>>,
}

impl BkflowBatcher {
    /// Polls arriving within `window` of each other share a call.
    pub fn new(window: Duration) -> Self {
        BkflowBatcher {
            window,
            rounds: Mutex::new(HashMap::new()),
        }
    }

    /// Progress of one task, through the shared batch call of its space.
    pub async fn progress(
        &self,
        conn: &Resolved,
        space_id: i64,
        task_id: i64,
    ) -> Result<Progress, Arc<BkError>> {
        let answer = {
            let mut rounds = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
            let key = (conn.id.clone(), space_id);
            let joined = rounds.get(&key).and_then(|round| {
                let mut ids = round.ids.lock().unwrap_or_else(|e| e.into_inner());
                if ids.0 {
                    None
                } else {
                    ids.1.push(task_id);
                    Some(round.answer.clone())
                }
            });
            match joined {
                Some(a) => a,
                None => {
                    let ids = Arc::new(Mutex::new((false, vec![task_id])));
                    let client = conn.client.clone();
                    let window = self.window;
                    let taken = ids.clone();
                    let answer = async move {
                        tokio::time::sleep(window).await;
                        let batch: Vec<i64> = {
                            let mut ids = taken.lock().unwrap_or_else(|e| e.into_inner());
                            ids.0 = true;
                            let mut v = std::mem::take(&mut ids.1);
                            v.sort_unstable();
                            v.dedup();
                            v
                        };
                        client
                            .progress_bkflow_batch(space_id, &batch)
                            .await
                            .map(Arc::new)
                            .map_err(Arc::new)
                    }
                    .boxed()
                    .shared();
                    rounds.insert(
                        key,
                        Round {
                            ids,
                            answer: answer.clone(),
                        },
                    );
                    answer
                }
            }
        };
        match answer.await {
            Ok(map) => match map.get(&task_id) {
                Some(p) => Ok(p.clone()),
                // Not in the batch answer (e.g. expired): ask for it alone, which reports
                // a not-found error properly.
                None => conn
                    .client
                    .progress(&JobRef::Bkflow { space_id, task_id })
                    .await
                    .map_err(Arc::new),
            },
            Err(e) => Err(e),
        }
    }
}
