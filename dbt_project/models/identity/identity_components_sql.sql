-- The pure-SQL fallback of identity_components (engines without Python models), built when the var
-- identity_components_sql is true; tests check it gives the same partition as the scipy model.
{{ config(
    enabled=var('identity_components_sql', false),
    post_hook="{{ drop_connected_components_work_tables() }}",
) }}

with

components as (
    {{ connected_components(
        edges="(select * from " ~ ref('identity_links') ~ " where is_kept)",
        left_column='left_identity_key', right_column='right_identity_key',
        nodes="(select identity_key from " ~ ref('identity_identifiers') ~ " where is_linkable)", node_column='identity_key',
    ) }}
)

select
    node as identity_key,
    component as component_key
from components
