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
/// (longer than the create call's own timeout). `contested`: another object's run with the same
/// content has an unclear create too (intent written, no job recorded), so a job that matches by
/// content could as well be that run's: where the system does not keep the key, it is never
/// adopted then; a person decides.
pub fn resolution(
    found: &[Found],
    stores_key: bool,
    complete: bool,
    searched_for: Duration,
    grace: Duration,
    contested: bool,
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
    let contested = contested && !stores_key;
    // A content match is this run's job only if the search saw every candidate: an incomplete
    // one may have missed this run's own job, and the one it shows may be another's.
    let certain =
        |f: &Found| stores_key || (f.content_matched == Some(true) && !contested && complete);
    let ids = || plausible.iter().map(|f| f.id.clone()).collect::<Vec<_>>();
    match plausible.as_slice() {
        [one] if certain(one) => Resolution::Adopt(one.id.clone()),
        // A job whose content the system did not show yet, or one another unclear run may have
        // made: look again until the window closes (the other run may record it meanwhile).
        [_] if open => Resolution::Wait,
        [_] => Resolution::Unknown {
            reason: if contested {
                reason::AMBIGUOUS_SUBMISSION
            } else {
                reason::UNKNOWN_SUBMISSION
            },
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

/// The margin between the latest a create can land and the earliest a search concludes it was
/// never made: covers the clocks of two operator processes disagreeing by a few seconds.
pub const CLOCK_MARGIN: Duration = Duration::from_secs(5);
/// The shortest time a create may take to be sent after its intent.
pub const MIN_SEND_WINDOW: Duration = Duration::from_secs(10);

/// How long after its intent an unclear create is searched for before the search concludes:
/// the operator's grace, and never less than a create's send window plus its call timeout plus
/// [`CLOCK_MARGIN`], so that a create still on its way cannot land after the search gave up on it.
pub fn grace(resolve_grace: Duration, create_timeout: Duration) -> Duration {
    resolve_grace.max(MIN_SEND_WINDOW + create_timeout + CLOCK_MARGIN)
}

/// How long after its intent a create may still be sent: a create sent later could land after
/// a search (by another operator process, with the same `grace`) concluded that nothing was
/// created, and the run would be submitted twice. A create that cannot be sent in time is not
/// sent; the run is tried again as one whose create was not made.
pub fn send_window(grace: Duration, create_timeout: Duration) -> Duration {
    grace.saturating_sub(create_timeout + CLOCK_MARGIN)
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
                resolution(&found, true, complete, after, GRACE, false),
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
                resolution(&found, false, true, after, GRACE, false),
                want,
                "{found:?} after={after:?}"
            );
        }
        // A search that did not see every candidate never adopts by content: its one match may
        // be another run's job, and this run's own may be among those it did not see.
        let one = vec![job("1", false, Some(true), None)];
        assert_eq!(
            resolution(&one, false, false, EARLY, GRACE, false),
            Resolution::Wait
        );
        assert_eq!(
            resolution(&one, false, false, LATE, GRACE, false),
            unknown(reason::UNKNOWN_SUBMISSION, &["1"])
        );
    }

    #[test]
    fn a_content_match_another_unclear_run_could_have_made_is_never_adopted() {
        let one = job("1", false, Some(true), None);
        let cases: Vec<(Vec<Found>, bool, Duration, Resolution)> = vec![
            (
                vec![one.clone()],
                false,
                EARLY,
                Resolution::Adopt("1".into()),
            ),
            (vec![one.clone()], true, EARLY, Resolution::Wait),
            (
                vec![one.clone()],
                true,
                LATE,
                unknown(reason::AMBIGUOUS_SUBMISSION, &["1"]),
            ),
            // Claimed by the other run meanwhile: not a candidate.
            (
                vec![job("1", false, Some(true), Some("ns/other"))],
                true,
                LATE,
                unknown(reason::UNKNOWN_SUBMISSION, &[]),
            ),
        ];
        for (found, contested, after, want) in cases {
            assert_eq!(
                resolution(&found, false, true, after, GRACE, contested),
                want,
                "{found:?} contested={contested} after={after:?}"
            );
        }
        // Where the system keeps the key, the key decides.
        let keyed = job("8", true, Some(true), None);
        assert_eq!(
            resolution(&[keyed], true, true, EARLY, GRACE, true),
            Resolution::Adopt("8".into())
        );
    }

    #[test]
    fn the_grace_outlasts_the_create_calls_timeout() {
        let s = Duration::from_secs;
        assert_eq!(grace(s(240), s(30)), s(240));
        assert_eq!(grace(s(3), s(30)), s(45));
        assert_eq!(grace(s(3), s(2)), s(17));
        // A create sent at the end of its window and taking its whole timeout lands a clock
        // margin before the search may conclude; the window is never shorter than the minimum.
        for (resolve_grace, timeout) in [(240, 30), (3, 30), (3, 2), (60, 60), (600, 1)] {
            let (resolve_grace, timeout) = (s(resolve_grace), s(timeout));
            let g = grace(resolve_grace, timeout);
            let w = send_window(g, timeout);
            assert_eq!(
                w + timeout + CLOCK_MARGIN,
                g,
                "{resolve_grace:?} {timeout:?}"
            );
            assert!(w >= MIN_SEND_WINDOW, "{resolve_grace:?} {timeout:?}: {w:?}");
        }
        assert_eq!(send_window(s(240), s(30)), s(205));
    }
}
