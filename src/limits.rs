//! Upstream limits on the values bkops sends, each in one place with where it comes from. The
//! CRD types bound what a person may give with them; the run lifecycle cuts what bkops composes
//! to them, so that BlueKing never refuses a value bkops built.
//!
//! Values bkops composes and their limits:
//! - BKFlow task `name` (the object's or `spec.name`, plus ` [bkops:<run key>]`): cut to
//!   [`BKFLOW_TASK_NAME_MAX_CHARS`], keeping the run key whole.
//! - BKFlow task `description`: the user's own, as given. BKFlow stores it in a text column and
//!   its serializers set no maximum length, so there is nothing to cut.
//! - BKFlow `creator`: `spec.creator` as given, bounded by [`BKFLOW_USER_NAME_MAX_CHARS`].
//! - GSEKit `extra_data` (the user's object plus `bkops_run_key`): GSEKit takes any JSON object
//!   there and sets no size limit; the run key is at most [`RUN_KEY_MAX_CHARS`] characters.

/// Longest BKFlow task `name`, in characters. BKFlow's `MAX_LEN_OF_TASK_NAME` (`bkflow/constants.py`):
/// the `max_length` of `name` in its `create_task` and `create_task_without_template` request
/// serializers and of the task instance's `name` column. A longer name is refused with HTTP 400.
pub const BKFLOW_TASK_NAME_MAX_CHARS: usize = 128;

/// Longest BKFlow user name, in characters. BKFlow's `USER_NAME_MAX_LENGTH`
/// (`bkflow/constants.py`): the `max_length` of `creator` in the create calls and of `operator`
/// in `operate_task`.
pub const BKFLOW_USER_NAME_MAX_CHARS: usize = 32;

/// Longest run key bkops makes (`<8 uid characters>-g<generation>-a<attempt>`, with the largest
/// generation and attempt): 8 + 2 + 19 + 2 + 10. bkops's own bound, so that what it appends to a
/// composed value has a known size.
pub const RUN_KEY_MAX_CHARS: usize = 41;
