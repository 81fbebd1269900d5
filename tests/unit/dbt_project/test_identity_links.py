"""The identity linking rules on planted graphs: a chain that would join two CRM ids, a shared
household phone, too many cookies, and graphs that break no rule."""

from __future__ import annotations

import datetime as dt
import importlib.util
import random

import polars as pl

from support.workspace import PROJECT_ROOT

MODEL = PROJECT_ROOT / "dbt_project" / "models" / "identity" / "identity_link_decisions.py"
spec = importlib.util.spec_from_file_location("identity_links", MODEL)
identity_links = importlib.util.module_from_spec(spec)
spec.loader.exec_module(identity_links)

NAMESPACES = pl.DataFrame(
    {
        "namespace": ["crm_id", "email", "phone", "cookie_id"],
        "priority": [1, 4, 5, 8],
        "is_unique_per_person": [True, False, False, False],
        "max_per_person": [None, None, None, 2],
    }
)


def graph(links: list[tuple[str, str, int]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """links: (left key, right key, day last seen); keys are namespace:value."""
    keys = sorted({key for left, right, _ in links for key in (left, right)})
    nodes = pl.DataFrame(
        {
            "identity_key": keys,
            "namespace": [k.split(":")[0] for k in keys],
            "identity_value": [k.split(":", 1)[1] for k in keys],
        }
    )
    edges = pl.DataFrame(
        {
            "left_identity_key": [l for l, _, _ in links],
            "right_identity_key": [r for _, r, _ in links],
            "last_seen_at": [dt.datetime(2026, 1, day) for _, _, day in links],
            "example_record_id": [f"rec{i}" for i in range(len(links))],
        }
    )
    return nodes, edges


def decide(links):
    nodes, edges = graph(links)
    result = identity_links.replay_links(nodes, edges, NAMESPACES)
    return {
        (row["left_identity_key"], row["right_identity_key"]): (row["is_kept"], row["drop_rule"], row["drop_detail"])
        for row in result.to_dicts()
    }


def test_chain_joining_two_crm_ids_drops_its_oldest_link():
    decisions = decide(
        [
            ("crm_id:C1", "email:a@x.com", 20),  # newest
            ("email:a@x.com", "phone:+4915100000001", 10),
            ("crm_id:C2", "phone:+4915100000001", 5),  # oldest: would put C1 and C2 in one person
            ("a_id:1", "a_id:2", 1),  # an unrelated person whose keys sort first: ids and positions differ
        ]
    )
    assert decisions[("crm_id:C1", "email:a@x.com")][0]
    assert decisions[("email:a@x.com", "phone:+4915100000001")][0]
    assert decisions[("a_id:1", "a_id:2")][0]
    kept, rule, detail = decisions[("crm_id:C2", "phone:+4915100000001")]
    assert not kept and rule == "unique_per_person"
    assert detail == "would join crm_id C2 with C1 (limit 1)"


def test_household_phone_keeps_the_most_recent_person():
    decisions = decide(
        [
            ("crm_id:C1", "phone:+4930123456", 3),
            ("crm_id:C2", "phone:+4930123456", 9),
        ]
    )
    assert decisions[("crm_id:C2", "phone:+4930123456")][0]
    assert decisions[("crm_id:C1", "phone:+4930123456")][:2] == (False, "unique_per_person")


def test_equal_recency_falls_back_to_namespace_priority():
    # Same day: links touching a crm id (priority 1) are replayed before the email-phone link (4, 5),
    # so that one is dropped, whatever the key order says.
    decisions = decide(
        [
            ("email:b@x.com", "phone:+4930999", 7),
            ("crm_id:C1", "phone:+4930999", 7),
            ("crm_id:C2", "email:b@x.com", 7),
        ]
    )
    dropped = [link for link, (kept, _, _) in decisions.items() if not kept]
    assert dropped == [("email:b@x.com", "phone:+4930999")]


def test_more_cookies_than_allowed_drops_the_oldest():
    decisions = decide(
        [
            ("crm_id:C1", "cookie_id:k1", 30),
            ("crm_id:C1", "cookie_id:k2", 20),
            ("crm_id:C1", "cookie_id:k3", 10),
        ]
    )
    assert [decisions[("crm_id:C1", f"cookie_id:k{i}")][0] for i in (1, 2, 3)] == [True, True, False]
    assert decisions[("crm_id:C1", "cookie_id:k3")][1] == "max_per_person"


def test_graphs_that_break_no_rule_keep_every_link_and_order_does_not_matter():
    links = [
        ("crm_id:C1", "email:a@x.com", 1),
        ("email:a@x.com", "phone:+4911", 2),
        ("phone:+4911", "cookie_id:k1", 3),
        ("crm_id:C2", "email:b@x.com", 4),
        ("email:b@x.com", "cookie_id:k9", 5),
    ]
    assert all(kept for kept, _, _ in decide(links).values())
    conflict = links + [("crm_id:C3", "phone:+4911", 1), ("crm_id:C3", "email:c@x.com", 6)]
    shuffled = conflict[:]
    random.Random(3).shuffle(shuffled)
    assert decide(conflict) == decide(shuffled)
