"""Entered / exited / changed between the current members and the synced state. Pure.

The diff runs inside the state database, never in Python sets: at ten million members, both
sides in Python would take gigabytes. This module holds the rules as SQL text (no SQLAlchemy
import, no clock); audsync.state (plan.py, dialects.py) runs them. Both sides are keyed by
identity, compared byte for byte, so the source's collation, order and duplicates do not matter.

Vocabulary
- identity: "u" + user_id, or "a" + anonymous_id for a profile without a user id.
- staged rows (temporary `stage`): this run's source rows with their identity, duplicates
  included; a value is canonical JSON, NULL for an audience member (whose value is `true`).
- current (temporary view `cur`): one row per identity of the staged rows, with `conflict` = 1
  when the source gave one user several values (a computed trait); such a user is neither sent
  nor treated as gone. The diff reads the staged rows and folds only the users that changed.
- planned state P: the outbox row's value when the user has one (pending or rejected), else
  the acknowledged value in `members`, else absent. Diffing against P rather than against the
  acknowledged state means an undelivered change is not planned twice, and a rejected value is
  not resent until the source changes it again.

Changes
- enter: current, P absent -> `true` (computed trait: its value)
- change: current, P present and different (computed trait) -> the new value
- exit: not current, P present -> `false` (computed trait: `unset`, sent as `$unset`)
- resend: current and P equal; planned only by a backfill.
"""

from __future__ import annotations

from enum import StrEnum


class Change(StrEnum):
    """What a planned outbox row does to a user (module docstring). A StrEnum: the database
    stores, and the SQL above compares, the plain strings."""

    ENTER = "enter"
    CHANGE = "change"
    EXIT = "exit"
    UNSET = "unset"
    RESEND = "resend"


ENTER, CHANGE, EXIT, UNSET, RESEND = Change.ENTER, Change.CHANGE, Change.EXIT, Change.UNSET, Change.RESEND
CHANGES = tuple(Change)

AUDIENCE = "audience"
COMPUTED_TRAIT = "computed_trait"

TRUE = "true"  # the value of an audience member, as canonical JSON

# A user is a user id when there is one, else a device (anonymous id); the prefix keeps a user
# id and an anonymous id with the same text apart.
IDENTITY_SQL = "coalesce('u' || {user_id}, 'a' || {anonymous_id})"


def identity_sql(user_id: str = "user_id", anonymous_id: str = "anonymous_id") -> str:
    return IDENTITY_SQL.format(user_id=user_id, anonymous_id=anonymous_id)


def gone_change(kind: str) -> Change:
    """What leaving the audience (or losing the trait's value) means for this kind."""
    return EXIT if kind == AUDIENCE else UNSET


def _distinct(dialect: str, left: str, right: str) -> str:
    # NULL-safe inequality; SQLite before 3.39 knows only IS NOT.
    return f"{left} IS NOT {right}" if dialect == "sqlite" else f"{left} IS DISTINCT FROM {right}"


def current_view_sql(dialect: str, source: str = "stage") -> str:
    """One row per identity of the staged source rows (identity, user_id, anonymous_id, value,
    n, conflict).

    Duplicates with one value collapse into one row (the smallest ids win, deterministically);
    different values for one identity set `conflict`. Audience rows carry no value: a member's
    value is `true`.
    """
    conflict = _distinct(dialect, "min(value)", "max(value)")
    return (
        f"SELECT identity, min(user_id) AS user_id, min(anonymous_id) AS anonymous_id, "
        f"coalesce(min(value), '{TRUE}') AS value, count(*) AS n, "
        f"CASE WHEN {conflict} THEN 1 ELSE 0 END AS conflict FROM {source} GROUP BY identity"
    )


def _fold_postgresql(rows: str) -> str:
    """One row per identity of the change rows `rows` yields. PostgreSQL wants every selected
    column grouped or aggregated; within one identity the planned state and the value are the
    same on every row (conflicting users are left out), so min() only picks the smallest ids."""
    return (
        "SELECT d.identity AS identity, min(d.user_id) AS user_id, min(d.anonymous_id) AS anonymous_id, "
        f"min(d.value) AS value, min(d.change) AS change FROM ({rows}) d GROUP BY d.identity"
    )


def _not_conflicting(dialect: str, identity: str) -> str:
    if dialect == "sqlite":
        return f"{identity} NOT IN (SELECT identity FROM conflicts)"
    # A probe of the conflicts' primary key: NOT IN over a large list is not hashed by PostgreSQL.
    return f"NOT EXISTS (SELECT 1 FROM conflicts x WHERE x.identity = {identity})"


def staged_and_gone_sql(kind: str, *, backfill: bool, skip_conflicts: bool) -> str:
    """PostgreSQL, for an audience without open outbox rows (the usual case): the changes of
    staged_changes_sql and gone_members_sql from one full join of the staged rows and the
    members, one pass over both sides. The staged rows are not folded first: only those that
    survive the join are (10M members: the fold into a table of its own took as long as the join).
    """
    value = f"coalesce(s.value, '{TRUE}')"
    differs = _distinct("postgresql", "m.value", value)
    change = (
        f"CASE WHEN s.identity IS NULL THEN '{gone_change(kind)}' WHEN m.value IS NULL THEN '{ENTER}' "
        f"WHEN {differs} THEN '{CHANGE}' ELSE '{RESEND}' END"
    )
    keep = [] if backfill else [differs]
    if skip_conflicts:
        keep.append(_not_conflicting("postgresql", "s.identity"))
    where = f"WHERE s.identity IS NULL OR ({' AND '.join(keep)})" if keep else ""
    return _fold_postgresql(
        "SELECT coalesce(s.identity, m.identity) AS identity, "
        "CASE WHEN s.identity IS NULL THEN m.user_id ELSE s.user_id END AS user_id, "
        "CASE WHEN s.identity IS NULL THEN m.anonymous_id ELSE s.anonymous_id END AS anonymous_id, "
        f"CASE WHEN s.identity IS NULL THEN NULL ELSE {value} END AS value, {change} AS change "
        "FROM stage s FULL JOIN (SELECT identity, user_id, anonymous_id, value FROM members "
        f"WHERE audience_id = :aid) m ON m.identity = s.identity {where}"
    )


def all_entered_sql() -> str:
    """Every current user enters: the diff when there is no planned state at all (PostgreSQL's
    first sync). Read in `cur`'s own order, which is key order there."""
    return (
        f"SELECT c.identity AS identity, c.user_id AS user_id, c.anonymous_id AS anonymous_id, "
        f"c.value AS value, '{ENTER}' AS change FROM cur c WHERE c.conflict = 0"
    )


def staged_changes_sql(dialect: str, *, with_outbox: bool, backfill: bool, skip_conflicts: bool) -> str:
    """Rows that need an operation among the current users: identity, user_id, anonymous_id,
    value, change. Reads the staged rows (on SQLite through their covering index) and folds only
    those that differ from the planned state, much faster than folding every row first. All rows
    of one identity and value pass or fail together, so the fold sees each changed user whole;
    users with conflicting values (listed in `conflicts`) are left out.
    """
    planned = "CASE WHEN o.identity IS NOT NULL THEN o.value ELSE m.value END" if with_outbox else "m.value"
    outbox_join = (
        "LEFT JOIN outbox o ON o.audience_id = :aid AND o.identity = s.identity " if with_outbox else ""
    )
    value = f"coalesce(s.value, '{TRUE}')"
    differs = _distinct(dialect, planned, value)
    conditions = [] if backfill else [differs]
    if skip_conflicts:
        conditions.append(_not_conflicting(dialect, "s.identity"))
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    change = f"CASE WHEN {planned} IS NULL THEN '{ENTER}' WHEN {differs} THEN '{CHANGE}' ELSE '{RESEND}' END"
    joins = f"FROM stage s LEFT JOIN members m ON m.audience_id = :aid AND m.identity = s.identity {outbox_join}"
    if dialect != "sqlite":
        return _fold_postgresql(
            f"SELECT s.identity AS identity, s.user_id AS user_id, s.anonymous_id AS anonymous_id, "
            f"{value} AS value, {change} AS change {joins}{where}")
    # `planned` and `value` are the same on every row of a group: SQLite takes them as they are.
    return (
        "SELECT s.identity AS identity, min(s.user_id) AS user_id, min(s.anonymous_id) AS anonymous_id, "
        f"{value} AS value, {change} AS change {joins}{where}GROUP BY s.identity"
    )


def gone_members_sql(kind: str, *, with_outbox: bool = True) -> str:
    """Acknowledged members (without an open outbox row) that are no longer current: no staged
    row has their identity (a user with conflicting values is still current). Without open
    outbox rows there is nothing to look up there (10M members: 10M probes saved)."""
    no_plan = ("AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.audience_id = :aid AND o.identity = m.identity) "
               if with_outbox else "")
    return (
        f"SELECT m.identity AS identity, m.user_id AS user_id, m.anonymous_id AS anonymous_id, "
        f"NULL AS value, '{gone_change(kind)}' AS change FROM members m "
        f"WHERE m.audience_id = :aid {no_plan}"
        "AND NOT EXISTS (SELECT 1 FROM stage c WHERE c.identity = m.identity)"
    )


def gone_planned_sql(kind: str) -> str:
    """Users whose open plan gives them a value (pending or rejected) and who are no longer current."""
    return (
        f"SELECT o.identity AS identity, o.user_id AS user_id, o.anonymous_id AS anonymous_id, "
        f"NULL AS value, '{gone_change(kind)}' AS change FROM outbox o "
        "WHERE o.audience_id = :aid AND o.value IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM stage c WHERE c.identity = o.identity)"
    )


def plan_sql(select: str, *, upsert: bool, ordered: bool = False, counted: bool = False) -> str:
    """Write the changes a SELECT above yields into the outbox for run :run_id.

    With open outbox rows, a newer plan replaces the older one for that user (upsert): only the
    newest value is ever sent after it, never an older one. `ordered` inserts in key order
    (PostgreSQL, whose hash joins yield rows at random: rows inserted into the outbox's B-tree in
    random order touch a random page each, sorted ones fill pages in turn). `counted`
    (PostgreSQL) makes the statement answer (change, count) for the rows it wrote, instead of
    reading them back from the outbox.
    """
    insert = (
        "INSERT INTO outbox (audience_id, identity, user_id, anonymous_id, value, change, run_id, status) "
        f"SELECT :aid, d.identity, d.user_id, d.anonymous_id, d.value, d.change, :run_id, 'pending' "
        f"FROM ({select}) d"
    )
    order = " ORDER BY d.identity" if ordered else ""
    if upsert:
        # "WHERE true" settles SQLite's parsing ambiguity between a join's ON and the upsert's ON.
        insert = (
            f"{insert} WHERE true{order} ON CONFLICT (audience_id, identity) DO UPDATE SET "
            "user_id = excluded.user_id, anonymous_id = excluded.anonymous_id, value = excluded.value, "
            "change = excluded.change, run_id = excluded.run_id, status = 'pending'"
        )
    else:
        insert += order
    if counted:
        return f"WITH planned AS ({insert} RETURNING change) SELECT change, count(*) FROM planned GROUP BY change"
    return insert
