-- XDM Individual Profile records: every staging row that describes a person (cdp.profile), in XDM field
-- names, every attribute of the catalogue (models/xdm/_xdm__models.yml) typed (macros/xdm_sources.sql).
{{ xdm_profile_records_sql() }}
