-- XDM ExperienceEvents: every interaction (cdp.event of the staging models), with the XDM eventType it
-- maps to, the catalogue's fields typed and the numeric measures as JSON (macros/xdm_sources.sql).
{{ xdm_experience_events_sql() }}
