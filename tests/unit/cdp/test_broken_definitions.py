"""One invalid definition breaks only itself (issue 21.1), at the level of the loaders and of the
Dagster code location: the audience compiler keeps every valid audience (and drops the ones including
an invalid one), the sync loader keeps every valid spec, and the definitions load with the invalid spec
as an asset that fails with its message while a valid sync beside it materializes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from cdp.audiences import AudienceProject, compile_audiences
from cdp.definitions import load_sync_specs
from support.workspace import PROJECT_ROOT


def write_project(tmp_path: Path, audiences: dict[str, str]) -> AudienceProject:
    project = AudienceProject(tmp_path / "dbt_project")
    project.definitions_dir.mkdir(parents=True)
    (project.dbt_project_dir / "models" / "segments").mkdir(parents=True)
    for name, text in audiences.items():
        (project.definitions_dir / f"{name}.yml").write_text(textwrap.dedent(text))
    return project


def test_an_invalid_audience_is_left_out_and_the_others_compile(tmp_path):
    project = write_project(
        tmp_path,
        {
            "good": "name: good\nconditions: [{field: profile.is_known, op: eq, value: true}]\n",
            "typo": "name: typo\nconditions: [{field: profile.is_known, op: equals, value: true}]\n",
            "includes_typo": "name: includes_typo\nconditions: [{in_audience: typo}]\n",
            "not_yaml": "name: [unclosed\n",
        },
    )
    broken: dict = {}
    files = compile_audiences(project, broken)
    models = sorted(path.name for path in files if path.suffix == ".sql" and path.name.startswith("seg_"))
    assert models == ["seg_good.sql"]
    assert sorted(broken) == ["includes_typo", "not_yaml", "typo"]
    assert str(broken["typo"]).startswith("audiences/typo.yml: conditions[0].op: found 'equals'; allowed: eq, ne")
    assert "in_audience 'typo' is an audience whose definition is invalid" in str(broken["includes_typo"])
    assert "not valid YAML" in str(broken["not_yaml"]) and "line 2, column 1" in str(broken["not_yaml"])
    macro = files[project.audience_list_macro]
    assert "seg_good" in macro and "seg_typo" not in macro


GOOD_SYNC = """\
name: {name}
audience: segments.seg_high_value
primary_key: profile_id
fields: {{profile_id: profile_id}}
destination: {{type: file, format: csv, path: destinations/{name}}}
marketing_actions: [call_centre_outreach]
"""


def test_an_invalid_sync_spec_is_left_out_and_the_others_load(tmp_path):
    (tmp_path / "a_good.yml").write_text(GOOD_SYNC.format(name="a_good"))
    (tmp_path / "b_typo.yml").write_text(GOOD_SYNC.format(name="b_typo") + "mode: mirorr\n")
    (tmp_path / "c_same_name.yml").write_text(GOOD_SYNC.format(name="a_good"))
    specs, broken = load_sync_specs(tmp_path)
    assert list(specs) == ["a_good"]
    assert {b.name: b.message for b in broken}.keys() == {"b_typo", "c_same_name"}
    messages = {b.name: b.message for b in broken}
    assert "mode is 'mirorr'; expected one of mirror" in messages["b_typo"]
    assert "already used by" in messages["c_same_name"]


LOCATION = """
import json
import dagster as dg
from orchestration.definitions import defs
graph = defs.resolve_asset_graph()
keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
job = defs.resolve_job_def("cdp_pipeline")
schedules = sorted(s.name for s in defs.schedules)
broken = graph.get(dg.AssetKey(["activation", "b_typo"]))
# The broken spec's asset fails with its message when run (no warehouse needed: it raises at once).
result = dg.materialize([defs.resolve_assets_def(dg.AssetKey(["activation", "b_typo"]))], raise_on_error=False,
                        resources={}, selection=[dg.AssetKey(["activation", "b_typo"])])
failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
print(json.dumps({"keys": sorted(keys), "schedules": schedules, "description": broken.description,
                  "failure": failure.event_specific_data.user_failure_data.description}))
"""


def test_the_code_location_loads_with_an_invalid_sync_spec_and_a_scheduled_one(tmp_path):
    syncs = tmp_path / "syncs"
    syncs.mkdir()
    (syncs / "a_good.yml").write_text(GOOD_SYNC.format(name="a_good") + "schedule: '0 6 * * *'\n")
    (syncs / "b_typo.yml").write_text(GOOD_SYNC.format(name="b_typo") + "mode: mirorr\n")
    (syncs / "c_bad_cron.yml").write_text(GOOD_SYNC.format(name="c_bad_cron") + "schedule: 'every morning'\n")
    result = subprocess.run(
        [sys.executable, "-c", LOCATION],
        cwd=PROJECT_ROOT,
        env={**os.environ, "CDP_SYNCS_DIR": str(syncs), "CDP_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"activation/a_good", "activation/b_typo", "activation/c_bad_cron", "segments/seg_high_value"} <= set(
        found["keys"]
    )
    assert "sync_a_good_schedule" in found["schedules"] and "cdp_pipeline_daily" in found["schedules"]
    assert found["description"].startswith("INVALID SYNC DEFINITION (b_typo.yml):")
    assert "mode is 'mirorr'" in found["failure"]
