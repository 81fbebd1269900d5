"""Write dbt_project/seeds/exchange_rates.csv from the European Central Bank's reference rates.

The ECB publishes its daily euro foreign exchange reference rates as one wide CSV (eurofxref-hist.csv:
a Date column, then one column per currency: units of that currency per euro, N/A where none). This
tool keeps the currencies and the period asked for, in the long form the seed uses:

    python -m tools.exchange_rates eurofxref-hist.csv --since 2024-01-01 --currencies USD,GBP,CHF

(the shipped seed: ECB rates 2024-01-02 .. 2026-10-30 of USD GBP CHF JPY SEK NOK DKK PLN CZK CAD AUD CNY).
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import polars as pl

SEED = Path(__file__).resolve().parent.parent / "dbt_project" / "seeds" / "exchange_rates.csv"
DEFAULT_CURRENCIES = "USD,GBP,CHF,JPY,SEK,NOK,DKK,PLN,CZK,CAD,AUD,CNY"


def ecb_long_form(path: Path, since: dt.date, currencies: list[str]) -> pl.DataFrame:
    wide = pl.read_csv(path, infer_schema=False)
    wide = wide.select([c for c in wide.columns if c.strip()])  # the ECB file ends every line with a comma
    missing = [c for c in currencies if c not in wide.columns]
    if missing:
        raise SystemExit(f"{path}: no column for {', '.join(missing)}; it has {', '.join(wide.columns[1:])}")
    return (
        wide.select(pl.col("Date").str.to_date().alias("rate_date"), *currencies)
        .filter(pl.col("rate_date") >= since)
        .unpivot(index="rate_date", variable_name="currency_code", value_name="units_per_eur")
        .filter(pl.col("units_per_eur") != "N/A")
        .with_columns(pl.col("units_per_eur").cast(pl.Float64))
        .sort("rate_date", "currency_code")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ecb_csv", type=Path)
    parser.add_argument("--since", type=dt.date.fromisoformat, default=dt.date(2024, 1, 1))
    parser.add_argument("--currencies", default=DEFAULT_CURRENCIES)
    parser.add_argument("--out", type=Path, default=SEED)
    args = parser.parse_args()
    rates = ecb_long_form(args.ecb_csv, args.since, [c.strip().upper() for c in args.currencies.split(",")])
    rates.write_csv(args.out)
    print(f"{args.out}: {rates.height:,} rates, {rates['rate_date'].min()} .. {rates['rate_date'].max()}")


if __name__ == "__main__":
    main()
