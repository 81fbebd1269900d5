{#- The linkable identifiers of each source record (record_id, seen_at, identity_key, identity_id),
    and each record's anchor: its smallest linkable identifier (the same by key and by id, as ids
    follow key order). Used by identity_edges and identity_person_records. -#}
{% macro linkable_identities(identities, identifiers) -%}
    select
        {{ identities }}.record_id,
        {{ identities }}.seen_at,
        {{ identifiers }}.identity_key,
        {{ identifiers }}.identity_id
    from {{ identities }}
    inner join {{ identifiers }}
        on {{ identifiers }}.namespace = {{ identities }}.namespace
        and {{ identifiers }}.identity_value = {{ identities }}.identity_value
    where {{ identifiers }}.is_linkable
{%- endmacro %}

{% macro record_anchors(linkable) -%}
    select
        record_id,
        min(identity_key) as anchor_key,
        min(identity_id) as anchor_id
    from {{ linkable }}
    group by record_id
{%- endmacro %}
