-- XDM identityMap as a long table: one row per (source record, namespace, identifier value), from the
-- cdp.identifiers of every staging model (macros/xdm_sources.sql). A source with `versions: true` keeps
-- the identifiers of every version of a record (seen_at: the latest version that carried it), as an
-- identity graph keeps a link once made. Incremental: the rows of every record loaded since the last
-- build replace that record's rows.
{{ config(unique_key='record_id') }}

{{ xdm_identities_sql() }}
