-- XDM ExperienceEvents: every interaction (cdp.event of the staging models), with the XDM eventType it
-- maps to, the catalogue's fields typed and the numeric measures as JSON (macros/xdm_sources.sql).
-- Incremental: a build takes the rows each source loaded since the last one (loaded_at) and replaces
-- the events they carry (a new version of an order replaces the old one).
{{ config(unique_key='record_id') }}

{{ xdm_experience_events_sql() }}
