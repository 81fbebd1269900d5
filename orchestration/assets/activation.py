"""One asset per sync spec: send the audience's changes to its destination."""


import dagster as dg

import activation
from orchestration.governance.labels import refresh_column_labels
from orchestration.settings import current_paths
from orchestration.warehouse import WarehouseResource


def build_sync_asset(spec: activation.SyncSpec) -> dg.AssetsDefinition:
    audience_schema, audience_table = spec.audience.split(".", 1)

    @dg.asset(
        key=dg.AssetKey(["activation", spec.name]),
        group_name="activation",
        kinds={"duckdb"},
        deps=[dg.AssetKey([audience_schema, audience_table])],
        description=spec.description or f"Syncs {spec.audience} to its {spec.destination.type} destination.",
    )
    def sync_audience(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        with warehouse.connect() as con:
            refresh_column_labels(con)  # the policy gate in run_sync reads the labels of this build
            result = activation.run_sync(con, spec, run_id=context.run_id, base_dir=current_paths().destinations_dir)
        return dg.MaterializeResult(
            metadata={
                "added": result.added,
                "changed": result.changed,
                "removed": result.removed,
                "invalid": result.invalid,
                "sent": result.sent,
                "failed": result.failed,
                "unchanged": result.unchanged,
                "duration_s": round(result.duration_s, 3),
            }
        )

    return sync_audience


SYNC_ASSETS = [build_sync_asset(spec) for spec in activation.load_sync_specs().values()]
