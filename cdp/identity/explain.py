"""`cdp profile explain`: the chain of source records that joins two identifiers, or why they are
not joined (unknown, blocked value, hub, a link dropped by the linking rules, or no record links them)."""

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
        return [
            f"{first} is in profile {profiles[0]}, {second} in profile {profiles[1]}: no source record links "
            "them (directly or through other identifiers)"
        ]
    edges = con.execute(
        """select left_identity_key, right_identity_key,
                  case when link_type = 'probabilistic'
                       then 'probabilistic match ' || example_record_id || ' ~ ' || matched_record_id
                            || ', p=' || round(match_probability, 4)
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
