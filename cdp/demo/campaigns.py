"""The demo's campaigns, as the simulated customers live them (issue 23).

`cdp demo` runs the pipeline as of four weeks before the demo's as-of day, when the two demo campaigns
are sent, then lets the simulated people who received them respond, then runs it as of the as-of day.
What the people do comes from what the destinations actually received (the sync's current file), not
from the warehouse: the email offer (summer_email_offer) makes each person it reached buy once more
within its 14-day window with probability RESPONSE_PROBABILITY (a real effect); the SMS reminder
(sms_reminder) changes nothing (a null effect). The responses are new landing files beside the
generator's normal output, which stays byte for byte what `cdp generate` writes; the ground truth of
who responded goes to truth/campaign_responses.csv and truth/campaign_effects.csv.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from cdp.errors import CdpError

LAUNCH_DAYS_BEFORE_AS_OF = 28
RESPONSE_PROBABILITY = 0.10
CURRENCIES = {"US": "USD", "GB": "GBP", "DE": "EUR"}


@dataclass(frozen=True)
class CampaignEffect:
    campaign: str
    sync: str  # the sync whose deliveries reach the people
    identifier: str  # the delivered field that names the person: email | phone
    response_probability: float  # chance that a person reached buys once more within the window
    window_days: int


CAMPAIGN_EFFECTS = (
    CampaignEffect("summer_email_offer", "email_offer_to_esp", "email", RESPONSE_PROBABILITY, 14),
    CampaignEffect("sms_reminder", "sms_reminder_to_sms_tool", "phone", 0.0, 14),
)


@dataclass(frozen=True)
class CampaignResponses:
    exposed_at: dt.datetime
    receivers: dict[str, int]  # campaign -> people the deliveries reached
    responders: dict[str, int]  # campaign -> people who bought once more because of it
    orders_file: Path | None


def launch_day(as_of: dt.date) -> dt.date:
    """The as-of day of the demo's campaign launch run."""
    return as_of - dt.timedelta(days=LAUNCH_DAYS_BEFORE_AS_OF)


def _normalized(identifier: str, values: list[str | None]) -> list[str | None]:
    if identifier == "email":
        return [v.strip().lower() if v else None for v in values]
    return [v.strip() if v else None for v in values]


def write_campaign_responses(
    out_dir: Path, exposed_at: dt.datetime, deliveries: dict[str, list[str]], seed: int = 42
) -> CampaignResponses:
    """Simulate the people's response to what each demo campaign delivered (campaign -> delivered
    identifiers, as the destination holds them) from `exposed_at` on; write the extra web-shop orders as
    landing files and the ground truth. The same inputs write the same bytes."""
    out_dir = Path(out_dir)
    persons_file = out_dir / "truth" / "persons.csv"
    if not persons_file.exists():
        raise CdpError(
            f"no simulated people at {persons_file}: campaign responses are the demo's people answering the demo "
            "campaigns. Generate the demo first (`cdp generate`, or `cdp demo`)."
        )
    persons = pl.read_csv(persons_file, infer_schema=False)
    rng = np.random.default_rng([seed, zlib.crc32(exposed_at.isoformat().encode())])
    truth_rows, orders, lines = [], [], []
    receivers, responders = {}, {}
    for effect in CAMPAIGN_EFFECTS:
        delivered = set(_normalized(effect.identifier, deliveries.get(effect.campaign, []))) - {None}
        column = "email" if effect.identifier == "email" else "phone_e164"
        reached = persons.filter(pl.col(column).is_in(sorted(delivered))).sort("person_id")
        draws = rng.random(reached.height)
        offsets = rng.uniform(0.05, effect.window_days - 0.05, reached.height)
        amounts = np.round(rng.uniform(30, 150, reached.height), 2)
        responded = draws < effect.response_probability
        receivers[effect.campaign], responders[effect.campaign] = reached.height, int(responded.sum())
        for index, person in enumerate(reached.iter_rows(named=True)):
            order_id, ordered_at = None, None
            if responded[index]:
                order_id = f"CR{len(orders):07d}"
                ordered_at = exposed_at + dt.timedelta(days=float(offsets[index]))
                orders.append(
                    {
                        "order_id": order_id,
                        "customer_id": None,
                        "email": person["email"],
                        "phone": None,
                        "ordered_at": ordered_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "total_amount": f"{amounts[index]:.2f}",
                        "currency": CURRENCIES.get(person["country"], "USD"),
                        "status": "completed",
                        "shipping_city": None,
                        "shipping_postcode": None,
                        "shipping_country": person["country"],
                    }
                )
                lines.append(
                    {
                        "order_line_id": f"{order_id}-0",
                        "order_id": order_id,
                        "product_id": "SKU-SUMMER-OFFER",
                        "product_name": "Summer offer dress",
                        "category": "dresses",
                        "colour": "blue",
                        "quantity": 1,
                        "unit_price": f"{amounts[index]:.2f}",
                    }
                )
            truth_rows.append(
                {
                    "campaign": effect.campaign,
                    "person_id": person["person_id"],
                    "responded": bool(responded[index]),
                    "order_id": order_id,
                    "ordered_at": ordered_at.isoformat(sep=" ") if ordered_at else None,
                }
            )
    stamp = exposed_at.strftime("%Y-%m-%d")
    orders_file = None
    if orders:
        landing = out_dir / "landing" / "webshop"
        orders_file = landing / "orders" / f"orders_campaign_responses_{stamp}.jsonl"
        orders_file.parent.mkdir(parents=True, exist_ok=True)
        orders_file.write_text("".join(json.dumps(order) + "\n" for order in orders), encoding="utf-8")
        (landing / "order_lines").mkdir(parents=True, exist_ok=True)
        pl.DataFrame(lines).write_parquet(landing / "order_lines" / f"order_lines_campaign_responses_{stamp}.parquet")
    truth = out_dir / "truth"
    pl.DataFrame(
        truth_rows,
        schema={
            "campaign": pl.String,
            "person_id": pl.String,
            "responded": pl.Boolean,
            "order_id": pl.String,
            "ordered_at": pl.String,
        },
    ).write_csv(truth / "campaign_responses.csv")
    pl.DataFrame(
        [
            {
                "campaign": effect.campaign,
                "sync": effect.sync,
                "response_probability": effect.response_probability,
                "window_days": effect.window_days,
                "exposed_at": exposed_at.isoformat(sep=" "),
                "receivers": receivers[effect.campaign],
                "responders": responders[effect.campaign],
            }
            for effect in CAMPAIGN_EFFECTS
        ]
    ).write_csv(truth / "campaign_effects.csv")
    return CampaignResponses(exposed_at, receivers, responders, orders_file)


def read_deliveries(base_dir: Path) -> dict[str, list[str]]:
    """What each demo campaign's sync delivered, read from its file destination's current file (what
    the email or SMS tool holds): campaign -> the delivered identifiers."""
    import activation

    specs = activation.load_sync_specs()
    deliveries: dict[str, list[str]] = {}
    for effect in CAMPAIGN_EFFECTS:
        spec = specs.get(effect.sync)
        if spec is None or spec.destination.type != "file":
            continue
        current = Path(base_dir) / str(spec.setting("path")) / f"{spec.name}__current.{spec.setting('format')}"
        if not current.exists():
            deliveries[effect.campaign] = []
            continue
        reader = {
            "csv": lambda p: pl.read_csv(p, infer_schema=False),
            "jsonl": pl.read_ndjson,
            "parquet": pl.read_parquet,
        }
        frame = reader[str(spec.setting("format"))](current)
        deliveries[effect.campaign] = [str(v) for v in frame[effect.identifier].drop_nulls().to_list()]
    return deliveries
