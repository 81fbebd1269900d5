"""A broken audience or sync definition as an asset that fails with the precise message.

The code location always loads: a definition that cannot be read keeps its asset key (segments/seg_<name>
or activation/<name>) and shows, in the asset graph and in every run, as a failure that names the
file, the path inside it, what was found and what is allowed. Everything else runs and publishes.
"""

import dagster as dg

from cdp.definitions import BrokenDefinition


def build_broken_definition_asset(broken: BrokenDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey(broken.asset_path),
        group_name="segments" if broken.kind == "audience" else "activation",
        description=f"INVALID {broken.kind.upper()} DEFINITION ({broken.file.name if broken.file else broken.name}): "
        f"{broken.message}",
        metadata={"invalid_definition": broken.message, "file": str(broken.file)},
        tags={"cdp/invalid_definition": "true"},
    )
    def invalid_definition(context: dg.AssetExecutionContext):
        raise dg.Failure(
            description=f"invalid {broken.kind} definition: {broken.message}",
            metadata={"file": str(broken.file)},
        )

    return invalid_definition
