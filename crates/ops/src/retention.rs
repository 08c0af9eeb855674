//! Retention: which backups to keep.
//!
//! [`plan`] decides, for every backup, whether it is kept or removed, following the semantics of
//! restic's `forget --keep-daily N --keep-weekly N --keep-monthly N` (see `restic-forget(1)`),
//! plus one rule of this project:
//!
//! * **Rules are OR-ed.** A backup is kept when at least one rule keeps it; [`Decision::reasons`]
//!   lists every rule that did.
//! * **Buckets.** Each rule groups backups by a calendar period in UTC: the calendar day
//!   (`--keep-daily`), the ISO 8601 week (`--keep-weekly`; weeks start on Monday and the week
//!   that contains 1 January may belong to the previous ISO year) or the calendar month
//!   (`--keep-monthly`).
//! * **Newest of the first N buckets.** For each rule, backups are walked newest first; the newest
//!   backup of each of the first N distinct buckets is kept. Only buckets that hold a backup are
//!   counted: a month without backups does not use up one of the N months, so the rule reaches
//!   further back.
//! * **The oldest backup.** restic: "If there are not enough snapshots to keep one for each
//!   duration related `--keep-{within-,}*` option, the oldest snapshot in the group is kept
//!   additionally." As in restic's `ApplyPolicy`, a rule that still has buckets left when it
//!   reaches the oldest backup keeps it. If the oldest backup opens a bucket of its own it is
//!   simply that bucket's newest backup and carries the rule's own reason (for example
//!   [`Reason::Daily`]); if it shares a bucket with a newer kept backup it is kept *additionally*
//!   and carries [`Reason::Oldest`] (restic's "oldest daily snapshot" and so on). With N or more
//!   buckets the rule keeps exactly N backups and the oldest is not kept because of it.
//! * **The newest verified backup is never removed** (this project's rule, not restic's): it is
//!   kept whatever the policy and carries [`Reason::NewestVerified`].
//!
//! Backups are ordered newest first by `taken_at`; backups taken at the same instant are ordered
//! by `id`, the greater `id` counting as the newer, so the plan never depends on the order of the
//! input. Backups with the same `id` are not merged: each candidate gets its own decision.
//!
//! A policy that keeps nothing would delete every backup but the newest verified one, so
//! [`RetentionPolicy::new`] refuses it with [`RetentionError::KeepsNothing`]. The fields are public,
//! so such a policy can still be built by hand; [`plan`] then removes nothing, as restic's `forget`
//! does when no policy is given ("no policy was specified, no snapshots will be removed").

use std::cmp::Reverse;
use std::fmt;

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;

/// How many days, ISO weeks and months of backups to keep; see the [module documentation](self).
///
/// [`RetentionPolicy::new`] is the checked constructor; [`Default`] keeps 7 daily, 4 weekly and
/// 12 monthly backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RetentionPolicy {
    /// Keep the newest backup of each of this many most recent calendar days that have backups.
    pub daily: u32,
    /// Keep the newest backup of each of this many most recent ISO weeks that have backups.
    pub weekly: u32,
    /// Keep the newest backup of each of this many most recent calendar months that have backups.
    pub monthly: u32,
}

impl RetentionPolicy {
    /// A policy keeping `daily` days, `weekly` ISO weeks and `monthly` months of backups.
    ///
    /// Refuses a policy in which all three are 0, which would keep nothing.
    pub const fn new(daily: u32, weekly: u32, monthly: u32) -> Result<Self, RetentionError> {
        let policy = Self { daily, weekly, monthly };
        if policy.is_empty() {
            Err(RetentionError::KeepsNothing)
        } else {
            Ok(policy)
        }
    }

    /// Whether every rule is 0, so that the policy on its own keeps nothing.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.daily == 0 && self.weekly == 0 && self.monthly == 0
    }
}

impl Default for RetentionPolicy {
    /// 7 daily, 4 weekly and 12 monthly backups.
    fn default() -> Self {
        Self {
            daily: 7,
            weekly: 4,
            monthly: 12,
        }
    }
}

/// Why a [`RetentionPolicy`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    /// Daily, weekly and monthly are all 0: the policy would remove every backup.
    #[error("retention policy keeps nothing: daily, weekly and monthly are all 0")]
    KeepsNothing,
}

/// One backup to decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The backup's identifier, copied into its [`Decision`]; also breaks ties on `taken_at`.
    pub id: &'a str,
    /// When the backup was taken; buckets are calendar periods in UTC.
    pub taken_at: DateTime<Utc>,
    /// Whether the backup was proven by a restore; the newest verified backup is always kept.
    pub verified: bool,
}

/// Why a backup is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The newest backup of one of the `daily` most recent days with backups.
    Daily,
    /// The newest backup of one of the `weekly` most recent ISO weeks with backups.
    Weekly,
    /// The newest backup of one of the `monthly` most recent months with backups.
    Monthly,
    /// The oldest backup, kept additionally because a rule had fewer buckets than it may keep.
    Oldest,
    /// The newest backup that was proven by a restore; never removed.
    NewestVerified,
}

impl Reason {
    /// The reason's name, as shown and as serialized: `daily`, `weekly`, `monthly`, `oldest` or
    /// `newest_verified`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Oldest => "oldest",
            Self::NewestVerified => "newest_verified",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The backup's identifier, from its [`Candidate`].
    pub id: String,
    /// When the backup was taken.
    pub taken_at: DateTime<Utc>,
    /// Whether the backup is kept; `false` means it may be removed.
    pub keep: bool,
    /// Every reason the backup is kept, in the order of [`Reason`]'s variants; empty for a backup
    /// that is removed, and for every backup under a policy that keeps nothing (which removes
    /// nothing, see the [module documentation](self)).
    pub reasons: Vec<Reason>,
}

/// The calendar period a rule buckets backups by.
#[derive(Debug, Clone, Copy)]
enum Period {
    Day,
    IsoWeek,
    Month,
}

impl Period {
    /// The bucket `at` falls in; equal keys mean the same period.
    fn bucket(self, at: DateTime<Utc>) -> (i32, u32, u32) {
        match self {
            Self::Day => (at.year(), at.month(), at.day()),
            Self::IsoWeek => {
                let week = at.iso_week();
                (week.year(), week.week(), 0)
            }
            Self::Month => (at.year(), at.month(), 0),
        }
    }

    const fn reason(self) -> Reason {
        match self {
            Self::Day => Reason::Daily,
            Self::IsoWeek => Reason::Weekly,
            Self::Month => Reason::Monthly,
        }
    }
}

/// Decides, for every candidate, whether it is kept under `policy`; see the
/// [module documentation](self) for the rules.
///
/// Returns one decision per candidate, newest first (ties on `taken_at` broken by `id`), the same
/// whatever the order of `candidates`.
#[must_use]
pub fn plan(candidates: &[Candidate<'_>], policy: RetentionPolicy) -> Vec<Decision> {
    let mut newest_first: Vec<&Candidate<'_>> = candidates.iter().collect();
    newest_first.sort_unstable_by_key(|c| Reverse((c.taken_at, c.id, c.verified)));

    let mut reasons = vec![Vec::new(); newest_first.len()];
    for (period, count) in [
        (Period::Day, policy.daily),
        (Period::IsoWeek, policy.weekly),
        (Period::Month, policy.monthly),
    ] {
        apply_rule(&newest_first, period, count, &mut reasons);
    }
    if let Some(index) = newest_first.iter().position(|c| c.verified) {
        reasons[index].push(Reason::NewestVerified);
    }

    newest_first
        .into_iter()
        .zip(reasons)
        .map(|(candidate, mut reasons)| {
            reasons.sort_unstable();
            reasons.dedup();
            Decision {
                id: candidate.id.to_owned(),
                taken_at: candidate.taken_at,
                keep: policy.is_empty() || !reasons.is_empty(),
                reasons,
            }
        })
        .collect()
}

/// Applies one `--keep-*` rule to `newest_first`, adding its reason to `reasons` (same indices).
///
/// Mirrors restic's `ApplyPolicy`: while the rule has buckets left, the first backup of each new
/// bucket is kept, and so is the very oldest backup even if its bucket is already represented.
fn apply_rule(newest_first: &[&Candidate<'_>], period: Period, count: u32, reasons: &mut [Vec<Reason>]) {
    let mut left = count;
    let mut previous = None;
    let oldest = newest_first.len().saturating_sub(1);
    for (index, candidate) in newest_first.iter().enumerate() {
        if left == 0 {
            break;
        }
        let bucket = period.bucket(candidate.taken_at);
        if previous != Some(bucket) {
            reasons[index].push(period.reason());
        } else if index == oldest {
            reasons[index].push(Reason::Oldest);
        } else {
            continue;
        }
        previous = Some(bucket);
        left -= 1;
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, NaiveDateTime};

    use super::*;
    use Reason::{Daily, Monthly, NewestVerified, Oldest, Weekly};

    /// Backups as (id, verified); the id is the backup's `taken_at` written as `YYYY-MM-DDTHH:MM`.
    type Backups<'a> = &'a [(&'a str, bool)];
    /// The backups a plan keeps, newest first, with their reasons.
    type Kept<'a> = &'a [(&'a str, &'a [Reason])];

    const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M";

    /// Parses `YYYY-MM-DDTHH:MM` as UTC.
    fn at(text: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(text, TIME_FORMAT)
            .expect("test timestamps are written as YYYY-MM-DDTHH:MM")
            .and_utc()
    }

    /// `count` backup ids (their own timestamps), `step` apart, the newest at `newest`.
    fn series(newest: &str, step: Duration, count: u32) -> Vec<String> {
        let newest = at(newest);
        (0..count)
            .map(|i| {
                (newest - step * i32::try_from(i).expect("small count"))
                    .format(TIME_FORMAT)
                    .to_string()
            })
            .collect()
    }

    /// Candidates whose id is their `taken_at` written as `YYYY-MM-DDTHH:MM`.
    fn candidates<'a>(backups: &[(&'a str, bool)]) -> Vec<Candidate<'a>> {
        backups
            .iter()
            .map(|&(id, verified)| Candidate {
                id,
                taken_at: at(id),
                verified,
            })
            .collect()
    }

    fn unverified(ids: &[String]) -> Vec<(&str, bool)> {
        ids.iter().map(|id| (id.as_str(), false)).collect()
    }

    fn policy(daily: u32, weekly: u32, monthly: u32) -> RetentionPolicy {
        RetentionPolicy::new(daily, weekly, monthly).expect("test policies keep something")
    }

    /// Plans `backups` (id = timestamp, verified) and checks that exactly the `kept` ids are kept,
    /// newest first, each with exactly its reasons, and that every other backup is removed.
    #[track_caller]
    fn check(backups: Backups<'_>, policy: RetentionPolicy, kept: Kept<'_>) {
        let decisions = plan(&candidates(backups), policy);
        assert_eq!(decisions.len(), backups.len(), "one decision per backup");
        assert!(
            decisions
                .windows(2)
                .all(|w| (w[0].taken_at, &w[0].id) >= (w[1].taken_at, &w[1].id)),
            "decisions are newest first"
        );
        for decision in &decisions {
            assert_eq!(decision.taken_at, at(&decision.id), "taken_at is carried over");
            assert_eq!(
                decision.keep,
                !decision.reasons.is_empty(),
                "{}: keep iff a reason",
                decision.id
            );
        }
        let actual: Vec<(&str, &[Reason])> = decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| (d.id.as_str(), d.reasons.as_slice()))
            .collect();
        assert_eq!(actual, kept);
    }

    #[test]
    fn two_years_of_daily_backups_keep_exactly_the_stated_days() {
        // 730 daily backups at 02:00 UTC, 2024-12-02 .. 2026-12-01 (a Tuesday; ISO week Mon 30 Nov).
        let ids = series("2026-12-01T02:00", Duration::days(1), 730);
        assert_eq!(ids.last().map(String::as_str), Some("2024-12-02T02:00"));
        let kept: Kept<'_> = &[
            // Daily: the 7 newest days. Weekly: the newest of the weeks starting 30 Nov, 23 Nov,
            // 16 Nov and 9 Nov. Monthly: the newest of each month, December 2026 back to January 2026.
            ("2026-12-01T02:00", &[Daily, Weekly, Monthly]),
            ("2026-11-30T02:00", &[Daily, Monthly]),
            ("2026-11-29T02:00", &[Daily, Weekly]),
            ("2026-11-28T02:00", &[Daily]),
            ("2026-11-27T02:00", &[Daily]),
            ("2026-11-26T02:00", &[Daily]),
            ("2026-11-25T02:00", &[Daily]),
            ("2026-11-22T02:00", &[Weekly]),
            ("2026-11-15T02:00", &[Weekly]),
            ("2026-10-31T02:00", &[Monthly]),
            ("2026-09-30T02:00", &[Monthly]),
            ("2026-08-31T02:00", &[Monthly]),
            ("2026-07-31T02:00", &[Monthly]),
            ("2026-06-30T02:00", &[Monthly]),
            ("2026-05-31T02:00", &[Monthly]),
            ("2026-04-30T02:00", &[Monthly]),
            ("2026-03-31T02:00", &[Monthly]),
            ("2026-02-28T02:00", &[Monthly]),
            ("2026-01-31T02:00", &[Monthly]),
        ];
        // 7 daily + 4 weekly + 12 monthly, less the overlaps: weekly shares 1 Dec and 29 Nov with
        // daily, monthly shares 1 Dec and 30 Nov: 7 + 2 + 10.
        assert_eq!(kept.len(), 19);
        check(&unverified(&ids), RetentionPolicy::default(), kept);

        let decisions = plan(&candidates(&unverified(&ids)), RetentionPolicy::default());
        assert_eq!(decisions.iter().filter(|d| d.keep).count(), 19);
        assert!(
            decisions
                .iter()
                .filter(|d| d.keep)
                .all(|d| d.taken_at >= at("2026-01-31T02:00")),
            "nothing older than the 12th month survives; the oldest backup has enough buckets before it"
        );

        // All verified: the newest verified backup is 1 Dec, already kept; nothing more survives.
        let verified: Vec<(&str, bool)> = ids.iter().map(|id| (id.as_str(), true)).collect();
        let decisions = plan(&candidates(&verified), RetentionPolicy::default());
        assert_eq!(decisions.iter().filter(|d| d.keep).count(), 19);
        assert_eq!(decisions[0].reasons, [Daily, Weekly, Monthly, NewestVerified]);
    }

    #[test]
    fn several_backups_a_day_keep_the_newest_of_each_day() {
        // Every 6 hours for 10 days: 00:00, 06:00, 12:00 and 18:00.
        let ids = series("2026-03-10T18:00", Duration::hours(6), 40);
        check(
            &unverified(&ids),
            policy(7, 0, 0),
            &[
                ("2026-03-10T18:00", &[Daily]),
                ("2026-03-09T18:00", &[Daily]),
                ("2026-03-08T18:00", &[Daily]),
                ("2026-03-07T18:00", &[Daily]),
                ("2026-03-06T18:00", &[Daily]),
                ("2026-03-05T18:00", &[Daily]),
                ("2026-03-04T18:00", &[Daily]),
            ],
        );
    }

    #[test]
    fn days_are_utc_calendar_days() {
        // 23:59 and 00:01 UTC are different days even though they are two minutes apart.
        check(
            &[
                ("2026-03-10T00:01", false),
                ("2026-03-09T23:59", false),
                ("2026-03-09T12:00", false),
            ],
            policy(2, 0, 0),
            &[("2026-03-10T00:01", &[Daily]), ("2026-03-09T23:59", &[Daily])],
        );
    }

    #[test]
    fn iso_weeks_straddle_the_new_year() {
        // Thu 1 Jan 2026 is in ISO week 2026-W01, which starts on Mon 29 Dec 2025; Sun 28 Dec
        // 2025 is in 2025-W52. One weekly bucket spans the two calendar years.
        check(
            &[
                ("2026-01-02T02:00", false),
                ("2025-12-29T02:00", false),
                ("2025-12-28T02:00", false),
                ("2025-12-22T02:00", false),
            ],
            policy(0, 2, 0),
            &[("2026-01-02T02:00", &[Weekly]), ("2025-12-28T02:00", &[Weekly])],
        );
    }

    #[test]
    fn months_without_backups_are_not_counted() {
        // The 10th and 20th of January..May 2026, except March.
        let backups: Vec<(&str, bool)> = [
            "2026-05-20T02:00",
            "2026-05-10T02:00",
            "2026-04-20T02:00",
            "2026-04-10T02:00",
            "2026-02-20T02:00",
            "2026-02-10T02:00",
            "2026-01-20T02:00",
            "2026-01-10T02:00",
        ]
        .into_iter()
        .map(|id| (id, false))
        .collect();
        // Three months with backups: May, April and, skipping empty March, February.
        check(
            &backups,
            policy(0, 0, 3),
            &[
                ("2026-05-20T02:00", &[Monthly]),
                ("2026-04-20T02:00", &[Monthly]),
                ("2026-02-20T02:00", &[Monthly]),
            ],
        );
    }

    #[test]
    fn fewer_buckets_than_the_policy_allows_keep_the_oldest_too() {
        let cases: &[(&str, Backups<'_>, RetentionPolicy, Kept<'_>)] = &[
            (
                // Mon..Wed of one week: every day is a daily bucket; the weekly and monthly rules
                // have one bucket each and keep the oldest additionally.
                "three days in one week",
                &[
                    ("2026-06-03T02:00", false),
                    ("2026-06-02T02:00", false),
                    ("2026-06-01T02:00", false),
                ],
                RetentionPolicy::default(),
                &[
                    ("2026-06-03T02:00", &[Daily, Weekly, Monthly]),
                    ("2026-06-02T02:00", &[Daily]),
                    ("2026-06-01T02:00", &[Daily, Oldest]),
                ],
            ),
            (
                // One month, 12 allowed: the newest, and the oldest additionally; the middle one goes.
                "three backups in one month",
                &[
                    ("2026-06-20T02:00", false),
                    ("2026-06-15T02:00", false),
                    ("2026-06-10T02:00", false),
                ],
                policy(0, 0, 12),
                &[("2026-06-20T02:00", &[Monthly]), ("2026-06-10T02:00", &[Oldest])],
            ),
            (
                // The oldest opens a bucket of its own: kept as that month's newest, not as Oldest.
                "oldest alone in its month",
                &[
                    ("2026-06-20T02:00", false),
                    ("2026-06-10T02:00", false),
                    ("2026-05-10T02:00", false),
                ],
                policy(0, 0, 12),
                &[("2026-06-20T02:00", &[Monthly]), ("2026-05-10T02:00", &[Monthly])],
            ),
            (
                // Exactly as many buckets as allowed: no count is left for the oldest.
                "exactly n buckets",
                &[
                    ("2026-06-02T13:00", false),
                    ("2026-06-02T01:00", false),
                    ("2026-06-01T13:00", false),
                    ("2026-06-01T01:00", false),
                ],
                policy(2, 0, 0),
                &[("2026-06-02T13:00", &[Daily]), ("2026-06-01T13:00", &[Daily])],
            ),
            (
                "a single backup",
                &[("2026-06-01T02:00", false)],
                RetentionPolicy::default(),
                &[("2026-06-01T02:00", &[Daily, Weekly, Monthly])],
            ),
        ];
        for &(name, backups, policy, kept) in cases {
            let decisions = plan(&candidates(backups), policy);
            let actual: Vec<(&str, &[Reason])> = decisions
                .iter()
                .filter(|d| d.keep)
                .map(|d| (d.id.as_str(), d.reasons.as_slice()))
                .collect();
            assert_eq!(actual, kept, "{name}");
            check(backups, policy, kept);
        }
    }

    #[test]
    fn newest_verified_backup_is_kept_whatever_the_policy() {
        // Only the 3-day-old and the 5-day-old backups were verified; the daily rule keeps one day.
        check(
            &[
                ("2026-06-06T02:00", false),
                ("2026-06-05T02:00", false),
                ("2026-06-04T02:00", false),
                ("2026-06-03T02:00", true),
                ("2026-06-02T02:00", false),
                ("2026-06-01T02:00", true),
            ],
            policy(1, 0, 0),
            &[("2026-06-06T02:00", &[Daily]), ("2026-06-03T02:00", &[NewestVerified])],
        );
        // Kept by a rule as well: both reasons are given.
        check(
            &[("2026-06-06T02:00", true), ("2026-06-05T02:00", true)],
            policy(1, 0, 0),
            &[("2026-06-06T02:00", &[Daily, NewestVerified])],
        );
        // No verified backup: the rules alone decide.
        check(
            &[("2026-06-06T02:00", false), ("2026-06-05T02:00", false)],
            policy(1, 0, 0),
            &[("2026-06-06T02:00", &[Daily])],
        );
    }

    #[test]
    fn input_order_does_not_change_the_plan() {
        let ids = series("2026-12-01T02:00", Duration::hours(7), 400);
        let mut backups: Vec<(&str, bool)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i % 13 == 5))
            .collect();
        // Two backups taken at the same instant, told apart by id.
        let tie = [
            Candidate {
                id: "b",
                taken_at: at("2026-11-30T02:00"),
                verified: false,
            },
            Candidate {
                id: "a",
                taken_at: at("2026-11-30T02:00"),
                verified: false,
            },
        ];
        let expected = {
            let mut all = candidates(&backups);
            all.extend(tie);
            plan(&all, RetentionPolicy::default())
        };
        assert!(expected.iter().any(|d| d.keep) && expected.iter().any(|d| !d.keep));

        // A deterministic Fisher-Yates shuffle driven by xorshift64, a few times over.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..5 {
            for i in (1..backups.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let j = usize::try_from(state % (i as u64 + 1)).expect("index fits usize");
                backups.swap(i, j);
            }
            let mut shuffled = candidates(&backups);
            if round % 2 == 0 {
                shuffled.extend(tie);
            } else {
                shuffled.extend(tie.iter().rev());
            }
            assert_eq!(plan(&shuffled, RetentionPolicy::default()), expected, "round {round}");
            shuffled.reverse();
            assert_eq!(
                plan(&shuffled, RetentionPolicy::default()),
                expected,
                "round {round}, reversed"
            );
        }
    }

    #[test]
    fn ties_on_taken_at_are_broken_by_id() {
        let tie = |first: &'static str, second: &'static str| {
            plan(
                &[
                    Candidate {
                        id: first,
                        taken_at: at("2026-06-01T02:00"),
                        verified: false,
                    },
                    Candidate {
                        id: second,
                        taken_at: at("2026-06-01T02:00"),
                        verified: false,
                    },
                ],
                policy(1, 0, 0),
            )
        };
        let decisions = tie("a", "b");
        assert_eq!(decisions, tie("b", "a"));
        let order: Vec<(&str, bool)> = decisions.iter().map(|d| (d.id.as_str(), d.keep)).collect();
        // The greater id counts as the newer: it is listed first and kept as the day's newest.
        assert_eq!(order, [("b", true), ("a", false)]);
    }

    #[test]
    fn empty_input_gives_an_empty_plan() {
        assert_eq!(plan(&[], RetentionPolicy::default()), []);
        assert_eq!(
            plan(
                &[],
                RetentionPolicy {
                    daily: 0,
                    weekly: 0,
                    monthly: 0
                }
            ),
            []
        );
    }

    #[test]
    fn a_policy_that_keeps_nothing_is_refused() {
        assert_eq!(RetentionPolicy::new(0, 0, 0), Err(RetentionError::KeepsNothing));
        assert_eq!(
            RetentionError::KeepsNothing.to_string(),
            "retention policy keeps nothing: daily, weekly and monthly are all 0"
        );
        for (daily, weekly, monthly) in [(1, 0, 0), (0, 1, 0), (0, 0, 1), (7, 4, 12)] {
            assert_eq!(
                RetentionPolicy::new(daily, weekly, monthly),
                Ok(RetentionPolicy { daily, weekly, monthly })
            );
        }
        assert_eq!(RetentionPolicy::default(), policy(7, 4, 12));
    }

    #[test]
    fn a_hand_built_empty_policy_removes_nothing() {
        let backups = [("2026-06-02T02:00", false), ("2026-06-01T02:00", true)];
        let decisions = plan(
            &candidates(&backups),
            RetentionPolicy {
                daily: 0,
                weekly: 0,
                monthly: 0,
            },
        );
        let actual: Vec<(&str, bool, &[Reason])> = decisions
            .iter()
            .map(|d| (d.id.as_str(), d.keep, d.reasons.as_slice()))
            .collect();
        assert_eq!(
            actual,
            [
                ("2026-06-02T02:00", true, &[][..]),
                ("2026-06-01T02:00", true, &[NewestVerified][..])
            ]
        );
    }

    #[test]
    fn reasons_display_and_serialize_in_snake_case() {
        for (reason, name) in [
            (Daily, "daily"),
            (Weekly, "weekly"),
            (Monthly, "monthly"),
            (Oldest, "oldest"),
            (NewestVerified, "newest_verified"),
        ] {
            assert_eq!(reason.to_string(), name);
            assert_eq!(serde_json::to_value(reason).expect("a reason serializes"), name);
        }
        let decisions = plan(&candidates(&[("2026-06-01T02:00", true)]), policy(1, 0, 0));
        assert_eq!(
            serde_json::to_value(&decisions).expect("decisions serialize"),
            serde_json::json!([{
                "id": "2026-06-01T02:00",
                "taken_at": "2026-06-01T02:00:00Z",
                "keep": true,
                "reasons": ["daily", "newest_verified"],
            }])
        );
        assert_eq!(
            serde_json::to_value(RetentionPolicy::default()).expect("a policy serializes"),
            serde_json::json!({ "daily": 7, "weekly": 4, "monthly": 12 })
        );
    }
}
