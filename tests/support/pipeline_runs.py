"""The shared pipeline runs: three `cdp run`s in one data dir on a small generated dataset.

The first builds everything; the second, with no new data, must change no table (but the append-only
history of audience memberships) and sync nothing; before the third, one late order turns a lapsed
buyer into a high-value customer, a small red-dress order brings a woman into the audience
red_dress_buyers (its order line was delivered before run 1, two runs ahead of its order: a late
parent, waiting in xdm.xdm_product_list_items_pending until the order comes), 40 new CRM contacts
arrive, an anonymous visitor logs in to a known shop account (an identity merge), and a new CRM contact
carries the email of a known person (the email becomes a hub: a split, and the events known by that email
alone belong to no profile any more); a BI-style reader process (tests/support/published_reader.py) queries the serving store
throughout the third run. Any test module can use the session fixture `runs` (conftest) and read the
warehouse with `query`; tests that must change the workspace work on a copy (`copy_workspace`).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from support.workspace import DEMO_AS_OF, Workspace

PEOPLE = 2500  # enough buyers for the propensity models' 100-per-class minimum
SEED = 11
MODEL_SCHEMAS = ("raw", "quarantine", "staging", "xdm", "identity", "profiles", "segments", "snapshots")
# Append-only: every run adds its rows (tests/test_segments.py checks what a rerun adds).
APPEND_ONLY_TABLES = ("segments.segment_membership_history", "segments.segment_sizes")
HIGH_VALUE_MIN_REVENUE = 1000
LAPSED_AFTER_DAYS = 90
AS_OF_END = dt.datetime.fromisoformat(DEMO_AS_OF) + dt.timedelta(days=1)


@dataclass
class PipelineRuns:
    workspace: Workspace
    outputs: list[str]
    fingerprints: list[dict[str, tuple]]
    syncs_by_run: list[dict[str, dict]]
    promoted_profile: str
    finished_at: list[dt.datetime] = field(default_factory=list)  # UTC, after each run
    reader_report: dict = field(default_factory=dict)  # the reader's findings during run 3
    profile_ids_by_run: list[set[str]] = field(default_factory=list)
    red_dress_profile: str = ""  # planted before run 3 (add_red_dress_order_for_a_woman)
    memberships_by_run: list[pl.DataFrame] = field(default_factory=list)  # segment_name, profile_id after each run
    # Planted before run 3: an anonymous visitor's profile merged into a known one (absorbed, kept), and a
    # profile split by a new contact sharing its email (add_login_of_an_anonymous_visitor, add_contact_sharing_an_email).
    merged_profiles: tuple[str, str] = ("", "")
    split_profile: str = ""
    # A fourth `cdp run` after run 3 with nothing new (the default skips it): its output, and the warehouse's
    # and serving store's (size, mtime) before and after it.
    unchanged_rerun: tuple[str, tuple, tuple] = ("", (), ())


def table_fingerprints(con: duckdb.DuckDBPyConnection) -> dict[str, tuple]:
    """Row count and an order-independent hash of every model table, and of the sync state."""
    tables = con.execute(
        f"""
        select table_schema || '.' || table_name from information_schema.tables
        where table_schema in {MODEL_SCHEMAS} or (table_schema = 'activation' and table_name = 'sync_state')
        order by 1
        """
    ).fetchall()
    return {name: con.execute(f"select count(*), bit_xor(hash(t)) from {name} as t").fetchone() for (name,) in tables}


def latest_sync_runs(con: duckdb.DuckDBPyConnection) -> dict[str, dict]:
    frame = con.execute(
        """
        select * from activation.sync_runs
        where run_id = (select run_id from activation.sync_runs order by started_at desc limit 1)
        """
    ).pl()
    return {row["sync_name"]: row for row in frame.to_dicts()}


def add_late_order_for_a_lapsed_buyer(workspace: Workspace) -> str:
    """Write one big completed order, dated the as-of day, for a lapsed buyer who is not high value
    and has a shop account; return that buyer's profile id."""
    with duckdb.connect(str(workspace.warehouse), read_only=True) as con:
        profile_id, shop_customer_id = con.execute(
            """
            select lapsed.profile_id, min(graph.identity_value)
            from segments.seg_lapsed_buyers as lapsed
            inner join identity.identity_graph as graph
                on graph.profile_id = lapsed.profile_id and graph.namespace = 'shop_customer_id'
            where lapsed.profile_id not in (select profile_id from segments.seg_high_value)
            group by 1 order by 1 limit 1
            """
        ).fetchone()
    write_late_order(workspace, "orders_late_addition.jsonl", "E2E-LATE-1", shop_customer_id, "12:00:00", "5000.00")
    return profile_id


def write_late_order(
    workspace: Workspace,
    file_name: str,
    order_id: str,
    shop_customer_id: str,
    time_of_day: str,
    total_amount: str,
    currency: str | None = None,
) -> None:
    """One completed web-shop order of a known shop account, dated the as-of day, as a new landing file
    (in `currency`, default the first currency of the demo's orders)."""
    with duckdb.connect(str(workspace.warehouse), read_only=True) as con:
        currency = currency or con.execute("select min(currency) from raw.webshop__orders").fetchone()[0]
    order = {
        "order_id": order_id,
        "customer_id": shop_customer_id,
        "email": None,
        "phone": None,
        "ordered_at": f"{DEMO_AS_OF}T{time_of_day}Z",
        "total_amount": total_amount,
        "currency": currency,
        "status": "completed",
        "shipping_city": None,
        "shipping_postcode": None,
        "shipping_country": None,
    }
    orders_dir = workspace.data_dir / "landing" / "webshop" / "orders"
    (orders_dir / file_name).write_text(json.dumps(order) + "\n")


def add_red_dress_order_for_a_woman(workspace: Workspace) -> str:
    """Write one small completed order (its red-dress line came before run 1), dated the as-of day and
    paid in CHF (a currency the demo does not make), for a woman who is not in red_dress_buyers and whom it
    moves in no synced audience (a recent buyer, not high value even after it); return her profile id."""
    with duckdb.connect(str(workspace.warehouse), read_only=True) as con:
        profile_id, shop_customer_id = con.execute(
            f"""
            select profiles.profile_id, min(graph.identity_value)
            from profiles.profiles as profiles
            inner join profiles.profile_traits as traits on traits.profile_id = profiles.profile_id
            inner join identity.identity_graph as graph
                on graph.profile_id = profiles.profile_id and graph.namespace = 'shop_customer_id'
            where profiles.gender = 'F' and profiles.is_known
                and traits.lifetime_revenue < {HIGH_VALUE_MIN_REVENUE} - 100
                and traits.last_purchase_at >= timestamp '{DEMO_AS_OF}' - interval 30 day
                and profiles.profile_id not in (select profile_id from segments.seg_red_dress_buyers)
            group by 1 order by 1 limit 1
            """
        ).fetchone()
    # In Swiss francs, which the demo never uses: the woman's purchases are then in two currencies.
    write_late_order(
        workspace, "orders_late_red_dress.jsonl", RED_DRESS_ORDER, shop_customer_id, "13:00:00", "49.00", currency="CHF"
    )
    return profile_id


RED_DRESS_ORDER = "E2E-LATE-2"


def deliver_the_red_dress_line_early(workspace: Workspace) -> None:
    """The red-dress order's line, delivered before run 1 while its order comes before run 3 (exports
    cut at different moments): the line must wait, not fail runs 1 and 2."""
    landing = workspace.data_dir / "landing" / "webshop"
    pl.DataFrame(
        {
            "order_line_id": [f"{RED_DRESS_ORDER}-0"],
            "order_id": [RED_DRESS_ORDER],
            "product_id": ["SKU-E2E-RED"],
            "product_name": ["Red Dress E2E"],
            "category": ["dresses"],
            "colour": ["red"],
            "quantity": ["1"],
            "unit_price": ["49.00"],
        },
    ).write_parquet(landing / "order_lines" / "order_lines_late_red_dress.parquet")


def truth_records_sql(workspace: Workspace) -> str:
    """The generator's ground truth as (record_id, person_id), record ids as the warehouse writes them."""
    truth = workspace.data_dir / "truth" / "record_truth.csv"
    return (
        "select source || '__' || \"table\" || ':' || record_id as record_id, person_id "
        f"from read_csv('{truth}', all_varchar = true)"
    )


def add_login_of_an_anonymous_visitor(workspace: Workspace) -> tuple[str, str]:
    """An identity merge: a web event in which the browser of an anonymous visitor (a profile known by one
    cookie only) logs in to the shop account of the person the generator says browsed with it. Both
    profiles are in no audience. Returns (the anonymous profile id absorbed, the known profile id)."""
    with duckdb.connect(str(workspace.warehouse), read_only=True) as con:
        anonymous_profile, cookie_id, known_profile, shop_customer_id = con.execute(
            f"""
            with truth as ({truth_records_sql(workspace)}),
            in_audiences as (select distinct profile_id from segments.segment_memberships),
            anonymous as (
                select profile_id, min(identity_value) as cookie_id
                from identity.identity_graph group by 1
                having count(*) = 1 and min(namespace) = 'cookie_id'
            ),
            anonymous_people as (
                select anonymous.profile_id, anonymous.cookie_id, min(truth.person_id) as person_id
                from anonymous
                inner join identity.record_profiles as records on records.profile_id = anonymous.profile_id
                inner join truth on truth.record_id = records.record_id
                group by 1, 2 having count(distinct truth.person_id) = 1
            ),
            shop_accounts as (
                select graph.profile_id, min(graph.identity_value) as shop_customer_id, min(truth.person_id) as person_id
                from identity.identity_graph as graph
                inner join identity.record_profiles as records on records.profile_id = graph.profile_id
                inner join truth on truth.record_id = records.record_id
                where graph.namespace = 'shop_customer_id'
                group by 1
                having count(distinct graph.identity_value) = 1 and count(distinct truth.person_id) = 1
            )
            select anonymous_people.profile_id, anonymous_people.cookie_id, shop_accounts.profile_id,
                shop_accounts.shop_customer_id
            from anonymous_people
            inner join shop_accounts on shop_accounts.person_id = anonymous_people.person_id
            where anonymous_people.profile_id not in (select profile_id from in_audiences)
                and shop_accounts.profile_id not in (select profile_id from in_audiences)
            order by 1 limit 1
            """
        ).fetchone()
    login = {
        "event_id": "WE-E2E-LOGIN-1",
        "cookie_id": cookie_id,
        "customer_id": shop_customer_id,
        "event_type": "login",
        "page_url": "/account",
        "occurred_at": f"{DEMO_AS_OF}T09:00:00Z",
    }
    events_dir = workspace.data_dir / "landing" / "web" / "events"
    (events_dir / "events_late_login.jsonl").write_text(json.dumps(login) + "\n")
    return anonymous_profile, known_profile


def connected(links: list[tuple[str, str]], start: str, end: str) -> bool:
    """Whether `end` is reachable from `start` over the undirected `links`."""
    neighbours: dict[str, set[str]] = {}
    for left, right in links:
        neighbours.setdefault(left, set()).add(right)
        neighbours.setdefault(right, set()).add(left)
    seen, frontier = {start}, [start]
    while frontier:
        for neighbour in neighbours.get(frontier.pop(), set()) - seen:
            seen.add(neighbour)
            frontier.append(neighbour)
    return end in seen


def add_contact_sharing_an_email(workspace: Workspace) -> str:
    """An identity split: a new CRM contact (another person, SPLIT_CONTACT) carrying the email of a known
    person whose shop account reaches their CRM contact through that email only, and who has email-tool
    events. The email is then seen with two CRM ids, a hub that links nobody (docs/identity.md): the
    profile splits (one part keeps its id, the others get new ones), and the email events, known by that
    email alone, belong to no profile any more. The person is in no audience. Returns the profile id that
    splits."""
    with duckdb.connect(str(workspace.warehouse), read_only=True) as con:
        candidates = con.execute(
            """
            select profile_id, max(identity_key) filter (where namespace = 'email'),
                max(identity_key) filter (where namespace = 'crm_id'),
                max(identity_key) filter (where namespace = 'shop_customer_id')
            from identity.identity_graph
            where profile_id not in (select profile_id from segments.segment_memberships)
            group by 1
            having count(*) filter (where namespace = 'crm_id') = 1
                and count(*) filter (where namespace = 'shop_customer_id') = 1
                and count(*) filter (where namespace = 'email') = 1
                and max(identity_value) filter (where namespace = 'email') in (
                    select identity_value from xdm.xdm_identities where source_table = 'esp__email_events'
                )
            order by 1
            """
        ).fetchall()
        links = con.execute(
            "select graph.profile_id, links.left_identity_key, links.right_identity_key "
            "from identity.identity_links as links "
            "inner join identity.identity_graph as graph on graph.identity_key = links.left_identity_key "
            "where links.is_kept"
        ).fetchall()
    by_profile: dict[str, list[tuple[str, str]]] = {}
    for profile_id, left, right in links:
        by_profile.setdefault(profile_id, []).append((left, right))
    for profile_id, email_key, crm_key, shop_key in candidates:
        without_email = [link for link in by_profile.get(profile_id, []) if email_key not in link]
        if not connected(without_email, crm_key, shop_key):
            break
    else:
        raise AssertionError("no profile whose shop account reaches its CRM contact through its email only")
    add_contacts(
        workspace,
        "contacts_late_shared_email.csv",
        [
            f"{SPLIT_CONTACT},Quentin,Zabriskie,{email_key.removeprefix('email:')},,1931-02-03,M,,Oslo,0150,NO,"
            "2026-06-02T10:00:00Z,2026-06-02T10:00:00Z"
        ],
    )
    return profile_id


SPLIT_CONTACT = "CSPLIT0001"
NEW_CONTACTS = 40


def late_name(number: int, part: str) -> str:
    """A made-up name, different for every number (letters from a hash)."""
    import hashlib

    digest = hashlib.sha256(f"{part}{number}".encode()).digest()
    return "".join("bcdfghjklmnprstvwz"[b % 18] + "aeiou"[b % 5] for b in digest[:3]).title()


def add_contacts(workspace: Workspace, name: str, rows: list[str]) -> None:
    contacts_dir = workspace.data_dir / "landing" / "crm" / "contacts"
    header = next(contacts_dir.glob("*.csv")).read_text().splitlines()[0]
    (contacts_dir / name).write_text("\n".join([header, *rows]) + "\n")


def wait_for_reads_of_the_latest_publication(workspace: Workspace, progress: Path, reads: int = 3) -> None:
    """Until the reader has read the run just published a few times (or two minutes passed)."""
    with duckdb.connect(str(workspace.serving_store), read_only=True) as con:
        (latest_run,) = con.execute(
            "select run_id from serving.publications order by published_at desc limit 1"
        ).fetchone()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if json.loads(progress.read_text())["runs_seen"].get(latest_run, 0) >= reads:
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.05)


def build_pipeline_runs(workspace: Workspace) -> PipelineRuns:
    workspace.cdp("generate", "--people", str(PEOPLE), "--seed", str(SEED), "--as-of", DEMO_AS_OF)
    deliver_the_red_dress_line_early(workspace)
    outputs, fingerprints, syncs, finished_at, profile_ids = [], [], [], [], []
    promoted, reader_report, red_dress, memberships, merged, split = "", {}, "", [], ("", ""), ""
    for run_number in (1, 2, 3):
        reader = None
        if run_number == 3:
            promoted = add_late_order_for_a_lapsed_buyer(workspace)
            red_dress = add_red_dress_order_for_a_woman(workspace)
            merged = add_login_of_an_anonymous_visitor(workspace)
            split = add_contact_sharing_an_email(workspace)
            # New people who buy nothing: the profile count grows, no audience changes.
            # Forty different people (distinct names and birth dates: identical ones would be duplicates
            # of one person to the matcher).
            add_contacts(
                workspace,
                "contacts_late_addition.csv",
                [
                    f"CLATE{i:04d},{late_name(i, 'first')},{late_name(i, 'last')},late.reader{i}@example.org,,"
                    f"{1950 + i}-{1 + i % 12:02d}-{1 + i % 28:02d},F,,Berlin,10115,DE,"
                    "2026-06-01T10:00:00Z,2026-06-01T10:00:00Z"
                    for i in range(NEW_CONTACTS)
                ],
            )
            stop_file, report_file = workspace.data_dir / "stop-reader", workspace.data_dir / "reader.json"
            reader = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name("published_reader.py")),
                    str(workspace.serving_store),
                    str(stop_file),
                    str(report_file),
                ],
                env=workspace.env,
            )
        try:
            # Run 2 has nothing new: every step runs all the same, to show the pipeline is idempotent.
            outputs.append(workspace.cdp("run", *(["--no-skip-unchanged"] if run_number == 2 else [])).stdout)
        finally:
            if reader is not None:
                wait_for_reads_of_the_latest_publication(workspace, report_file.with_name("reader.json.progress"))
                stop_file.touch()
                reader.wait(timeout=120)
                reader_report = json.loads(report_file.read_text())
        finished_at.append(dt.datetime.now(dt.UTC).replace(tzinfo=None))
        with duckdb.connect(str(workspace.warehouse), read_only=True) as con:
            fingerprints.append(table_fingerprints(con))
            syncs.append(latest_sync_runs(con))
            profile_ids.append({r[0] for r in con.execute("select profile_id from profiles.profiles").fetchall()})
            memberships.append(con.execute("select segment_name, profile_id from segments.segment_memberships").pl())
    state_before = _state_files(workspace)
    unchanged_rerun = (workspace.cdp("run").stdout, state_before, _state_files(workspace))
    return PipelineRuns(
        workspace,
        outputs,
        fingerprints,
        syncs,
        promoted,
        finished_at,
        reader_report,
        profile_ids,
        red_dress,
        memberships,
        merged,
        split,
        unchanged_rerun,
    )


def _state_files(workspace: Workspace) -> tuple:
    return tuple(
        (path.stat().st_size, path.stat().st_mtime_ns) for path in (workspace.warehouse, workspace.serving_store)
    )


def copy_workspace(runs: PipelineRuns, make_workspace, name: str) -> Workspace:
    """A copy of the runs' data dir (warehouse, landing files, serving store) for tests that change it."""
    import shutil

    workspace = make_workspace(name)
    shutil.copytree(runs.workspace.data_dir, workspace.data_dir, dirs_exist_ok=True)
    return workspace


def query(runs: PipelineRuns, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(runs.workspace.warehouse), read_only=True) as con:
        return con.execute(sql).pl()


def latest_versions(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """The last loaded version of each record, as the staging views pick it."""
    return frame.sort(["_loaded_at", "_source_file", "_row_number"], descending=True).unique(key, keep="first")


REPORTING_CURRENCY = "USD"


def to_reporting_currency(frame: pl.DataFrame, reporting: str = REPORTING_CURRENCY) -> pl.DataFrame:
    """Adds `amount` (original_amount in the reporting currency, rounded to cents) to a frame with
    original_amount, currency and at: the cross rate of seed exchange_rates (units per euro) on the
    latest rate day on or before the purchase day; an amount in the reporting currency stays as it is."""
    from cdp.settings import DBT_PROJECT_DIR

    per_eur = pl.read_csv(DBT_PROJECT_DIR / "seeds" / "exchange_rates.csv", try_parse_dates=True)
    per_eur = pl.concat(
        [
            per_eur,
            per_eur.select("rate_date").unique().with_columns(currency_code=pl.lit("EUR"), units_per_eur=pl.lit(1.0)),
        ]
    )
    target = per_eur.filter(pl.col("currency_code") == reporting).select("rate_date", target="units_per_eur")
    cross = (
        per_eur.join(target, on="rate_date")
        .select("currency_code", "rate_date", rate=pl.col("target") / pl.col("units_per_eur"))
        .sort("rate_date")
    )
    frame = frame.with_columns(pl.col("currency").str.to_uppercase(), day=pl.col("at").dt.date()).sort("day")
    with warnings.catch_warnings():  # polars cannot check sortedness within `by` groups; both sides are sorted
        warnings.simplefilter("ignore", UserWarning)
        converted = frame.join_asof(
            cross, left_on="day", right_on="rate_date", by_left="currency", by_right="currency_code"
        )
    rate = pl.when(pl.col("currency") == reporting).then(1.0).otherwise(pl.col("rate"))
    return converted.with_columns(amount=(pl.col("original_amount") * rate).round(2)).drop("day", "rate_date", "rate")


def completed_purchases(runs: PipelineRuns) -> pl.DataFrame:
    """Completed purchases (profile_id, record_id, order_id, amount in the reporting currency,
    original_amount, currency, at), computed in polars from the raw tables (latest version of each web-shop
    order; store transactions), attributed to profiles by the identity stage's record_profiles."""
    orders = (
        latest_versions(query(runs, "select * from raw.webshop__orders"), "order_id")
        .filter(pl.col("status") == "completed")
        .select(
            record_id=pl.lit("webshop__orders:") + pl.col("order_id"),
            order_id="order_id",
            original_amount=pl.col("total_amount").cast(pl.Float64),
            currency="currency",
            at=pl.col("ordered_at"),
        )
    )
    store = (
        query(runs, "select * from raw.pos__transactions")
        .unique("transaction_id")
        .select(
            record_id=pl.lit("pos__transactions:") + pl.col("transaction_id"),
            order_id=pl.lit(None, pl.String),
            original_amount=pl.col("total_amount").cast(pl.Float64),
            currency="currency",
            at=pl.col("transacted_at"),
        )
    )
    record_profiles = query(runs, "select record_id, profile_id from identity.record_profiles")
    return to_reporting_currency(pl.concat([orders, store])).join(record_profiles, on="record_id", how="inner")


def run_dbt(env: dict[str, str], target_path, *args: str) -> subprocess.CompletedProcess[str]:
    """dbt on the project with its own target path: --vars may enable models, and the project's manifest
    (what Dagster builds its asset graph from) must not learn about them. Fails the test with dbt's output."""
    from cdp.settings import DBT_PROJECT_DIR

    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("dbt")),
            *args,
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(target_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    return result
