"""Deterministic demo data: a synthetic retailer's exports from 11 source tables, plus ground truth.

People buy the way the BG/NBD story says (a personal purchase rate, and after each purchase a
chance to drop out for good); they browse, open emails and use the app at a rate tied to their
purchase rate while they are active, so recent engagement genuinely predicts future purchases.
Each person shows up in several systems under different identifiers, with the mess real exports
have (see docs/sources.md). Everything is vectorized with numpy: same (people, seed, as_of), same
bytes.
"""

from __future__ import annotations

import copy
import datetime as dt
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from cdp.errors import CdpError

HISTORY_DAYS = 730
FIRST_NAMES_F = [
    "Ana",
    "Maria",
    "Emma",
    "Olivia",
    "Sophia",
    "Zoë",
    "Chloé",
    "Léa",
    "Hannah",
    "Mia",
    "Grace",
    "Isabella",
    "Amelia",
    "Charlotte",
    "Emily",
    "Lena",
    "Sofía",
    "Julia",
    "Laura",
    "Sarah",
    "Anja",
    "Renée",
    "Nora",
    "Ava",
    "Ella",
    "Lucy",
    "Alice",
    "Clara",
    "Ines",
    "Marta",
]
FIRST_NAMES_M = [
    "James",
    "John",
    "Liam",
    "Noah",
    "Oliver",
    "José",
    "Jürgen",
    "Lukas",
    "Ben",
    "Max",
    "Elias",
    "William",
    "Henry",
    "Jack",
    "Thomas",
    "David",
    "Daniel",
    "Matteo",
    "Felix",
    "Paul",
    "Adam",
    "Samuel",
    "Leon",
    "Finn",
    "Oscar",
    "Hugo",
    "Ethan",
    "Mason",
    "Lucas",
    "André",
]
LAST_NAMES = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Taylor",
    "Wilson",
    "Evans",
    "Thomas",
    "Roberts",
    "Walker",
    "López",
    "Hernández",
    "González",
    "Pérez",
    "Nguyen",
    "Kim",
    "O'Brien",
    "Murphy",
    "Kelly",
    "Clark",
    "Lewis",
    "Young",
    "Hall",
    "Allen",
    "King",
    "Wright",
]
COUNTRIES = np.array(["US", "GB", "DE"])
COUNTRY_WEIGHTS = [0.8, 0.1, 0.1]
CITIES = {
    "US": [("San Francisco", "941"), ("New York", "100"), ("Chicago", "606"), ("Austin", "787"), ("Seattle", "981")],
    "GB": [("London", "N1 "), ("Manchester", "M1 "), ("Bristol", "BS1 ")],
    "DE": [("Berlin", "101"), ("Hamburg", "201"), ("München", "803")],
}
STREETS = ["Main St", "Oak Ave", "High Street", "Park Road", "Lindenstraße", "Church Lane", "Elm St", "Bahnhofstraße"]
EMAIL_DOMAINS = np.array(
    ["gmail.com", "yahoo.com", "outlook.com", "icloud.com", "hotmail.com", "proton.me", "gmx.de", "web.de"]
)
CATEGORIES = ["dresses", "tops", "trousers", "shoes", "accessories"]
COLOURS = ["red", "black", "white", "blue", "green", "beige"]
JUNK_EMAILS = ["test@test.com", "noemail@example.com"]
JUNK_PHONES = ["0000000000", "000-000-0000"]


@dataclass(frozen=True)
class DemoSummary:
    out_dir: Path
    people: int
    seed: int
    as_of: dt.date
    row_counts: dict[str, int] = field(default_factory=dict)  # "<source>__<table>" -> rows written
    landing_dir: Path = Path()
    truth_dir: Path = Path()


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().replace("'", "")


class _World:
    """Persons and their behaviour; all arrays indexed by person."""

    def __init__(self, n: int, rng: np.random.Generator, as_of: dt.date, id_offset: int = 0):
        self.n, self.rng, self.as_of = n, rng, as_of
        self.start = dt.datetime.combine(as_of, dt.time(23, 59, 59)) - dt.timedelta(days=HISTORY_DAYS)
        # A delivery's worlds number their records (orders, events, tickets, ...) after the base's and
        # open fewer tickets in their short window (generate_delivery); the base demo: 0 and 15%.
        self.serial_offset = 0
        self.ticket_share = 0.15
        idx = np.arange(n) + id_offset  # new people of a delivery: ids after the base's people
        self.person_id = np.array([f"P{i:07d}" for i in idx])
        self.gender = rng.choice(np.array(["F", "M", "X"]), n, p=[0.52, 0.45, 0.03])
        female = self.gender == "F"
        first_f = rng.choice(np.array(FIRST_NAMES_F), n)
        first_m = rng.choice(np.array(FIRST_NAMES_M), n)
        self.first_name = np.where(female | ((self.gender == "X") & (rng.random(n) < 0.5)), first_f, first_m)
        self.last_name = rng.choice(np.array(LAST_NAMES), n)
        self.country = rng.choice(COUNTRIES, n, p=COUNTRY_WEIGHTS)
        age_days = rng.integers(18 * 365, 80 * 365, n)
        self.birth_date = np.array([as_of - dt.timedelta(days=int(d)) for d in age_days])
        domain = rng.choice(EMAIL_DOMAINS[:6], n)
        domain = np.where(self.country == "DE", rng.choice(EMAIL_DOMAINS[5:], n), domain)
        self.email = np.array(
            [f"{_ascii(f)}.{_ascii(l)}{i}@{d}" for f, l, i, d in zip(self.first_name, self.last_name, idx, domain)]
        )
        self.second_email = np.where(
            rng.random(n) < 0.08,
            np.array(
                [f"{_ascii(f)[0]}{_ascii(l)}{i}@work-mail.com" for f, l, i in zip(self.first_name, self.last_name, idx)]
            ),
            "",
        )
        self.phone = self._phones(rng)
        city_pick = rng.integers(0, 5, n)
        self.city = np.array([CITIES[c][k % len(CITIES[c])][0] for c, k in zip(self.country, city_pick)])
        post_prefix = np.array([CITIES[c][k % len(CITIES[c])][1] for c, k in zip(self.country, city_pick)])
        post_suffix = rng.integers(0, 100, n)
        self.postcode = np.array(
            [f"{p}{s:02d}" if not p.endswith(" ") else f"{p}{s % 9 + 1}AB" for p, s in zip(post_prefix, post_suffix)]
        )
        self.street = np.array(
            [f"{num} {s}" for num, s in zip(rng.integers(1, 300, n), rng.choice(np.array(STREETS), n))]
        )

        # Households: ~0.5% of persons pair up and share a landline phone.
        self.household = np.full(n, "", dtype=object)
        self.landline = np.full(n, "", dtype=object)
        pairs = max(1, n // 400)
        members = rng.choice(n, size=2 * pairs, replace=False).reshape(pairs, 2)
        for h, (a, b) in enumerate(members):
            line = f"+1415{rng.integers(2000000, 9999999)}"
            self.country[b] = self.country[a] = "US"
            self.household[[a, b]] = f"H{h + id_offset:05d}"
            self.landline[[a, b]] = line

        # Acquisition: 40% were customers before the window opened; the rest join during it.
        joined_before = rng.random(n) < 0.4
        self.acquired_day = np.where(joined_before, 0.0, rng.uniform(0, HISTORY_DAYS, n))
        self.pre_window_days = np.where(joined_before, rng.uniform(30, 900, n), 0.0)

        # BG/NBD: purchase rate per day ~ Gamma, dropout after each purchase ~ Beta.
        self.purchase_rate = rng.gamma(shape=1.1, scale=0.012 / 1.1, size=n)
        self.dropout = rng.beta(0.9, 4.0, n)
        self.online_share = rng.beta(2, 2, n)

        # System membership.
        self.in_crm = rng.random(n) < 0.7
        self.has_account = rng.random(n) < 0.6
        self.is_loyalty = rng.random(n) < 0.4
        self.uses_app = self.has_account & (rng.random(n) < 0.5)  # the retail app needs an account
        self.visits_web = rng.random(n) < 0.85
        self.email_subscribed = rng.random(n) < 0.7
        self.sms_consent = rng.random(n) < 0.3
        self.shop_id = np.array([f"W{i:07d}" for i in rng.permutation(n) + 1_000_000 + id_offset])
        self.crm_id = np.array([f"C{i:07d}" for i in rng.permutation(n) + 2_000_000 + id_offset])
        self.loyalty_id = np.array([f"L{i:07d}" for i in rng.permutation(n) + 3_000_000 + id_offset])

        self._simulate_purchases()

    def _phones(self, rng: np.random.Generator) -> np.ndarray:
        n = self.n
        us = np.array(
            [
                f"+1{a}{b}{c:04d}"
                for a, b, c in zip(rng.integers(201, 990, n), rng.integers(200, 999, n), rng.integers(0, 10000, n))
            ]
        )
        gb = np.array([f"+447{d:09d}" for d in rng.integers(100000000, 999999999, n)])
        de = np.array([f"+4915{d:09d}" for d in rng.integers(100000000, 999999999, n)])
        phone = np.where(self.country == "US", us, np.where(self.country == "GB", gb, de))
        return np.where(rng.random(n) < 0.85, phone, "")

    def _simulate_purchases(self) -> None:
        """Purchase times (days since the window start) while alive; active_until = dropout time."""
        rng, n = self.rng, self.n
        t = self.acquired_day.copy()
        alive = np.ones(n, dtype=bool)
        active_until = np.full(n, float(HISTORY_DAYS))
        persons, times = [], []
        for _ in range(400):
            gap = rng.exponential(1.0, n) / np.maximum(self.purchase_rate, 1e-6)
            t = t + gap
            bought = alive & (t < HISTORY_DAYS)
            if not bought.any():
                break
            persons.append(np.flatnonzero(bought))
            times.append(t[bought])
            drop = bought & (rng.random(n) < self.dropout)
            active_until[drop] = t[drop]
            alive &= ~drop
            alive &= t < HISTORY_DAYS
        self.purchase_person = np.concatenate(persons) if persons else np.array([], dtype=int)
        self.purchase_day = np.concatenate(times) if times else np.array([])
        self.active_until = np.maximum(active_until, self.acquired_day)

    def timestamps(self, days: np.ndarray) -> np.ndarray:
        seconds = np.round(np.asarray(days) * 86400).astype("int64")
        return (np.datetime64(self.start, "s") + seconds.astype("timedelta64[s]")).astype("datetime64[s]")

    def activity(
        self, rate_per_day: np.ndarray, eligible: np.ndarray, tail_days: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Poisson engagement while active (plus a short tail after dropping out)."""
        start = self.acquired_day
        end = np.minimum(self.active_until + tail_days, HISTORY_DAYS)
        duration = np.where(eligible, np.maximum(end - start, 0), 0)
        counts = self.rng.poisson(rate_per_day * duration)
        person = np.repeat(np.arange(self.n), counts)
        day = start[person] + self.rng.random(person.size) * duration[person]
        return person, day


def _messy_email(rng: np.random.Generator, emails: np.ndarray) -> np.ndarray:
    """Case and whitespace variants, as different systems store the same address."""
    variant = rng.random(emails.size)
    out = emails.astype(object).copy()
    upper_first = variant < 0.15
    out[upper_first] = [e[:1].upper() + e[1:] for e in emails[upper_first]]
    shouty = (variant >= 0.15) & (variant < 0.22)
    out[shouty] = [e.upper() for e in emails[shouty]]
    padded = (variant >= 0.22) & (variant < 0.3)
    out[padded] = [f" {e} " for e in out[padded]]
    return out


def _format_phone(rng: np.random.Generator, e164: np.ndarray, national_ok: np.ndarray) -> np.ndarray:
    """National formats only where the record carries a country; elsewhere international."""
    out = []
    choices = rng.integers(0, 4, e164.size)
    for number, national, choice in zip(e164, national_ok, choices):
        if not number:
            out.append(None)
            continue
        if number.startswith("+1"):
            d = number[2:]
            formats = [f"({d[:3]}) {d[3:6]}-{d[6:]}", f"{d[:3]}.{d[3:6]}.{d[6:]}", f"+1 {d[:3]} {d[3:6]} {d[6:]}", d]
            out.append(formats[choice])  # US national numbers are fine everywhere (US is the default)
        else:
            cc = "44" if number.startswith("+44") else "49"
            rest = number[1 + len(cc) :]
            international = [f"+{cc} {rest[:4]} {rest[4:]}", f"00{cc}{rest}", f"+{cc}{rest}", f"+{cc} {rest}"]
            national_forms = [f"0{rest[:4]} {rest[4:]}", f"0{rest}"]
            out.append(national_forms[choice % 2] if national and choice < 2 else international[choice])
    return np.array(out, dtype=object)


def _typo(rng: np.random.Generator, names: np.ndarray, share: float) -> np.ndarray:
    out = names.astype(object).copy()
    hit = np.flatnonzero(rng.random(names.size) < share)
    for i in hit:
        name = out[i]
        if len(name) > 3:
            k = int(rng.integers(1, len(name) - 1))
            out[i] = (
                name[:k] + name[k + 1] + name[k] + name[k + 2 :] if rng.random() < 0.5 else name[:k] + name[k + 1 :]
            )
    case = rng.random(names.size)
    out[case < 0.05] = [n.upper() for n in out[case < 0.05]]
    out[(case >= 0.05) & (case < 0.1)] = [n.lower() for n in out[(case >= 0.05) & (case < 0.1)]]
    return out


def _iso(ts: np.ndarray) -> list[str]:
    return [f"{t}Z" for t in ts.astype("datetime64[s]").astype(str)]


class _Writer:
    """Writes landing files and remembers planted defects and truth rows."""

    def __init__(self, out_dir: Path, rng: np.random.Generator, bad_rows_per_table: int, file_prefix: str = ""):
        self.landing = out_dir / "landing"
        self.file_prefix = file_prefix  # a delivery's files: new names beside the base's, never over them
        self.truth = out_dir / "truth"
        self.rng = rng
        self.bad = bad_rows_per_table
        self.planted: list[dict] = []
        self.truth_rows: list[pl.DataFrame] = []
        self.row_counts: dict[str, int] = {}

    def path(self, source: str, table: str, file: str) -> Path:
        directory = self.landing / source / table
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f"{self.file_prefix}{file}"

    def add_truth(self, source: str, table: str, record_ids, person_ids) -> None:
        self.truth_rows.append(
            pl.DataFrame(
                {"source": source, "table": table, "record_id": list(record_ids), "person_id": list(person_ids)},
                schema={c: pl.String for c in ("source", "table", "record_id", "person_id")},
            )
        )

    def plant(
        self, frame: pl.DataFrame, key: str, defects: list[tuple[str, str, object]]
    ) -> tuple[pl.DataFrame, list[tuple[int, str, str]]]:
        """Append copies of random valid rows, each with one defect, at random positions.
        Returns the new frame and (row index, defect, column) per planted row."""
        rows = []
        for n_defect, (defect, column, bad_value) in enumerate(defects):
            for k in range(self.bad):
                source_row = frame.row(int(self.rng.integers(0, frame.height)), named=True)
                row = dict(source_row)
                row[key] = f"{row[key]}-BAD{n_defect}{k}"
                row[column] = bad_value
                rows.append((defect, column, row))
        if not rows:
            return frame, []
        bad_frame = pl.DataFrame([r for _, _, r in rows], schema=frame.schema)
        combined = pl.concat([frame, bad_frame])
        order = self.rng.permutation(combined.height)
        combined = combined[order]
        position_of = np.empty(combined.height, dtype=int)
        position_of[order] = np.arange(combined.height)
        planted = [(int(position_of[frame.height + j]), d, c) for j, (d, c, _) in enumerate(rows)]
        return combined, planted

    def record_planted(
        self,
        source: str,
        table: str,
        file: Path,
        positions: list[tuple[int, str, str]],
        frame: pl.DataFrame,
        key: str,
        line_offset: int,
    ) -> None:
        for index, defect, column in positions:
            self.planted.append(
                {
                    "source": source,
                    "table": table,
                    "file": file.relative_to(self.landing).as_posix(),
                    "line": index + line_offset,
                    "record_id": frame[key][index],
                    "defect": defect,
                    "column": column,
                }
            )

    def count(self, source: str, table: str, rows: int) -> None:
        name = f"{source}__{table}"
        self.row_counts[name] = self.row_counts.get(name, 0) + rows


def generate_demo(
    out_dir: Path,
    people: int = 5000,
    seed: int = 42,
    as_of: dt.date | None = None,
    dirty_duplicates: bool = False,
    hard_negatives: bool = False,
) -> DemoSummary:
    """Write landing files and ground truth for `people` simulated people under `out_dir`.

    dirty_duplicates: the CRM holds some contacts twice or more (typos, nicknames, swapped name order,
    missing fields, moves, transposed birth dates, no identifier shared with the first entry), and the
    loyalty export carries birth date and address, with no email or phone for many members.
    hard_negatives: different people who look alike: household members sharing address, landline and
    surname (some a family email), twins, namesakes in other cities. Both off: the default demo (whose
    loyalty export has the birth date and address columns, empty); they draw from their own random
    stream, so the rest of the default demo is the same bytes either way."""
    out_dir = Path(out_dir)
    as_of = as_of or dt.datetime.now(dt.UTC).date()
    for sub in ("landing", "truth"):
        shutil.rmtree(out_dir / sub, ignore_errors=True)
    rng = np.random.default_rng(seed)
    world = _World(people, rng, as_of)
    writer = _Writer(out_dir, rng, bad_rows_per_table=2 + people // 25000)
    scenario_rng = np.random.default_rng([seed, 18])
    if hard_negatives:
        _plant_hard_negatives(world, scenario_rng)

    _write_crm(world, writer)
    if dirty_duplicates:
        _write_crm_duplicates(world, writer, scenario_rng)
    _write_webshop_and_pos(world, writer)
    _write_web(world, writer)
    _write_app(world, writer)
    _write_email(world, writer)
    _write_sms(world, writer)
    _write_loyalty(world, writer, scenario_rng if dirty_duplicates else None)
    _write_support(world, writer)
    _write_consents(world, writer)
    _write_truth(world, writer)
    return DemoSummary(
        out_dir=out_dir,
        people=people,
        seed=seed,
        as_of=as_of,
        row_counts=dict(writer.row_counts),
        landing_dir=writer.landing,
        truth_dir=writer.truth,
    )


@dataclass(frozen=True)
class DeliverySummary:
    """What generate_delivery wrote: run the pipeline as of `as_of` (the delivery's last day) next."""

    as_of: dt.date
    days: int
    new_people: int
    updated_contacts: int
    row_counts: dict[str, int] = field(default_factory=dict)  # "<source>__<table>" -> rows written
    files: tuple[Path, ...] = ()
    base_records: int = 0  # the records (as counted in the truth) before it


class DeliveryError(CdpError):
    """A delivery asked of landing files it cannot follow (no base demo of that people/seed/as-of)."""


def generate_delivery(
    out_dir: Path, people: int = 5000, seed: int = 42, as_of: dt.date | None = None, share: float = 0.01
) -> DeliverySummary:
    """The next delivery after the demo generate_demo(out_dir, people, seed, as_of) wrote: new landing files
    (named delivery-<last day>-..., beside the base's) covering the days after as_of, as many as make about
    `share` of the base's records (a probe of share x 730 days, scaled):

    - new people (share x people, ids after the base's) who sign up in those days, in every source;
    - the existing people's behaviour in those days (web and app events on new cookies/devices with their
      logins, orders and store purchases, campaign events, tickets), by the same model as the base, for
      those still active;
    - a few CRM updates (share/10 x people contacts): the same contact id moved to a new address, half of
      them with a new email address, updated in the window.

    Deterministic by (people, seed, as_of, share); the ground truth files gain the new records and people.
    Returns the delivery's last day: the as-of of the run that follows."""
    out_dir = Path(out_dir)
    as_of = as_of or dt.datetime.now(dt.UTC).date()
    if not 0 < share <= 0.5:
        raise DeliveryError(f"delivery share {share}: expected a share of the base's rows in (0, 0.5], e.g. 0.01")
    catalogue_file = out_dir / "landing" / "webshop" / "order_lines" / f"order_lines_{as_of.isoformat()}.parquet"
    persons_file = out_dir / "truth" / "persons.csv"
    if not catalogue_file.is_file() or not persons_file.is_file():
        raise DeliveryError(
            f"no base demo as of {as_of} under {out_dir} (expected {catalogue_file} and {persons_file}): "
            f"generate it first with `cdp generate --people {people} --seed {seed} --as-of {as_of}`"
        )
    known = pl.read_csv(persons_file, columns=["person_id"])["person_id"]
    if known.len() < people or f"P{people - 1:07d}" not in set(known.to_list()):
        raise DeliveryError(
            f"the base demo under {out_dir} holds {known.len():,} people, not the {people:,} of this delivery: "
            "give the --people (and --seed) the base was generated with"
        )
    products = (
        pl.read_parquet(catalogue_file, columns=["product_id", "category", "colour", "product_name", "unit_price"])
        .unique("product_id")
        .sort("product_id")
        .select(
            "product_id", "category", "colour", "product_name", pl.col("unit_price").cast(pl.Float64).alias("price")
        )
    )
    base = _World(people, np.random.default_rng(seed), as_of)
    new_count = max(1, round(people * share))
    # How many days of behaviour make `share` of the base's records: activity is not uniform over the history
    # (people drop out; a campaign mails every subscriber at once), so probes in a scratch folder search the
    # window (record counts as in the truth: every table but the order lines).
    base_records = _count_lines(out_dir / "truth" / "record_truth.csv") - 1
    days = _delivery_days(base, seed, new_count, products, share, share * base_records)
    delivery = _write_delivery(out_dir, base, seed, days, new_count, products)
    _append_truth(out_dir / "truth", delivery.writers, delivery.new)
    counts: dict[str, int] = {}
    for writer in delivery.writers:
        for name, rows in writer.row_counts.items():
            counts[name] = counts.get(name, 0) + rows
    return DeliverySummary(
        delivery.as_of, days, new_count, delivery.updated_contacts, counts, delivery.files, base_records
    )


def _delivery_days(base: _World, seed: int, new_count: int, products: pl.DataFrame, share: float, target: float) -> int:
    """The window (days) whose delivery is nearest `target` records, within 0.8-1.25x if a few probes find
    one; else the largest window found below it (a campaign's day alone can exceed the target)."""
    records: dict[int, int] = {}

    def probe(days: int) -> int:
        with tempfile.TemporaryDirectory(prefix="cdp-delivery-probe-") as scratch:
            delivery = _write_delivery(Path(scratch), base, seed, days, new_count, products)
        records[days] = sum(frame.height for writer in delivery.writers for frame in writer.truth_rows)
        return records[days]

    low, high = 0, 366
    days = max(1, round(share * HISTORY_DAYS))  # a first guess: the share of the history's days
    for _ in range(6):
        found = probe(days)
        if 0.8 * target <= found <= 1.25 * target:
            return days
        if found < target:
            low = days
        else:
            high = days
        estimate = round(days * target / max(found, 1))
        days = estimate if low < estimate < high else (low + high) // 2
        if days in records or not low < days < high:
            break
    below = [d for d, n in records.items() if n <= 1.25 * target]
    return max(below) if below else min(records)


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


@dataclass
class _Delivery:
    as_of: dt.date
    writers: list[_Writer]
    new: _World
    updated_contacts: int
    files: tuple[Path, ...]


def _write_delivery(
    out_dir: Path, base: _World, seed: int, days: int, new_count: int, products: pl.DataFrame
) -> _Delivery:
    people = base.n
    share_of_history = days / HISTORY_DAYS
    next_as_of = base.as_of + dt.timedelta(days=days)
    window_start = float(HISTORY_DAYS - days)
    prefix = f"delivery-{next_as_of.isoformat()}-"
    # Record numbers past the base's (numbered from 0; no base table holds 100 records per person), the
    # new people's past the existing people's (fewer than 50 records per person in the window).
    serial_base = 100 * people + 1_000_000
    # The existing people, the same world as the base, moved on by `days`: active from the window's start.
    existing = _shifted(base, days, np.random.default_rng([seed, 20, days]))
    existing.serial_offset = serial_base
    existing.ticket_share = 0.15 * share_of_history
    existing_writer = _Writer(out_dir, existing.rng, bad_rows_per_table=0, file_prefix=f"{prefix}existing-")
    _write_webshop_and_pos(existing, existing_writer, products)
    _write_web(existing, existing_writer)
    _write_app(existing, existing_writer)
    _write_email(existing, existing_writer)
    _write_sms(existing, existing_writer)
    _write_support(existing, existing_writer)
    updated = _write_crm_updates(base, existing, existing_writer, count=max(1, round(new_count / 10)))

    # New people: sign-ups in the window, in every source.
    rng = np.random.default_rng([seed, 21, days])
    new = _World(new_count, rng, next_as_of, id_offset=people)
    new.pre_window_days = np.zeros(new_count)
    new.acquired_day = rng.uniform(window_start, HISTORY_DAYS, new_count)
    new._simulate_purchases()
    new.serial_offset = serial_base + 50 * people + 1_000_000
    new.ticket_share = existing.ticket_share
    new_writer = _Writer(out_dir, rng, bad_rows_per_table=0, file_prefix=f"{prefix}new-")
    _write_crm(new, new_writer)
    _write_webshop_and_pos(new, new_writer, products)
    _write_web(new, new_writer)
    _write_app(new, new_writer)
    _write_email(new, new_writer)
    _write_sms(new, new_writer)
    _write_loyalty(new, new_writer)
    _write_support(new, new_writer)
    _write_consents(new, new_writer)

    files = tuple(sorted((out_dir / "landing").glob(f"*/*/{prefix}*")))
    return _Delivery(next_as_of, [existing_writer, new_writer], new, updated, files)


def _shifted(base: _World, days: int, rng: np.random.Generator) -> _World:
    """The base's people `days` later: the window is the last `days` of a history ending then; purchases
    drawn anew in it for those still active at the base's end (the others only browse, within 30 days of
    dropping out, as in the base)."""
    world = copy.copy(base)
    world.rng = rng
    world.as_of = base.as_of + dt.timedelta(days=days)
    world.start = base.start + dt.timedelta(days=days)
    still_active = base.active_until >= HISTORY_DAYS
    world.acquired_day = np.full(base.n, float(HISTORY_DAYS - days))
    world.pre_window_days = np.zeros(base.n)
    world._simulate_purchases()
    keep = still_active[world.purchase_person]
    world.purchase_person, world.purchase_day = world.purchase_person[keep], world.purchase_day[keep]
    world.active_until = np.where(still_active, world.active_until, base.active_until - days)
    return world


def _write_crm_updates(base: _World, shifted: _World, writer: _Writer, count: int) -> int:
    """Existing CRM contacts whose address changed in the window (a move within the country), half of them
    with a new email address too: same contact id, later updated_at. Returns how many."""
    rng = shifted.rng
    members = np.flatnonzero(base.in_crm | (base.household != ""))
    chosen = np.sort(rng.choice(members, size=min(count, members.size), replace=False))
    k = chosen.size
    city_pick = rng.integers(0, 5, k)
    cities = [CITIES[c][p % len(CITIES[c])] for c, p in zip(base.country[chosen], city_pick)]
    new_email = np.where(
        rng.random(k) < 0.5,
        np.array(
            [
                f"{_ascii(f)}.{_ascii(l)}.{i}@{d}"
                for f, l, i, d in zip(
                    base.first_name[chosen], base.last_name[chosen], chosen, rng.choice(EMAIL_DOMAINS[:6], k)
                )
            ]
        ),
        base.email[chosen],
    )
    created = base.acquired_day[chosen] - base.pre_window_days[chosen]
    frame = _frame(
        {
            "contact_id": base.crm_id[chosen],
            "first_name": base.first_name[chosen],
            "last_name": base.last_name[chosen],
            "email": new_email,
            "phone": _format_phone(
                rng,
                np.where(base.landline[chosen] != "", base.landline[chosen], base.phone[chosen]),
                np.ones(k, dtype=bool),
            ),
            "birth_date": [d.isoformat() for d in base.birth_date[chosen]],
            "gender": base.gender[chosen],
            "street": [f"{n} {s}" for n, s in zip(rng.integers(1, 300, k), rng.choice(np.array(STREETS), k))],
            "city": [c[0] for c in cities],
            "postcode": [
                f"{c[1]}{s:02d}" if not c[1].endswith(" ") else f"{c[1]}{s % 9 + 1}AB"
                for c, s in zip(cities, rng.integers(0, 100, k))
            ],
            "country": base.country[chosen],
            "created_at": _iso(base.timestamps(created)),
            "updated_at": _iso(
                shifted.timestamps(rng.uniform(HISTORY_DAYS - (shifted.as_of - base.as_of).days, HISTORY_DAYS, k))
            ),
            PERSON: base.person_id[chosen],
        },
        schema_overrides={"phone": pl.String},
    )
    _emit(writer, "crm", "contacts", f"contacts_{shifted.as_of.isoformat()}.csv", frame, "contact_id")
    return k


def _append_truth(truth_dir: Path, writers: list[_Writer], new: _World) -> None:
    """The delivery's records and new people added to the base's truth files (a contact updated keeps its row)."""
    record_truth = truth_dir / "record_truth.csv"
    rows = [pl.read_csv(record_truth, infer_schema=False)] + [r for w in writers for r in w.truth_rows]
    pl.concat(rows).unique(["source", "table", "record_id"], keep="first", maintain_order=True).write_csv(record_truth)
    persons_file = truth_dir / "persons.csv"
    persons = pl.read_csv(persons_file, infer_schema=False)
    added = pl.DataFrame(
        {
            **_person_truth_columns(new),
            "purchase_rate_per_day": [str(x) for x in new.purchase_rate],  # text, as the base's file reads
            "dropout_probability": [str(x) for x in new.dropout],
        }
    )
    pl.concat([persons, added.select(persons.columns)]).write_csv(persons_file)


PERSON = "_person"


def _frame(columns: dict, schema_overrides: dict | None = None) -> pl.DataFrame:
    """polars frame from numpy columns; object arrays (strings with None) go in as lists."""
    converted = {
        name: (values.tolist() if isinstance(values, np.ndarray) and values.dtype == object else values)
        for name, values in columns.items()
    }
    return pl.DataFrame(converted, schema_overrides=schema_overrides)


def _emit(
    writer: _Writer,
    source: str,
    table: str,
    file: str,
    frame: pl.DataFrame,
    key: str,
    defects: list[tuple[str, str, object]] = (),
    truth: bool = True,
) -> Path | None:
    """Plant defects, write the file in the format its extension names, and record truth. An empty
    frame (a delivery's short window without, say, a campaign) writes no file."""
    if frame.height == 0:
        return None
    for _, column, _ in defects:
        if column in frame.columns and frame.schema[column] != pl.String:
            frame = frame.with_columns(pl.col(column).cast(pl.String))
    frame, planted = writer.plant(frame, key, [d for d in defects if d[0] != "malformed_line"])
    malformed = [d for d in defects if d[0] == "malformed_line"]
    path = writer.path(source, table, file)
    body = frame.drop(PERSON)
    if path.suffix == ".csv":
        lines = body.write_csv().splitlines()
        for _, column, _ in malformed:
            for _ in range(writer.bad):
                index = int(writer.rng.integers(0, frame.height))
                if any(p[0] == index for p in planted):
                    continue
                lines[index + 1] += ",UNEXPECTED"
                planted.append((index, "malformed_line", column))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        offset = 2
    elif path.suffix == ".jsonl":
        path.write_text(body.write_ndjson(), encoding="utf-8")
        offset = 1
    else:
        body.write_parquet(path, statistics=False)
        offset = 1
    writer.record_planted(source, table, path, planted, frame, key, offset)
    writer.count(source, table, frame.height)
    if truth:
        writer.add_truth(source, table, frame[key], frame[PERSON])
    return path


def _write_crm(w: _World, writer: _Writer) -> None:
    rng = w.rng
    members = np.flatnonzero(w.in_crm | (w.household != ""))
    n = members.size
    created = w.acquired_day[members] - w.pre_window_days[members]
    phone = np.where(w.landline[members] != "", w.landline[members], w.phone[members])
    junk_phone = rng.random(n) < 0.003
    phone_text = _format_phone(rng, phone, np.ones(n, dtype=bool))
    phone_text[junk_phone] = rng.choice(np.array(JUNK_PHONES), junk_phone.sum())
    missing = rng.random((4, n))
    frame = _frame(
        {
            "contact_id": w.crm_id[members],
            "first_name": _typo(rng, w.first_name[members], 0.04),
            "last_name": _typo(rng, w.last_name[members], 0.04),
            "email": np.where(missing[0] < 0.05, None, _messy_email(rng, w.email[members])),
            "phone": np.where(missing[1] < 0.1, None, phone_text),
            "birth_date": [None if m < 0.2 else d.isoformat() for m, d in zip(missing[2], w.birth_date[members])],
            "gender": np.where(missing[3] < 0.1, None, w.gender[members]),
            "street": w.street[members],
            "city": w.city[members],
            "postcode": w.postcode[members],
            "country": w.country[members],
            "created_at": _iso(w.timestamps(created)),
            "updated_at": _iso(w.timestamps(np.maximum(created, 0) + rng.uniform(0, 30, n))),
            PERSON: w.person_id[members],
        },
        schema_overrides={c: pl.String for c in ("email", "phone", "birth_date", "gender")},
    )
    # Exact duplicate rows, as a CRM export repeats a record: the second copy is a planted defect.
    dupes = frame.sample(n=writer.bad, seed=int(rng.integers(0, 2**31)))
    combined = pl.concat([frame, dupes])
    order = rng.permutation(combined.height)
    combined = combined[order]
    first_file = f"contacts_{(w.as_of - dt.timedelta(days=30)).isoformat()}.csv"
    path = _emit(
        writer,
        "crm",
        "contacts",
        first_file,
        combined,
        "contact_id",
        [
            ("missing_required", "created_at", None),
            ("invalid_type", "updated_at", "31/02/2024 25:00"),
            ("malformed_line", "contact_id", None),
        ],
    )
    # The duplicate copies: the later occurrence in the file is the one quarantined.
    written = pl.read_csv(path, infer_schema=False, truncate_ragged_lines=True)
    seen: set[str] = set()
    for line_index, contact_id in enumerate(written["contact_id"].to_list()):
        if contact_id in set(dupes["contact_id"].to_list()):
            if contact_id in seen:
                writer.planted.append(
                    {
                        "source": "crm",
                        "table": "contacts",
                        "file": path.relative_to(writer.landing).as_posix(),
                        "line": line_index + 2,
                        "record_id": contact_id,
                        "defect": "duplicate_primary_key",
                        "column": "contact_id",
                    }
                )
            seen.add(contact_id)
    # A later delta export: updated versions (new phone or address) of ~5% of contacts.
    updated = frame.sample(fraction=0.05, seed=int(rng.integers(0, 2**31)))
    k = updated.height
    new_phone = _format_phone(rng, w._phones(rng)[:k], np.ones(k, dtype=bool))
    updated = updated.with_columns(
        pl.Series("phone", new_phone.tolist(), dtype=pl.String),
        pl.Series("street", [f"{x} New Rd" for x in rng.integers(1, 99, k)]),
        pl.Series("updated_at", _iso(w.timestamps(np.full(k, HISTORY_DAYS - 3.5)))),
    )
    _emit(writer, "crm", "contacts", "contacts_delta.csv", updated, "contact_id")


def _products(rng: np.random.Generator) -> pl.DataFrame:
    count = 200
    category = rng.choice(np.array(CATEGORIES), count)
    colour = rng.choice(np.array(COLOURS), count)
    base = {"dresses": 89, "tops": 35, "trousers": 59, "shoes": 99, "accessories": 25}
    price = np.round(np.array([base[c] for c in category]) * rng.uniform(0.6, 1.8, count), 2)
    return pl.DataFrame(
        {
            "product_id": [f"SKU{i:05d}" for i in range(count)],
            "category": category,
            "colour": colour,
            "product_name": [
                f"{c.title()} {k.rstrip('s').title()} {i}" for i, (c, k) in enumerate(zip(colour, category))
            ],
            "price": price,
        }
    )


def _write_webshop_and_pos(w: _World, writer: _Writer, products: pl.DataFrame | None = None) -> None:
    rng = w.rng
    person, day = w.purchase_person, w.purchase_day
    online = rng.random(person.size) < w.online_share[person]
    products = _products(rng) if products is None else products
    catalogue = products.height

    # Web-shop orders and their lines.
    op, od = person[online], day[online]
    n = op.size
    order_ids = np.array(_serials(w, "O", n, 8))
    lines_per_order = rng.integers(1, 5, n)
    line_order = np.repeat(np.arange(n), lines_per_order)
    women = w.gender[op[line_order]] == "F"
    # Women pick dresses more often: a category-weighted product choice.
    is_dress = (products["category"] == "dresses").to_numpy()
    weights_women = np.where(is_dress, 3.0, 1.0)
    pick_women = rng.choice(catalogue, line_order.size, p=weights_women / weights_women.sum())
    pick_other = rng.choice(
        catalogue, line_order.size, p=np.where(is_dress, 0.2, 1.0) / np.where(is_dress, 0.2, 1.0).sum()
    )
    product_index = np.where(women, pick_women, pick_other)
    quantity = rng.choice(np.array([1, 1, 1, 2, 3]), line_order.size)
    unit_price = products["price"].to_numpy()[product_index]
    totals = np.bincount(line_order, weights=quantity * unit_price, minlength=n)
    status = rng.choice(np.array(["completed", "cancelled", "returned"]), n, p=[0.9, 0.05, 0.05])
    guest = ~w.has_account[op]
    guest_junk = guest & (rng.random(n) < 0.05)
    email = _messy_email(rng, w.email[op]).astype(object)
    email[guest_junk] = rng.choice(np.array(JUNK_EMAILS), guest_junk.sum())
    with_phone = rng.random(n) < 0.3
    orders = _frame(
        {
            "order_id": order_ids,
            "customer_id": np.where(guest, None, w.shop_id[op]),
            "email": np.where(rng.random(n) < 0.03, None, email),
            "phone": np.where(with_phone, _format_phone(rng, w.phone[op], np.ones(n, dtype=bool)), None),
            "ordered_at": _iso(w.timestamps(od)),
            "total_amount": [f"{t:.2f}" for t in totals],
            "currency": np.where(w.country[op] == "US", "USD", np.where(w.country[op] == "GB", "GBP", "EUR")),
            "status": status,
            "shipping_city": w.city[op],
            "shipping_postcode": w.postcode[op],
            "shipping_country": w.country[op],
            PERSON: w.person_id[op],
        },
        schema_overrides={"customer_id": pl.String, "email": pl.String, "phone": pl.String},
    )
    _emit(
        writer,
        "webshop",
        "orders",
        f"orders_{w.as_of.isoformat()}.jsonl",
        orders,
        "order_id",
        [
            ("invalid_type", "total_amount", "12,50 EUR"),
            ("not_allowed_value", "status", "shipped"),
            ("missing_required", "ordered_at", None),
        ],
    )
    order_lines = _frame(
        {
            "order_line_id": [f"{order_ids[o]}-{k}" for o, k in zip(line_order, _rank_within(line_order))],
            "order_id": order_ids[line_order],
            "product_id": products["product_id"].to_numpy()[product_index],
            "product_name": products["product_name"].to_numpy()[product_index],
            "category": products["category"].to_numpy()[product_index],
            "colour": products["colour"].to_numpy()[product_index],
            "quantity": quantity.astype("int64"),
            "unit_price": [f"{p:.2f}" for p in unit_price],
            PERSON: w.person_id[op[line_order]],
        }
    )
    _emit(
        writer,
        "webshop",
        "order_lines",
        f"order_lines_{w.as_of.isoformat()}.parquet",
        order_lines,
        "order_line_id",
        [("invalid_type", "quantity", "two")],
        truth=False,
    )

    # Store transactions: members use their card 70% of the time; otherwise a walk-in nobody can identify.
    sp, sd = person[~online], day[~online]
    m = sp.size
    card = w.is_loyalty[sp] & (rng.random(m) < 0.7)
    amount = np.round(rng.lognormal(np.log(60), 0.6, m), 2)
    pos = _frame(
        {
            "transaction_id": _serials(w, "T", m, 8),
            "store_id": rng.choice(np.array([f"S{i:03d}" for i in range(12)]), m),
            "loyalty_id": np.where(card, w.loyalty_id[sp], None),
            "transacted_at": _iso(w.timestamps(sd)),
            "total_amount": [f"{a:.2f}" for a in amount],
            "currency": np.where(w.country[sp] == "US", "USD", np.where(w.country[sp] == "GB", "GBP", "EUR")),
            "payment_method": rng.choice(np.array(["card", "cash", "mobile"]), m),
            PERSON: np.where(card, w.person_id[sp], ""),
        },
        schema_overrides={"loyalty_id": pl.String},
    )
    _emit(
        writer,
        "pos",
        "transactions",
        f"transactions_{w.as_of.isoformat()}.csv",
        pos,
        "transaction_id",
        [("invalid_type", "total_amount", "abc"), ("malformed_line", "transaction_id", None)],
    )


def _serials(w: _World, prefix: str, count: int, digits: int) -> list[str]:
    """Record ids numbered from the world's serial offset (0 in the base demo)."""
    return [f"{prefix}{i:0{digits}d}" for i in range(w.serial_offset, w.serial_offset + count)]


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal (sorted) group ids."""
    starts = np.r_[0, np.flatnonzero(np.diff(groups)) + 1]
    ranks = np.arange(groups.size) - np.repeat(starts, np.diff(np.r_[starts, groups.size]))
    return ranks


def _hex_ids(rng: np.random.Generator, count: int, length: int = 16) -> np.ndarray:
    raw = rng.integers(0, 16, (count, length))
    return np.array(["".join("0123456789abcdef"[d] for d in row) for row in raw])


def _uuid(rng: np.random.Generator, count: int) -> np.ndarray:
    hexes = _hex_ids(rng, count, 32)
    return np.array([f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in hexes])


def _device_events(
    w: _World,
    eligible: np.ndarray,
    rate: np.ndarray,
    ids_per_person: np.ndarray,
    types: list[str],
    type_weights: list[float],
) -> tuple:
    """Events over each person's cookies/devices; account holders log in on most of them."""
    rng = w.rng
    person, day = w.activity(rate, eligible, tail_days=30)
    slot = (rng.random(person.size) * ids_per_person[person]).astype(int)
    event_type = rng.choice(np.array(types), person.size, p=type_weights)
    can_login = w.has_account[person]
    event_type = np.where((event_type == "login") & ~can_login, types[0], event_type)
    # Make sure most account holders' cookies/devices see a login at least once.
    first_of_slot = np.zeros(person.size, dtype=bool)
    key = person.astype(np.int64) * 8 + slot
    _, first_index = np.unique(key, return_index=True)
    first_of_slot[first_index] = True
    forced = first_of_slot & can_login & (rng.random(person.size) < 0.9)
    event_type = np.where(forced, "login", event_type)
    return person, day, slot, event_type


def _write_web(w: _World, writer: _Writer) -> None:
    rng = w.rng
    cookies_per_person = rng.integers(1, 4, w.n)
    cookie_ids = _hex_ids(rng, w.n * 3).reshape(w.n, 3)
    rate = 0.015 + 2.0 * w.purchase_rate
    person, day, slot, event_type = _device_events(
        w,
        w.visits_web,
        rate,
        cookies_per_person,
        ["page_view", "product_view", "add_to_cart", "login"],
        [0.6, 0.25, 0.1, 0.05],
    )
    order = np.argsort(day, kind="stable")
    person, day, slot, event_type = person[order], day[order], slot[order], event_type[order]
    n = person.size
    frame = _frame(
        {
            "event_id": _serials(w, "WE", n, 9),
            "cookie_id": cookie_ids[person, slot],
            "customer_id": np.where(event_type == "login", w.shop_id[person], None),
            "event_type": event_type,
            "page_url": rng.choice(np.array(["/", "/dresses", "/shoes", "/sale", "/account", "/cart"]), n),
            "occurred_at": _iso(w.timestamps(day)),
            PERSON: w.person_id[person],
        },
        schema_overrides={"customer_id": pl.String},
    )
    # Two exports: up to a week before as_of, and the last week plus late events from before it.
    cutoff = HISTORY_DAYS - 7
    late = (day < cutoff) & (rng.random(n) < 0.01)
    early_mask = (day < cutoff) & ~late
    first_name = f"events_{(w.as_of - dt.timedelta(days=7)).isoformat()}.jsonl"
    _emit(
        writer,
        "web",
        "events",
        first_name,
        frame.filter(pl.Series(early_mask)),
        "event_id",
        [("missing_required", "cookie_id", None), ("invalid_type", "occurred_at", "yesterday")],
    )
    _emit(
        writer, "web", "events", f"events_{w.as_of.isoformat()}.jsonl", frame.filter(pl.Series(~early_mask)), "event_id"
    )


def _write_app(w: _World, writer: _Writer) -> None:
    rng = w.rng
    devices_per_person = np.where(rng.random(w.n) < 0.1, 2, 1)
    device_ids = _hex_ids(rng, w.n * 2, 20).reshape(w.n, 2)
    platform = np.where(rng.random(w.n) < 0.55, "ios", "android")
    ad_ids = _uuid(rng, w.n * 2).reshape(w.n, 2)
    ad_ids = np.where(platform[:, None] == "ios", np.char.upper(ad_ids.astype(str)), ad_ids)
    limit_tracking = rng.random((w.n, 2)) < 0.1
    ad_ids = np.where(limit_tracking, "00000000-0000-0000-0000-000000000000", ad_ids)
    rate = 0.01 + 1.5 * w.purchase_rate
    person, day, slot, event_type = _device_events(
        w,
        w.uses_app,
        rate,
        devices_per_person,
        ["screen_view", "app_open", "add_to_cart", "login"],
        [0.45, 0.4, 0.1, 0.05],
    )
    n = person.size
    frame = _frame(
        {
            "event_id": _serials(w, "AE", n, 9),
            "device_id": device_ids[person, slot],
            "advertising_id": ad_ids[person, slot],
            "platform": platform[person],
            "customer_id": np.where(event_type == "login", w.shop_id[person], None),
            "event_type": event_type,
            "occurred_at": _iso(w.timestamps(day)),
            PERSON: w.person_id[person],
        },
        schema_overrides={"customer_id": pl.String},
    )
    _emit(
        writer,
        "app",
        "events",
        f"events_{w.as_of.isoformat()}.parquet",
        frame,
        "event_id",
        [("not_allowed_value", "platform", "windows")],
    )


def _write_email(w: _World, writer: _Writer) -> None:
    """Fortnightly campaigns to subscribers; opens and clicks follow engagement while active."""
    rng = w.rng
    campaign_days = np.arange(3.0, HISTORY_DAYS, 14.0)
    subscribed = w.email_subscribed
    first_campaign = np.searchsorted(campaign_days, w.acquired_day)
    unsubscribe_at = np.where(rng.random(w.n) < 0.15, rng.integers(0, campaign_days.size, w.n), campaign_days.size)
    sends = np.where(subscribed, np.maximum(unsubscribe_at - first_campaign, 0), 0)
    person = np.repeat(np.arange(w.n), sends)
    campaign = first_campaign[person] + _rank_within(person)
    sent_day = campaign_days[campaign] + rng.uniform(0, 0.3, person.size)
    active = sent_day <= w.active_until[person] + 30
    engagement = np.clip(w.purchase_rate[person] / 0.02, 0, 1)
    opened = rng.random(person.size) < np.where(active, 0.15 + 0.5 * engagement, 0.03)
    clicked = opened & (rng.random(person.size) < 0.3)
    bounced = rng.random(person.size) < 0.01
    # The last campaign a leaver receives; people who never leave (unsubscribe_at past the end) do not.
    unsubscribed = (campaign == unsubscribe_at[person] - 1) & (unsubscribe_at[person] < campaign_days.size)
    kinds = [
        ("sent", np.ones(person.size, dtype=bool), 0.0),
        ("bounced", bounced, 0.01),
        ("opened", opened & ~bounced, 0.2),
        ("clicked", clicked & ~bounced, 0.25),
        ("unsubscribed", unsubscribed, 0.3),
    ]
    persons, days, types, campaigns = [], [], [], []
    for kind, mask, delay in kinds:
        persons.append(person[mask])
        days.append(np.minimum(sent_day[mask] + delay + rng.uniform(0, 0.2, mask.sum()), HISTORY_DAYS))
        types.append(np.full(mask.sum(), kind))
        campaigns.append(campaign[mask])
    person, day = np.concatenate(persons), np.concatenate(days)
    order = np.argsort(day, kind="stable")
    person, day = person[order], day[order]
    event_type, campaign = np.concatenate(types)[order], np.concatenate(campaigns)[order]
    n = person.size
    frame = _frame(
        {
            "event_id": _serials(w, "EE", n, 9),
            "email": _messy_email(rng, w.email[person]),
            "campaign_id": [f"CMP-E{c:03d}" for c in campaign],
            "event_type": event_type,
            "occurred_at": _iso(w.timestamps(day)),
            PERSON: w.person_id[person],
        }
    )
    _emit(
        writer,
        "esp",
        "email_events",
        f"email_events_{w.as_of.isoformat()}.csv",
        frame,
        "event_id",
        [("not_allowed_value", "event_type", "forwarded")],
    )


def _write_sms(w: _World, writer: _Writer) -> None:
    rng = w.rng
    campaign_days = np.arange(10.0, HISTORY_DAYS, 30.0)
    eligible = w.sms_consent & (w.phone != "")
    first_campaign = np.searchsorted(campaign_days, w.acquired_day)
    sends = np.where(eligible, campaign_days.size - first_campaign, 0)
    person = np.repeat(np.arange(w.n), sends)
    campaign = first_campaign[person] + _rank_within(person)
    sent_day = campaign_days[campaign]
    delivered = rng.random(person.size) < 0.95
    clicked = delivered & (rng.random(person.size) < 0.05 + 0.2 * np.clip(w.purchase_rate[person] / 0.02, 0, 1))
    kinds = [("sent", np.ones(person.size, dtype=bool)), ("delivered", delivered), ("clicked", clicked)]
    persons = np.concatenate([person[m] for _, m in kinds])
    days = np.concatenate([sent_day[m] + 0.01 * i for i, (_, m) in enumerate(kinds)])
    types = np.concatenate([np.full(m.sum(), k) for k, m in kinds])
    campaigns = np.concatenate([campaign[m] for _, m in kinds])
    order = np.argsort(days, kind="stable")
    persons, days, types, campaigns = persons[order], days[order], types[order], campaigns[order]
    n = persons.size
    frame = _frame(
        {
            "event_id": _serials(w, "SE", n, 9),
            "phone": w.phone[persons],
            "campaign_id": [f"CMP-S{c:03d}" for c in campaigns],
            "event_type": types,
            "occurred_at": _iso(w.timestamps(days)),
            PERSON: w.person_id[persons],
        }
    )
    _emit(writer, "sms", "sms_events", f"sms_events_{w.as_of.isoformat()}.csv", frame, "event_id")


def _write_loyalty(w: _World, writer: _Writer, dirty_rng: np.random.Generator | None = None) -> None:
    rng = w.rng
    members = np.flatnonzero(w.is_loyalty)
    n = members.size
    spend = np.bincount(w.purchase_person, minlength=w.n)[members]
    tier = np.select([spend >= 12, spend >= 6, spend >= 2], ["platinum", "gold", "silver"], "bronze")
    joined = np.maximum(w.acquired_day[members] - w.pre_window_days[members] * rng.random(n), -900)
    frame = _frame(
        {
            "loyalty_id": w.loyalty_id[members],
            "email": np.where(rng.random(n) < 0.1, None, _messy_email(rng, w.email[members])),
            "phone": np.where(rng.random(n) < 0.2, None, _format_phone(rng, w.phone[members], np.ones(n, dtype=bool))),
            "first_name": _typo(rng, w.first_name[members], 0.03),
            "last_name": _typo(rng, w.last_name[members], 0.03),
            "tier": tier,
            "points": (spend * rng.integers(50, 150, n)).astype("int64"),
            "country": w.country[members],
            "joined_at": _iso(w.timestamps(joined)),
            "updated_at": _iso(w.timestamps(np.maximum(joined, 0) + rng.uniform(0, 10, n))),
            PERSON: w.person_id[members],
        },
        schema_overrides={"email": pl.String, "phone": pl.String},
    )
    if dirty_rng is not None:
        frame = _with_person_attributes(w, frame, members, dirty_rng)
    else:  # the export has the columns; the default demo leaves them empty
        frame = frame.with_columns(
            pl.lit(None, pl.String).alias(c) for c in ("birth_date", "street", "city", "postcode", "region")
        )
    _emit(
        writer,
        "loyalty",
        "members",
        f"members_{w.as_of.isoformat()}.parquet",
        frame,
        "loyalty_id",
        [("not_allowed_value", "tier", "diamond")],
    )


def _write_support(w: _World, writer: _Writer) -> None:
    rng = w.rng
    contacts = rng.random(w.n) < w.ticket_share
    tickets = np.where(contacts, rng.integers(1, 4, w.n), 0)
    person = np.repeat(np.arange(w.n), tickets)
    n = person.size
    day = w.acquired_day[person] + rng.random(n) * (HISTORY_DAYS - w.acquired_day[person])
    channel = rng.choice(np.array(["email", "phone", "chat"]), n, p=[0.5, 0.3, 0.2])
    email = _messy_email(rng, w.email[person]).astype(object)
    junk_email = rng.random(n) < 0.02
    email[junk_email] = rng.choice(np.array(JUNK_EMAILS), junk_email.sum())
    phone = _format_phone(rng, w.phone[person], np.zeros(n, dtype=bool))
    junk_phone = rng.random(n) < 0.02
    phone[junk_phone] = rng.choice(np.array(JUNK_PHONES), junk_phone.sum())
    frame = _frame(
        {
            "ticket_id": _serials(w, "TK", n, 8),
            "crm_contact_id": np.where(w.in_crm[person] & (rng.random(n) < 0.5), w.crm_id[person], None),
            "email": np.where(channel != "phone", email, None),
            "phone": np.where(channel == "phone", phone, None),
            "channel": channel,
            "subject": rng.choice(
                np.array(["Where is my order?", "Return request", "Size advice", "Billing, question"]), n
            ),
            "opened_at": _iso(w.timestamps(day)),
            "status": rng.choice(np.array(["open", "pending", "solved"]), n, p=[0.1, 0.1, 0.8]),
            PERSON: w.person_id[person],
        },
        schema_overrides={"crm_contact_id": pl.String, "email": pl.String, "phone": pl.String},
    )
    _emit(writer, "support", "tickets", f"tickets_{w.as_of.isoformat()}.jsonl", frame, "ticket_id")


def _write_consents(w: _World, writer: _Writer) -> None:
    """Email consent at sign-up (later withdrawn by some); SMS and other purposes for some."""
    rng = w.rng
    people = np.arange(w.n)
    rows = []
    email_decision = w.email_subscribed
    rows.append((people, np.full(w.n, "marketing_email"), np.where(email_decision, "y", "n"), w.acquired_day))
    withdrawn = email_decision & (rng.random(w.n) < 0.1)
    rows.append(
        (
            people[withdrawn],
            np.full(withdrawn.sum(), "marketing_email"),
            np.full(withdrawn.sum(), "n"),
            np.minimum(w.acquired_day[withdrawn] + rng.uniform(10, 400, withdrawn.sum()), HISTORY_DAYS),
        )
    )
    asked_sms = w.sms_consent | (rng.random(w.n) < 0.3)
    rows.append(
        (
            people[asked_sms],
            np.full(asked_sms.sum(), "marketing_sms"),
            np.where(w.sms_consent[asked_sms], "y", "n"),
            w.acquired_day[asked_sms] + 0.1,
        )
    )
    for purpose, share in (("personalization", 0.5), ("data_sharing", 0.2), ("marketing_push", 0.2)):
        asked = rng.random(w.n) < share
        rows.append(
            (
                people[asked],
                np.full(asked.sum(), purpose),
                np.where(rng.random(asked.sum()) < 0.6, "y", "n"),
                w.acquired_day[asked] + 0.2,
            )
        )
    person = np.concatenate([r[0] for r in rows])
    purpose = np.concatenate([r[1] for r in rows])
    status = np.concatenate([r[2] for r in rows])
    day = np.concatenate([r[3] for r in rows])
    order = np.argsort(day, kind="stable")
    person, purpose, status, day = person[order], purpose[order], status[order], day[order]
    n = person.size
    use_phone = (purpose == "marketing_sms") & (w.phone[person] != "")
    frame = _frame(
        {
            "consent_event_id": _serials(w, "K", n, 8),
            "email": np.where(use_phone, None, _messy_email(rng, w.email[person])),
            "phone": np.where(use_phone, w.phone[person], None),
            "purpose": purpose,
            "status": status,
            "recorded_at": _iso(w.timestamps(day)),
            "channel": rng.choice(np.array(["web", "app", "store", "call_centre"]), n),
            PERSON: w.person_id[person],
        },
        schema_overrides={"email": pl.String, "phone": pl.String},
    )
    _emit(
        writer,
        "preferences",
        "consents",
        f"consents_{w.as_of.isoformat()}.csv",
        frame,
        "consent_event_id",
        [("not_allowed_value", "status", "maybe")],
    )


def _person_truth_columns(w: _World) -> dict:
    """persons.csv's columns of who each simulated person is (their behaviour's parameters follow)."""
    return {
        "person_id": w.person_id,
        "first_name": w.first_name,
        "last_name": w.last_name,
        "gender": w.gender,
        "birth_date": [d.isoformat() for d in w.birth_date],
        "country": w.country,
        "email": w.email,
        "phone_e164": w.phone,
        "household_id": w.household.astype(str),
        "landline_e164": w.landline.astype(str),
        "acquired_at": _iso(w.timestamps(w.acquired_day)),
        "active_until": _iso(w.timestamps(w.active_until)),
    }


def _write_truth(w: _World, writer: _Writer) -> None:
    writer.truth.mkdir(parents=True, exist_ok=True)
    truth = pl.concat(writer.truth_rows).unique(["source", "table", "record_id"], keep="first", maintain_order=True)
    truth.write_csv(writer.truth / "record_truth.csv")
    pl.DataFrame(
        {
            **_person_truth_columns(w),
            "purchase_rate_per_day": w.purchase_rate,
            "dropout_probability": w.dropout,
        }
    ).write_csv(writer.truth / "persons.csv")
    pl.DataFrame(
        writer.planted,
        schema={
            "source": pl.String,
            "table": pl.String,
            "file": pl.String,
            "line": pl.Int64,
            "record_id": pl.String,
            "defect": pl.String,
            "column": pl.String,
        },
    ).sort(["source", "table", "file", "line"]).write_csv(writer.truth / "planted_bad_rows.csv")
    junk = (
        [("email", e, "shared placeholder address") for e in JUNK_EMAILS]
        + [("phone", p, "placeholder number") for p in JUNK_PHONES]
        + [("ad_id", "00000000-0000-0000-0000-000000000000", "limit ad tracking")]
    )
    pl.DataFrame(junk, schema=["namespace", "value", "note"], orient="row").write_csv(
        writer.truth / "junk_identifiers.csv"
    )


# The dirty-duplicates scenario (generate_demo(dirty_duplicates=True, hard_negatives=True)).
NICKNAMES = {
    "James": "Jim",
    "John": "Jack",
    "William": "Bill",
    "Thomas": "Tom",
    "David": "Dave",
    "Daniel": "Dan",
    "Samuel": "Sam",
    "Henry": "Harry",
    "Oliver": "Ollie",
    "Isabella": "Bella",
    "Elias": "Eli",
    "Matteo": "Matt",
    "Sophia": "Sophie",
    "Emily": "Emmy",
}


def _pick_pairs(rng: np.random.Generator, pool: np.ndarray, count: int, used: set[int]) -> list[tuple[int, int]]:
    """`count` disjoint pairs of persons from `pool` not used yet."""
    free = np.array([p for p in rng.permutation(pool) if int(p) not in used])
    pairs = [(int(a), int(b)) for a, b in free[: 2 * count].reshape(-1, 2)]
    used.update(x for pair in pairs for x in pair)
    return pairs


def _plant_hard_negatives(w: _World, rng: np.random.Generator) -> None:
    """Different people who look alike, all in the CRM: households (same address, landline and surname,
    some a family email), twins (same birth date, surname and address) and namesakes (same first and
    last name, another city and birth date)."""
    pool = np.flatnonzero(w.in_crm & (w.household == ""))
    used: set[int] = set()
    households = _pick_pairs(rng, pool, max(1, w.n // 25), used)
    twins = _pick_pairs(rng, pool, max(1, w.n // 200), used)
    namesakes = _pick_pairs(rng, pool, max(1, w.n // 100), used)
    for h, (a, b) in enumerate(households + twins):
        w.last_name[b] = w.last_name[a]
        w.street[b], w.city[b], w.postcode[b], w.country[b] = w.street[a], w.city[a], w.postcode[a], w.country[a]
        w.household[[a, b]] = f"HN{h:05d}"
        w.landline[[a, b]] = f"+1628{rng.integers(2000000, 9999999)}"
        if h < len(households) and rng.random() < 0.3:
            w.email[b] = w.email[a]  # a shared family email
    for a, b in twins:
        w.birth_date[b] = w.birth_date[a]
        if w.first_name[b] == w.first_name[a]:
            names = FIRST_NAMES_F if w.first_name[a] in FIRST_NAMES_F else FIRST_NAMES_M
            w.first_name[b] = names[(names.index(w.first_name[a]) + 1) % len(names)]
    for a, b in namesakes:
        w.first_name[b], w.last_name[b] = w.first_name[a], w.last_name[a]
        if w.city[b] == w.city[a]:
            options = [c for c in CITIES[w.country[b]] if c[0] != w.city[a]]
            w.city[b] = options[0][0]
            w.postcode[b] = f"{options[0][1].strip()}{rng.integers(10, 99)}"


def _typo_in(rng: np.random.Generator, name: str) -> str:
    """One keying error: two letters swapped, one dropped or one replaced."""
    if len(name) <= 3:
        return name
    k = int(rng.integers(1, len(name) - 1))
    kind = rng.random()
    if kind < 0.4:
        return name[:k] + name[k + 1] + name[k] + name[k + 2 :]
    if kind < 0.7:
        return name[:k] + name[k + 1 :]
    return name[:k] + str(rng.choice(list("aeiourn"))) + name[k + 1 :]


def _transposed_or_mistyped(rng: np.random.Generator, date: dt.date) -> str:
    if date.day <= 12 and date.day != date.month and rng.random() < 0.6:
        return date.replace(month=date.day, day=date.month).isoformat()  # day and month transposed
    year = date.year - date.year % 10 + (date.year % 10 + int(rng.integers(1, 9))) % 10
    return date.replace(year=year, day=min(date.day, 28)).isoformat()  # a wrong digit in the year


def _moved_address(w: _World, rng: np.random.Generator, person: int) -> tuple[str, str, str]:
    city, prefix = CITIES[w.country[person]][int(rng.integers(0, len(CITIES[w.country[person]])))]
    postcode = f"{prefix}{rng.integers(0, 100):02d}" if not prefix.endswith(" ") else f"{prefix}{rng.integers(1, 9)}CD"
    return f"{rng.integers(1, 300)} {STREETS[int(rng.integers(0, len(STREETS)))]}", city, postcode


# What a second entry of a person gets wrong; each duplicate gets one or two of these (as FEBRL's
# generator bounds the modifications per record), so the truth stays resolvable by a careful human.
DUPLICATE_DEFECTS = (
    "first_name_typo",
    "last_name_typo",
    "nickname",
    "names_swapped",
    "moved",
    "address_missing",
    "birth_date_missing",
    "birth_date_wrong",
    "first_name_missing",
)


def _write_crm_duplicates(w: _World, writer: _Writer, rng: np.random.Generator) -> None:
    """Contacts entered again (one in five CRM persons; a quarter of them twice more), sharing no
    identifier with their first entry: the CRM's own duplicates."""
    members = np.flatnonzero(w.in_crm)
    chosen = members[rng.random(members.size) < 0.2]
    copies = np.where(rng.random(chosen.size) < 0.25, 2, 1)
    rows = []
    for number, person in enumerate(np.repeat(chosen, copies)):
        defects = set(rng.choice(DUPLICATE_DEFECTS, size=int(rng.integers(1, 3)), replace=False).tolist())
        first, last = str(w.first_name[person]), str(w.last_name[person])
        if "nickname" in defects and first in NICKNAMES:
            first = NICKNAMES[first]
        elif "first_name_typo" in defects:
            first = _typo_in(rng, first)
        if "last_name_typo" in defects:
            last = _typo_in(rng, last)
        if "names_swapped" in defects:
            first, last = last, first  # entered surname first
        street, city, postcode = w.street[person], w.city[person], w.postcode[person]
        if "moved" in defects:
            street, city, postcode = _moved_address(w, rng, person)
        elif "address_missing" in defects:
            street = postcode = None
        birth_date = w.birth_date[person].isoformat()
        if "birth_date_missing" in defects:
            birth_date = None
        elif "birth_date_wrong" in defects:
            birth_date = _transposed_or_mistyped(rng, w.birth_date[person])
        created = float(rng.uniform(0, HISTORY_DAYS - 5))
        rows.append(
            {
                "contact_id": f"D{2_000_000 + number:07d}",
                "first_name": None if "first_name_missing" in defects else first,
                "last_name": last,
                # A new address or number of its own, or none: never one the first entry has.
                "email": f"{_ascii(w.first_name[person])[:1]}{number}.dup@mailbox.example"
                if rng.random() < 0.3
                else None,
                "phone": f"+1{rng.integers(201, 990)}{rng.integers(200, 999)}{rng.integers(0, 10000):04d}"
                if rng.random() < 0.2
                else None,
                "birth_date": birth_date,
                "gender": w.gender[person],
                "street": street,
                "city": city,
                "postcode": postcode,
                "country": w.country[person],
                "created_at": _iso(w.timestamps(np.array([created])))[0],
                "updated_at": _iso(w.timestamps(np.array([created + 1.0])))[0],
                PERSON: w.person_id[person],
            }
        )
    frame = pl.DataFrame(rows, schema={**{c: pl.String for c in rows[0] if c != PERSON}, PERSON: pl.String})
    _emit(writer, "crm", "contacts", "contacts_duplicates.csv", frame, "contact_id")


def _with_person_attributes(
    w: _World, frame: pl.DataFrame, members: np.ndarray, rng: np.random.Generator
) -> pl.DataFrame:
    """The loyalty export of the scenario: birth date and address (some missing, old or mistyped), and
    no email or phone for two members in five, who link to the CRM by person attributes only."""
    n = members.size
    addresses = [
        _moved_address(w, rng, p) if rng.random() < 0.1 else (w.street[p], w.city[p], w.postcode[p]) for p in members
    ]
    no_contact = rng.random(n) < 0.4
    roll = rng.random(n)
    birth_dates = [
        None if r < 0.1 else _transposed_or_mistyped(rng, w.birth_date[p]) if r < 0.18 else w.birth_date[p].isoformat()
        for p, r in zip(members, roll)
    ]
    return frame.with_columns(
        pl.Series("birth_date", birth_dates, dtype=pl.String),
        pl.Series("street", [None if rng.random() < 0.1 else a[0] for a in addresses], dtype=pl.String),
        pl.Series("city", [a[1] for a in addresses], dtype=pl.String),
        pl.Series("postcode", [None if rng.random() < 0.05 else a[2] for a in addresses], dtype=pl.String),
        pl.lit(None, pl.String).alias("region"),
        pl.when(pl.Series(no_contact)).then(None).otherwise(pl.col("email")).alias("email"),
        pl.when(pl.Series(no_contact)).then(None).otherwise(pl.col("phone")).alias("phone"),
    )
