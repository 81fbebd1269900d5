"""`cdp profile explain`: the chain of source records that joins two identifiers, or why they are
not joined (unknown, blocked value, hub, a link dropped by the linking rules, a probabilistic match
the household rules rejected, a blocked or hub identifier both profiles' records carry, or no record
links them)."""

from __future__ import annotations

from collections import deque

import duckdb


def _describe_identifier(con: duckdb.DuckDBPyConnection, key: str) -> tuple[str | None, str | None]:
    """(profile id, or None with the reason it links nothing)."""
    row = con.execute(
        "select block_reason, suspect_evidence, is_linkable from identity.identity_identifiers where identity_key = ?",
        [key],
    ).fetchone()
    if row is None:
        return None, f"{key} was never seen in any source record"
    block_reason, suspect_evidence, is_linkable = row
    if not is_linkable:
        why = (
            f"blocked value ({block_reason})"
            if block_reason
            else f"a hub shared by several people ({suspect_evidence})"
        )
        return None, f"{key} links nothing: {why}"
    profile = con.execute("select profile_id from identity.identity_graph where identity_key = ?", [key]).fetchone()
    return profile[0], None


def explain(con: duckdb.DuckDBPyConnection, first: str, second: str) -> list[str]:
    lines = []
    profiles = []
    for key in (first, second):
        profile_id, reason = _describe_identifier(con, key)
        if reason:
            lines.append(reason)
        profiles.append(profile_id)
    if None in profiles:
        return lines + ["so the two identifiers are not joined"]
    if profiles[0] != profiles[1]:
        dropped = con.execute(
            """select links.left_identity_key, links.right_identity_key, links.example_record_id, links.drop_rule,
                      links.drop_detail
               from identity.identity_links as links
               inner join identity.identity_graph as l on l.identity_key = links.left_identity_key
               inner join identity.identity_graph as r on r.identity_key = links.right_identity_key
               where not links.is_kept and ((l.profile_id = ? and r.profile_id = ?) or (l.profile_id = ? and r.profile_id = ?))
               order by 1, 2""",
            [profiles[0], profiles[1], profiles[1], profiles[0]],
        ).fetchall()
        if dropped:
            return [
                f"{first} is in profile {profiles[0]}, {second} in profile {profiles[1]}: the linking rules "
                "dropped the link(s) that would join them:",
                *(
                    f"  {left} -- {right} (record {record}): {rule}, {detail}"
                    for left, right, record, rule, detail in dropped
                ),
            ]
        lines = [f"{first} is in profile {profiles[0]}, {second} in profile {profiles[1]}:"]
        rejected = _rejected_matches(con, profiles[0], profiles[1])
        if rejected:
            lines.append(
                "  probabilistic matching scored their records alike, but the household rules kept them apart:"
            )
            lines.extend(f"    {line}" for line in rejected)
        unlinkable = _shared_unlinkable_identifiers(con, profiles[0], profiles[1])
        if unlinkable:
            lines.append("  records of both carry identifiers that link nothing:")
            lines.extend(f"    {line}" for line in unlinkable)
        if len(lines) == 1:
            lines[0] += " no source record links them (directly or through other identifiers)"
        return lines
    edges = con.execute(
        """select left_identity_key, right_identity_key,
                  case when link_type = 'probabilistic'
                       then 'probabilistic match ' || example_record_id || ' ~ ' || matched_record_id
                            || ', p=' || round(match_probability, 4)
                       when link_type = 'duplicate_record'
                       then 'duplicate record: ' || example_record_id || ' ~ ' || matched_record_id
                            || ' are one person, p=' || round(match_probability, 4)
                       else example_record_id end as evidence,
                  record_count
           from identity.identity_links
           where is_kept
             and left_identity_key in (select identity_key from identity.identity_graph where profile_id = ?)""",
        [profiles[0]],
    ).fetchall()
    neighbours: dict[str, list[tuple[str, str, int]]] = {}
    for left, right, record, count in edges:
        neighbours.setdefault(left, []).append((right, record, count))
        neighbours.setdefault(right, []).append((left, record, count))
    previous: dict[str, tuple[str, str, int] | None] = {first: None}
    queue = deque([first])
    while queue and second not in previous:
        node = queue.popleft()
        for other, record, count in sorted(neighbours.get(node, [])):
            if other not in previous:
                previous[other] = (node, record, count)
                queue.append(other)
    chain = []
    node = second
    while previous.get(node) is not None:
        parent, record, count = previous[node]
        chain.append(f"  {parent}  --[{record}{f' and {count - 1} more record(s)' if count > 1 else ''}]-->  {node}")
        node = parent
    return [f"{first} and {second} are both in profile {profiles[0]}, joined by:", *reversed(chain)]


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, table]
        ).fetchone()[0]
    )


def _rejected_matches(con: duckdb.DuckDBPyConnection, left_profile: str, right_profile: str) -> list[str]:
    """Scored pairs between the two profiles' records that a household rule rejected, with the rule."""
    if not _table_exists(con, "identity", "identity_probabilistic_links"):
        return []
    rows = con.execute(
        """
        select links.left_record_id, links.right_record_id, links.match_probability, links.decision_rule,
               links.agreeing_fields
        from identity.identity_probabilistic_links as links
        inner join identity.record_profiles as l on l.record_id = links.left_record_id
        inner join identity.record_profiles as r on r.record_id = links.right_record_id
        where links.decision = 'rejected'
          and ((l.profile_id = ? and r.profile_id = ?) or (l.profile_id = ? and r.profile_id = ?))
        order by links.match_probability desc, 1, 2
        limit 10
        """,
        [left_profile, right_profile, right_profile, left_profile],
    ).fetchall()

    texts = _decision_rule_texts()
    return [
        f"{left} ~ {right} (p={probability:.4f}, agreeing: {agreeing or 'nothing exactly'}): rejected, "
        f"{texts.get(rule, rule)}"
        for left, right, probability, rule, agreeing in rows
    ]


def _decision_rule_texts() -> dict[str, str]:
    return {
        "different_first_name": "their first names differ (not a typo, nickname, initial or swapped order): "
        "a family member, twin or namesake",
        "household_birth_date": "they share an address, phone or email but their birth dates differ",
        "household_unnamed": "they share an address, phone or email, one has no first name and no birth date "
        "tells them apart (any household member)",
    }


def _shared_unlinkable_identifiers(con: duckdb.DuckDBPyConnection, left_profile: str, right_profile: str) -> list[str]:
    """Blocked values and hubs that sit on records of both profiles: what would have joined them had
    it been allowed to link (e.g. a household phone on two people's CRM contacts)."""
    rows = con.execute(
        """
        with profile_records as (
            select record_id, profile_id from identity.record_profiles where profile_id in (?, ?)
        ),
        carried as (
            select identities.namespace || ':' || identities.identity_value as identity_key,
                   profile_records.profile_id, min(identities.record_id) as example_record_id
            from xdm.xdm_identities as identities
            inner join profile_records on profile_records.record_id = identities.record_id
            group by 1, 2
        )
        select identifiers.identity_key, identifiers.block_reason, identifiers.suspect_evidence,
               min(carried.example_record_id) as first_record, max(carried.example_record_id) as second_record
        from carried
        inner join identity.identity_identifiers as identifiers on identifiers.identity_key = carried.identity_key
        where not identifiers.is_linkable
        group by 1, 2, 3
        having count(distinct carried.profile_id) = 2
        order by 1
        limit 10
        """,
        [left_profile, right_profile],
    ).fetchall()
    return [
        f"{key} on {first_record} and {second_record}: "
        + (f"blocked value ({block_reason})" if block_reason else f"a hub shared by several people ({evidence})")
        for key, block_reason, evidence, first_record, second_record in rows
    ]
