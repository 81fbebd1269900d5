"""Definitions users edit (audience YAML, sync specs), loaded so that one broken file breaks only itself.

A typo in one audience or sync spec must not take the Dagster code location, every other audience or
`cdp sync <another>` down with it. These loaders return the valid definitions and, separately, each
broken one with the precise message (file, path inside it, what was found, what is allowed): Dagster
shows a broken definition as an asset that fails with that message, the CLI names it, and the
publication records which audiences and syncs it skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BrokenDefinition:
    kind: str  # audience | sync
    name: str  # the audience (its file stem) or the sync (its file stem)
    file: Path
    message: str

    @property
    def asset_path(self) -> list[str]:
        """The Dagster asset key the definition would have had, where its failure shows."""
        return ["segments", f"seg_{self.name}"] if self.kind == "audience" else ["activation", self.name]

    def describe(self) -> str:
        return f"{self.kind} {self.name} skipped: {self.message}"


def broken_audiences() -> list[BrokenDefinition]:
    """Audiences whose YAML is invalid (or that include an invalid one); every other one compiles."""
    from cdp.audiences import AudienceProject, broken_audiences

    project = AudienceProject()
    return [
        BrokenDefinition("audience", name, project.definitions_dir / f"{name}.yml", str(error))
        for name, error in sorted(broken_audiences(project).items())
    ]


def load_sync_specs(directory: str | Path | None = None) -> tuple[dict, list[BrokenDefinition]]:
    """The valid sync specs by name, and the broken ones (invalid, or a name another file took)."""
    from activation import ActivationError, load_sync_spec
    from activation.spec import syncs_dir

    directory = Path(directory) if directory else syncs_dir()
    specs: dict = {}
    broken: list[BrokenDefinition] = []
    for path in sorted(directory.glob("*.yml")):
        try:
            spec = load_sync_spec(path)
        except ActivationError as error:
            broken.append(BrokenDefinition("sync", path.stem, path, str(error)))
            continue
        if spec.name in specs:
            broken.append(
                BrokenDefinition(
                    "sync",
                    path.stem,
                    path,
                    f"{path}: declares name {spec.name!r}, already used by {specs[spec.name].path}. "
                    "Give every sync a unique name.",
                )
            )
            continue
        specs[spec.name] = spec
    return specs, broken


def syncs_of_broken_audiences(specs: dict, broken: list[BrokenDefinition]) -> list[str]:
    """Valid syncs that send an audience whose definition is broken (they cannot run either)."""
    tables = {f"segments.seg_{b.name}" for b in broken if b.kind == "audience"}
    return sorted(name for name, spec in specs.items() if spec.audience in tables)
