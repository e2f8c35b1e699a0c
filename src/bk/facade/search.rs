//! Searching for a job whose create had an unknown outcome: [`BkClient::search`] per system,
//! over the paged list calls.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::bk::gsekit::{self, JobAction, JobObject};
use crate::bk::job::{self, ScopeType};
use crate::bk::{BkClient, BkError, bkflow, nodeman};

use super::types::{Candidate, JobRef, SearchQuery, SearchTarget, Searched};

/// Page size and page limit of the list calls behind [`BkClient::search`].
const SEARCH_PAGE: u32 = 50;
const SEARCH_MAX_PAGES: u32 = 5;
/// Most NodeMan jobs whose hosts one search reads (one details call each).
const SEARCH_MAX_DETAILS: usize = 10;

fn in_window(t: Option<DateTime<Utc>>, q: &SearchQuery) -> bool {
    // A row without a time cannot be excluded: let the caller see it.
    t.is_none_or(|t| t >= q.since && t <= q.until)
}

fn creator_matches(c: Option<&str>, q: &SearchQuery) -> bool {
    match (&q.creator, c) {
        (Some(want), Some(have)) => want == have,
        _ => true,
    }
}

fn value_mentions(v: &Value, key: &str) -> bool {
    match v {
        Value::String(s) => s.contains(key),
        Value::Array(a) => a.iter().any(|x| value_mentions(x, key)),
        Value::Object(m) => m.values().any(|x| value_mentions(x, key)),
        _ => false,
    }
}

impl BkClient {
    /// Lists jobs that may be the one an ambiguous create made: same system and filters,
    /// created in the window, by the creator when given. Sorted key matches first, then
    /// newest first. Reads at most a few pages (the window should be minutes wide).
    pub async fn search(&self, q: &SearchQuery) -> Result<Searched, BkError> {
        let (mut out, complete) = match &q.target {
            SearchTarget::Gsekit {
                biz_id,
                job_object,
                job_action,
                scope,
                expression_scope,
            } => {
                let wanted = (scope.as_ref(), expression_scope.as_ref());
                self.search_gsekit(q, *biz_id, job_object, job_action, wanted)
                    .await?
            }
            SearchTarget::Bkflow {
                space_id,
                template_id,
            } => self.search_bkflow(q, *space_id, *template_id).await?,
            SearchTarget::Nodeman {
                job_type,
                bk_biz_id,
                bk_host_id,
            } => {
                self.search_nodeman(q, job_type, bk_biz_id.as_deref(), bk_host_id.as_deref())
                    .await?
            }
            SearchTarget::Job {
                scope_type,
                scope_id,
                job_plan_id,
                v2,
            } => {
                self.search_job(q, scope_type, scope_id, *job_plan_id, *v2)
                    .await?
            }
        };
        out.sort_by(|a, b| {
            b.key_matched
                .cmp(&a.key_matched)
                .then(b.created_at.cmp(&a.created_at))
        });
        Ok(Searched {
            candidates: out,
            complete,
        })
    }

    async fn search_gsekit(
        &self,
        q: &SearchQuery,
        biz_id: i64,
        job_object: &Option<JobObject>,
        job_action: &Option<JobAction>,
        (scope, expression_scope): (Option<&Value>, Option<&Value>),
    ) -> Result<(Vec<Candidate>, bool), BkError> {
        let (rows, complete) = paged(
            |index| {
                let query = gsekit::JobListQuery {
                    page: index + 1,
                    pagesize: SEARCH_PAGE,
                    created_by: q.creator.clone(),
                    job_object: job_object.clone(),
                    job_action: job_action.clone(),
                };
                async move { Ok(self.gsekit().job_list(biz_id, &query).await?.list) }
            },
            |j| j.start_time.is_some_and(|t| t < q.since),
        )
        .await?;
        let out = rows
            .into_iter()
            .filter(|j| {
                let same_object = job_object
                    .as_ref()
                    .is_none_or(|o| j.job_object.as_deref().is_none_or(|x| x == o.as_str()));
                let same_action = job_action
                    .as_ref()
                    .is_none_or(|a| j.job_action.as_deref().is_none_or(|x| x == a.as_str()));
                in_window(j.start_time, q)
                    && creator_matches(j.created_by.as_deref(), q)
                    && same_object
                    && same_action
            })
            .map(|j| Candidate {
                job: JobRef::Gsekit {
                    biz_id,
                    job_id: j.id,
                },
                created_at: j.start_time,
                key_matched: j
                    .extra_data
                    .as_ref()
                    .is_some_and(|e| value_mentions(e, &q.key)),
                // The request's scope as GSEKit stored it: `scope` when one was given, else the
                // `expression_scope` given.
                content_matched: match (scope, expression_scope) {
                    (Some(want), _) => j.scope.as_ref().map(|have| have == want),
                    (None, Some(want)) => j.expression_scope.as_ref().map(|have| have == want),
                    (None, None) => None,
                },
                name: j.job_action,
            })
            .collect();
        Ok((out, complete))
    }

    async fn search_bkflow(
        &self,
        q: &SearchQuery,
        space_id: i64,
        template_id: Option<i64>,
    ) -> Result<(Vec<Candidate>, bool), BkError> {
        let (rows, complete) = paged(
            |index| {
                let query = bkflow::TaskListQuery {
                    creator: q.creator.clone(),
                    template_id,
                    limit: SEARCH_PAGE,
                    offset: index * SEARCH_PAGE,
                };
                async move { Ok(self.bkflow().get_task_list(space_id, &query).await?.list) }
            },
            |t| t.create_time.is_some_and(|c| c < q.since),
        )
        .await?;
        let out = rows
            .into_iter()
            .filter(|t| {
                in_window(t.create_time, q)
                    && creator_matches(t.creator.as_deref(), q)
                    && !(template_id.is_some()
                        && t.template_id.is_some()
                        && t.template_id != template_id)
            })
            .map(|t| Candidate {
                job: JobRef::Bkflow {
                    space_id: t.space_id.unwrap_or(space_id),
                    task_id: t.id,
                },
                created_at: t.create_time,
                key_matched: t.name.as_deref().is_some_and(|n| n.contains(&q.key))
                    || t.description.as_deref().is_some_and(|d| d.contains(&q.key)),
                name: t.name,
                content_matched: Some(true),
            })
            .collect();
        Ok((out, complete))
    }

    async fn search_nodeman(
        &self,
        q: &SearchQuery,
        job_type: &Option<String>,
        bk_biz_id: Option<&[i64]>,
        bk_host_id: Option<&[i64]>,
    ) -> Result<(Vec<Candidate>, bool), BkError> {
        let (rows, complete) = paged(
            |index| {
                let query = nodeman::JobListQuery {
                    page: index + 1,
                    pagesize: SEARCH_PAGE,
                    created_by: q.creator.clone().map(|c| vec![c]),
                    job_type: job_type.clone().map(|t| vec![t]),
                };
                async move { Ok(self.nodeman().job_list(&query).await?.list) }
            },
            |j| j.start_time.is_some_and(|t| t < q.since),
        )
        .await?;
        let mut out: Vec<Candidate> = rows
            .into_iter()
            .filter(|j| {
                let same_type = job_type
                    .as_ref()
                    .is_none_or(|t| j.job_type.as_deref().is_none_or(|x| x == t));
                in_window(j.start_time, q)
                    && creator_matches(j.created_by.as_deref(), q)
                    && same_type
            })
            .map(|j| {
                let same_biz = match (bk_biz_id, &j.bk_biz_scope) {
                    (Some(want), Some(have)) => Some(same_set(want, have)),
                    _ => None,
                };
                Candidate {
                    job: JobRef::Nodeman { job_id: j.id },
                    created_at: j.start_time,
                    name: j.job_type,
                    key_matched: false,
                    content_matched: if same_biz == Some(false) {
                        Some(false)
                    } else if bk_host_id.is_none() {
                        Some(true)
                    } else {
                        None
                    },
                }
            })
            .collect();
        // The hosts are only in a job's details: read them for the jobs still in question.
        if let Some(want) = bk_host_id {
            let open = out.iter_mut().filter(|c| c.content_matched.is_none());
            for c in open.take(SEARCH_MAX_DETAILS) {
                let JobRef::Nodeman { job_id } = c.job else {
                    continue;
                };
                let query = nodeman::DetailsQuery {
                    page: 1,
                    pagesize: -1,
                    conditions: Vec::new(),
                };
                let details = self.nodeman().details(job_id, &query).await?;
                let hosts: Vec<i64> = details.list.iter().filter_map(|h| h.bk_host_id).collect();
                // No host listed yet: the job is still being prepared, and says nothing.
                c.content_matched = (!hosts.is_empty()).then(|| same_set(want, &hosts));
            }
        }
        Ok((out, complete))
    }

    async fn search_job(
        &self,
        q: &SearchQuery,
        scope_type: &ScopeType,
        scope_id: &str,
        job_plan_id: Option<i64>,
        v2: bool,
    ) -> Result<(Vec<Candidate>, bool), BkError> {
        // JOB filters by time itself: every page is of the window.
        let (rows, complete) = paged(
            |index| {
                let query = job::JobInstanceListQuery {
                    bk_scope_type: scope_type.clone(),
                    bk_scope_id: scope_id.to_owned(),
                    since: q.since,
                    until: q.until,
                    operator: q.creator.clone(),
                    job_plan_id,
                    start: index * SEARCH_PAGE,
                    length: SEARCH_PAGE,
                };
                async move { Ok(self.job().get_job_instance_list(&query).await?.list) }
            },
            |_| false,
        )
        .await?;
        let out = rows
            .into_iter()
            .filter(|i| {
                in_window(i.create_time, q)
                    && creator_matches(i.operator.as_deref(), q)
                    && !(job_plan_id.is_some()
                        && i.job_plan_id.is_some()
                        && i.job_plan_id != job_plan_id)
            })
            .map(|i| {
                let job = match (v2, scope_id.parse::<i64>()) {
                    (true, Ok(biz_id)) => JobRef::JobV2 {
                        biz_id,
                        job_instance_id: i.id,
                    },
                    _ => JobRef::JobV3 {
                        scope_type: scope_type.clone(),
                        scope_id: scope_id.to_owned(),
                        job_instance_id: i.id,
                    },
                };
                Candidate {
                    job,
                    created_at: i.create_time,
                    name: i.name,
                    key_matched: false,
                    content_matched: match (job_plan_id, i.job_plan_id) {
                        (Some(want), Some(have)) => Some(want == have),
                        _ => None,
                    },
                }
            })
            .collect();
        Ok((out, complete))
    }
}

/// Reads a job list page by page (`page(0)`, `page(1)`, ...; newest first upstream) until a
/// short page, a page whose rows are all `older` than the window, or [`SEARCH_MAX_PAGES`].
/// Returns the rows read and whether the whole window was seen (`false` at the page limit).
async fn paged<R, Fut>(
    mut page: impl FnMut(u32) -> Fut,
    older: impl Fn(&R) -> bool,
) -> Result<(Vec<R>, bool), BkError>
where
    Fut: std::future::Future<Output = Result<Vec<R>, BkError>>,
{
    let mut rows = Vec::new();
    for index in 0..SEARCH_MAX_PAGES {
        let list = page(index).await?;
        let short = list.len() < SEARCH_PAGE as usize;
        let all_older = !list.is_empty() && list.iter().all(&older);
        rows.extend(list);
        if short || all_older {
            return Ok((rows, true));
        }
    }
    Ok((rows, false))
}

/// Whether two id lists hold the same ids, in any order.
fn same_set(a: &[i64], b: &[i64]) -> bool {
    let set = |v: &[i64]| v.iter().copied().collect::<std::collections::BTreeSet<_>>();
    set(a) == set(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of `len` rows each, `older` from `first_older` on (newest first, as upstream).
    async fn read(
        lens: &[usize],
        first_older: Option<u32>,
    ) -> (Result<(Vec<u32>, bool), BkError>, u32) {
        let calls = std::cell::Cell::new(0);
        let result = paged(
            |index| {
                calls.set(calls.get() + 1);
                let rows: Vec<u32> = (0..lens.get(index as usize).copied().unwrap_or(0))
                    .map(|_| index)
                    .collect();
                async move { Ok(rows) }
            },
            |page: &u32| first_older.is_some_and(|o| *page >= o),
        )
        .await;
        (result, calls.get())
    }

    #[tokio::test]
    async fn a_paged_search_stops_at_the_windows_end_and_says_when_it_did_not_reach_it() {
        let full = SEARCH_PAGE as usize;
        // A short page is the list's end.
        let (r, calls) = read(&[full, 3], None).await;
        assert_eq!((r.expect("read").1, calls), (true, 2));
        // A page entirely older than the window ends it.
        let (r, calls) = read(&[full, full, full], Some(1)).await;
        assert_eq!((r.expect("read").1, calls), (true, 2));
        // Full pages up to the limit: jobs may exist that were not seen.
        let (r, calls) = read(&[full; 10], None).await;
        let (rows, complete) = r.expect("read");
        assert!(!complete);
        assert_eq!(calls, SEARCH_MAX_PAGES);
        assert_eq!(rows.len(), full * SEARCH_MAX_PAGES as usize);
        // An empty first page: nothing in the window.
        let (r, _) = read(&[], None).await;
        assert_eq!(r.expect("read"), (Vec::new(), true));
    }
}
