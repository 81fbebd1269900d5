-- Links between identifiers that co-occur on a source record: a star from the record's smallest
-- linkable identifier to each of its others, enough to connect them all. Each edge keeps an example
-- record as provenance.
with

identities as (
    select * from {{ ref('xdm_identities') }}
),

identifiers as (
    select * from {{ ref('identity_identifiers') }}
),

linkable as (
    {{ linkable_identities('identities', 'identifiers') }}
),

record_anchors as (
    {{ record_anchors('linkable') }}
),

final as (
    select
        record_anchors.anchor_key as left_identity_key,
        linkable.identity_key as right_identity_key,
        record_anchors.anchor_id as left_identity_id,
        linkable.identity_id as right_identity_id,
        count(*) as record_count,
        min(linkable.record_id) as example_record_id,
        min(linkable.seen_at) as first_seen_at,
        max(linkable.seen_at) as last_seen_at
    from linkable
    inner join record_anchors
        on record_anchors.record_id = linkable.record_id
    where linkable.identity_key <> record_anchors.anchor_key
    group by record_anchors.anchor_key, linkable.identity_key, record_anchors.anchor_id, linkable.identity_id
)

select * from final
