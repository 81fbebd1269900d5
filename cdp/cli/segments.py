"""Audiences: compile, list, preview, overlap, report."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cdp.cli.app import main
from cdp.settings import current_paths
from cdp.warehouse import open_warehouse


@main.group()
def segments() -> None:
    """Audiences: compile the YAML definitions, sizes, previews, overlaps and the audience report."""


def _compile_or_fail() -> list[Path]:
    from cdp.audiences import AudienceError, write_audiences

    try:
        return write_audiences()
    except AudienceError as error:
        raise click.ClickException(str(error)) from None


@segments.command("compile")
@click.option("--check", is_flag=True, help="Only report generated files that are stale (exit 1 if any).")
def segments_compile(check: bool) -> None:
    """Compile dbt_project/audiences/*.yml into dbt models (models/segments/audiences/). `cdp run`
    does this by itself; run it to check a definition, and against the built warehouse's columns."""
    from cdp.audiences import AudienceError, column_problems, list_audiences, stale_files

    if check:
        try:
            stale = stale_files()
        except AudienceError as error:
            raise click.ClickException(str(error)) from None
        for path in stale:
            click.echo(f"stale: {path}")
        if stale:
            sys.exit(1)
        click.echo("generated audience files are up to date")
        return
    changed = _compile_or_fail()
    for path in changed:
        click.echo(f"wrote {path}")
    audiences = list_audiences()
    click.echo(
        f"{len(audiences)} audiences ({sum(a.kind == 'yaml' for a in audiences)} from YAML), "
        f"{len(changed)} file(s) changed"
    )
    for problem in column_problems(warehouse=current_paths().warehouse):
        click.echo(f"warning (columns of the warehouse built now): {problem}", err=True)


@segments.command("list")
def segments_list() -> None:
    """Every audience with its size after the last run and the change since the run before."""
    from cdp.audiences import list_audiences
    from cdp.audiences.insight import audience_sizes

    with open_warehouse(read_only=True) as con:
        sizes = {size.name: size for size in audience_sizes(con)}
    click.echo(f"{'audience':<28}{'kind':<6}{'members':>10}{'change':>9}{'entered':>9}{'exited':>8}")
    for audience in list_audiences():
        size = sizes.get(audience.name)
        if size is None:
            click.echo(f"{audience.name:<28}{audience.kind:<6}{'(not built yet)':>36}")
            continue
        change = "new" if size.change is None else f"{size.change:+,}"
        click.echo(
            f"{audience.name:<28}{audience.kind:<6}{size.members:>10,}{change:>9}{size.realized:>9,}{size.exited:>8,}"
        )


@segments.command("preview")
@click.argument("name")
@click.option("--sample", default=10, show_default=True, type=click.IntRange(0, 1000), help="Members to show.")
@click.option(
    "--sql/--no-sql",
    "show_sql",
    default=True,
    show_default=True,
    help="Show the compiled SQL (runs `dbt compile` on the model).",
)
def segments_preview(name: str, sample: int, show_sql: bool) -> None:
    """An audience's size, a sample of its members and its compiled SQL."""
    import tempfile

    import polars as pl

    from cdp.audiences import list_audiences
    from cdp.audiences.insight import sample_members

    audiences = {audience.name: audience for audience in list_audiences()}
    if name.removeprefix("seg_") not in audiences:
        raise click.BadParameter(f"no audience {name!r}; known: {', '.join(audiences)}", param_hint="NAME")
    audience = audiences[name.removeprefix("seg_")]
    with open_warehouse(read_only=True) as con:
        size = con.execute(f"select count(*) from segments.{audience.model}").fetchone()[0]
        members = sample_members(con, audience.model, sample)
    click.echo(
        f"audience {audience.name} ({audience.kind}, {audience.source.relative_to(audience.source.parents[2])}):"
        f" {size:,} members"
    )
    with pl.Config(tbl_rows=sample, tbl_cols=12, fmt_str_lengths=40, tbl_hide_dataframe_shape=True):
        click.echo(str(members))
    if not show_sql:
        return
    _compile_or_fail()
    import shutil
    import subprocess

    from cdp.settings import DBT_PROJECT_DIR
    from orchestration.dbt import DBT_EXECUTABLE

    with tempfile.TemporaryDirectory() as target:
        # dbt's partial parse state, so the compile does not parse the whole project again.
        partial_parse = DBT_PROJECT_DIR / "target" / "partial_parse.msgpack"
        if partial_parse.exists():
            shutil.copy(partial_parse, target)
        result = subprocess.run(
            [
                DBT_EXECUTABLE,
                "compile",
                "--quiet",
                "--select",
                audience.model,
                "--project-dir",
                str(DBT_PROJECT_DIR),
                "--profiles-dir",
                str(DBT_PROJECT_DIR),
                "--target-path",
                target,
            ],
            capture_output=True,
            text=True,
        )
        compiled = list(Path(target).rglob(f"{audience.model}.sql"))
        if result.returncode != 0 or not compiled:
            raise click.ClickException(f"dbt compile failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
        click.echo(f"compiled SQL:\n{compiled[0].read_text()}")


@segments.command("overlap")
@click.argument("names", nargs=-1, required=True)
def segments_overlap(names: tuple[str, ...]) -> None:
    """Members shared by every pair of audiences NAMES (the diagonal is each one's size)."""
    from cdp.audiences.insight import known_audiences, overlap_matrix

    wanted = [name.removeprefix("seg_") for name in names]
    with open_warehouse(read_only=True) as con:
        known = known_audiences(con)
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise click.BadParameter(f"no audience {', '.join(unknown)}; known: {', '.join(known)}", param_hint="NAMES")
        matrix = overlap_matrix(con, wanted)
    width = max(12, *(len(name) + 2 for name in wanted))
    click.echo(" " * width + "".join(f"{name:>{width}}" for name in wanted))
    for row in matrix.iter_rows(named=True):
        size = row[row["segment_name"]]
        cells = "".join(
            f"{f'{row[name]:,} ({row[name] / size:.0%})' if size and name != row['segment_name'] else f'{row[name]:,}':>{width}}"
            for name in wanted
        )
        click.echo(f"{row['segment_name']:<{width}}{cells}")
    click.echo("(cell: members in both; in brackets, the share of the row audience)")


@segments.command("report")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="HTML file to write (default: reports/audiences.html in the data dir).",
)
def segments_report(out: Path | None) -> None:
    """Write the audience report: one static HTML file with sizes over time, the overlap heatmap and the RFM grid."""
    from cdp.audiences.report import build_report

    paths = current_paths()
    if not paths.warehouse.exists():
        raise click.ClickException(f"no warehouse at {paths.warehouse} yet: run `cdp run` first")
    written = build_report(paths.warehouse, out or paths.data_dir / "reports" / "audiences.html")
    click.echo(f"audience report: {written}")
