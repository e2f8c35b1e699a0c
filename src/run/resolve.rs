//! What an unclear create became: a pure choice over what the search of the system's job list
//! found (`docs/architecture.md`, "Exactly once"; for people: `docs/troubleshooting.md`).
//!
//! A candidate must be this run's job, never merely a job of the same creator and time:
//! - where the system keeps the run key (BKFlow, in the task name), only a job
//!   carrying this run's key is one; when none exists once the grace window (longer than the
//!   create call's own timeout) has passed, nothing was created and the run is submitted again;
//! - where it cannot (GSEKit, NodeMan, JOB), a job must match the request's content as far as the list
//!   and detail calls show it, and no other object may have claimed it; otherwise a person
//!   decides (`Unknown`, with the plausible jobs listed). Never submitted again on a guess.

use std::time::Duration;

use super::reason;

/// One job the search found, as far as the choice needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The job's id.
    pub id: String,
    /// The job carries this run's key.
    pub key_matched: bool,
    /// Whether the job matches the request's content (type, business, hosts or plan, scope):
    /// `None` when the system did not tell (e.g. NodeMan lists no hosts before its job starts).
    pub content_matched: Option<bool>,
    /// Another object (or run) already follows this job: `namespace/name` of it.
    pub claimed_by: Option<String>,
}

/// What the search came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// This job is the run's: follow it.
    Adopt(String),
    /// Look again soon: the grace window is still open.
    Wait,
    /// Nothing was created (the system keeps the key and no job carries it after the grace
    /// window): submit again, with an Event.
    NotSubmitted,
    /// A person decides.
    Unknown {
        /// `UnknownSubmission` or `AmbiguousSubmission`.
        reason: &'static str,
        /// The jobs that could be this run's.
        plausible: Vec<String>,
    },
}

/// The outcome of a search that found `found`, `searched_for` after the intent was written.
///
/// `stores_key`: the system keeps the run key on its jobs. `complete`: the search saw every job
/// of the window (it did not stop at its page limit); an incomplete search never concludes that
/// nothing was created. `grace`: how long after the intent a missing job may still appear
/// (longer than the create call's own timeout).
pub fn resolution(
    found: &[Found],
    stores_key: bool,
    complete: bool,
    searched_for: Duration,
    grace: Duration,
) -> Resolution {
    let plausible: Vec<&Found> = found
        .iter()
        .filter(|f| f.claimed_by.is_none())
        .filter(|f| {
            if stores_key {
                f.key_matched
            } else {
                f.content_matched != Some(false)
            }
        })
        .collect();
    let open = searched_for < grace;
    let certain = |f: &Found| stores_key || f.content_matched == Some(true);
    let ids = || plausible.iter().map(|f| f.id.clone()).collect::<Vec<_>>();
    match plausible.as_slice() {
        [one] if certain(one) => Resolution::Adopt(one.id.clone()),
        // A job whose content the system did not show yet: look again until the window closes.
        [_] if open => Resolution::Wait,
        [_] => Resolution::Unknown {
            reason: reason::UNKNOWN_SUBMISSION,
            plausible: ids(),
        },
        [] if open => Resolution::Wait,
        [] if stores_key && complete => Resolution::NotSubmitted,
        [] => Resolution::Unknown {
            reason: reason::UNKNOWN_SUBMISSION,
            plausible: Vec::new(),
        },
        // Jobs of other runs with the same content may still be claimed by their own runs as
        // those resolve: wait out the window before asking a person.
        _ if open && !stores_key => Resolution::Wait,
        _ => Resolution::Unknown {
            reason: reason::AMBIGUOUS_SUBMISSION,
            plausible: ids(),
        },
    }
}

/// How long after its intent an unclear create is searched for before the search concludes:
/// the operator's grace, and never less than the create call's own timeout plus a margin, so
/// that a create still on its way cannot land after the search gave up on it.
pub fn grace(resolve_grace: Duration, create_timeout: Duration) -> Duration {
    resolve_grace.max(create_timeout + Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, key: bool, content: Option<bool>, claimed: Option<&str>) -> Found {
        Found {
            id: id.to_owned(),
            key_matched: key,
            content_matched: content,
            claimed_by: claimed.map(str::to_owned),
        }
    }

    const GRACE: Duration = Duration::from_secs(60);
    const EARLY: Duration = Duration::from_secs(5);
    const LATE: Duration = Duration::from_secs(61);

    fn unknown(reason: &'static str, ids: &[&str]) -> Resolution {
        Resolution::Unknown {
            reason,
            plausible: ids.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn systems_that_keep_the_key_take_only_jobs_carrying_it() {
        let other = job("7", false, Some(true), None);
        let ours = job("8", true, Some(true), None);
        let cases: Vec<(Vec<Found>, bool, Duration, Resolution)> = vec![
            // Another object's job, however alike, is never this run's.
            (vec![other.clone()], true, EARLY, Resolution::Wait),
            (vec![other.clone()], true, LATE, Resolution::NotSubmitted),
            (
                vec![other.clone(), ours.clone()],
                true,
                EARLY,
                Resolution::Adopt("8".into()),
            ),
            (vec![], true, LATE, Resolution::NotSubmitted),
            // A search that stopped at its page limit proves nothing.
            (
                vec![],
                false,
                LATE,
                unknown(reason::UNKNOWN_SUBMISSION, &[]),
            ),
            // Two jobs with this run's key: something is off; a person looks.
            (
                vec![ours.clone(), job("9", true, Some(true), None)],
                true,
                EARLY,
                unknown(reason::AMBIGUOUS_SUBMISSION, &["8", "9"]),
            ),
            // Followed by someone else already: not a candidate.
            (
                vec![job("8", true, Some(true), Some("b/y"))],
                true,
                EARLY,
                Resolution::Wait,
            ),
        ];
        for (found, complete, after, want) in cases {
            assert_eq!(
                resolution(&found, true, complete, after, GRACE),
                want,
                "{found:?} complete={complete} after={after:?}"
            );
        }
    }

    #[test]
    fn systems_without_the_key_need_matching_content_and_no_other_claim() {
        let cases: Vec<(Vec<Found>, Duration, Resolution)> = vec![
            (
                vec![job("1", false, Some(true), None)],
                EARLY,
                Resolution::Adopt("1".into()),
            ),
            // Same creator and time, other hosts: not a candidate; never resubmitted.
            (
                vec![job("1", false, Some(false), None)],
                EARLY,
                Resolution::Wait,
            ),
            (
                vec![job("1", false, Some(false), None)],
                LATE,
                unknown(reason::UNKNOWN_SUBMISSION, &[]),
            ),
            // Claimed by the object that created it.
            (
                vec![job("1", false, Some(true), Some("a/x"))],
                LATE,
                unknown(reason::UNKNOWN_SUBMISSION, &[]),
            ),
            (
                vec![
                    job("1", false, Some(true), Some("a/x")),
                    job("2", false, Some(true), None),
                ],
                EARLY,
                Resolution::Adopt("2".into()),
            ),
            // Several alike: wait out the window (their own runs may claim them), then ask.
            (
                vec![
                    job("1", false, Some(true), None),
                    job("2", false, Some(true), None),
                ],
                EARLY,
                Resolution::Wait,
            ),
            (
                vec![
                    job("1", false, Some(true), None),
                    job("2", false, Some(true), None),
                ],
                LATE,
                unknown(reason::AMBIGUOUS_SUBMISSION, &["1", "2"]),
            ),
            (vec![], LATE, unknown(reason::UNKNOWN_SUBMISSION, &[])),
            // Content not shown yet: never adopted on a guess; named once the window closes.
            (vec![job("3", false, None, None)], EARLY, Resolution::Wait),
            (
                vec![job("3", false, None, None)],
                LATE,
                unknown(reason::UNKNOWN_SUBMISSION, &["3"]),
            ),
            (
                vec![
                    job("1", false, Some(true), None),
                    job("3", false, None, None),
                ],
                LATE,
                unknown(reason::AMBIGUOUS_SUBMISSION, &["1", "3"]),
            ),
        ];
        for (found, after, want) in cases {
            assert_eq!(
                resolution(&found, false, true, after, GRACE),
                want,
                "{found:?} after={after:?}"
            );
        }
    }

    #[test]
    fn the_grace_outlasts_the_create_calls_timeout() {
        let s = Duration::from_secs;
        assert_eq!(grace(s(240), s(30)), s(240));
        assert_eq!(grace(s(3), s(30)), s(35));
        assert_eq!(grace(s(3), s(2)), s(7));
    }
}
