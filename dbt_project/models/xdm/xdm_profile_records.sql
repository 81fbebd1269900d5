-- XDM Individual Profile records: every staging row that describes a person (cdp.profile), in XDM field
-- names, every attribute of the catalogue (models/xdm/_xdm__models.yml) typed (macros/xdm_sources.sql).
-- Incremental: a new version of a record (a CRM update) replaces the old one.
{{ config(unique_key='record_id') }}

{{ xdm_profile_records_sql() }}
