{#- The merge policy (survivorship) of the golden record `profiles`: which source record gives each
    group of attributes. A group's fields always come from one record (an address is street, city,
    postcode and country of the same record). Rules:
      most_recent        the record updated last wins (the default: Adobe's timestamp-ordered merge)
      least_recent       the record created first wins (e.g. a first-known birth date)
      source_precedence  records of the `precedence` sources win in that order; others by recency
      most_frequent      the value (all fields of the group together) most records agree on; ties by recency
      most_filled        the record with the most known profile attributes wins; ties by recency
    nulls: ignore (the default: a record with every field of the group null never wins, so a null never
    overwrites a value) or overwrite (it may: for sources that clear a field on purpose).
    `var('merge_policy')` replaces the whole policy (the unit tests use it); edit the YAML below to change
    the shipped one. Every winner is recorded in profile_attribute_lineage. -#}
{% macro merge_policy() -%}
{%- set shipped -%}
groups:
  - name: person_name
    fields: {first_name: person_name_first_name, last_name: person_name_last_name}
    # The CRM is the maintained record of who a customer is; order and ticket forms are typed in a hurry.
    rule: source_precedence
    precedence: [crm__contacts, loyalty__members]
  - name: birth_date
    fields: {birth_date: person_birth_date}
    rule: most_frequent
  - name: gender
    fields: {gender: person_gender}
    rule: most_recent
  - name: email
    fields: {email: personal_email_address}
    rule: most_recent
  - name: phone
    fields: {phone: mobile_phone_number}
    rule: most_recent
  - name: home_address
    fields: {street: home_address_street1, city: home_address_city, postcode: home_address_postal_code,
             country_code: home_address_country_code}
    rule: source_precedence
    precedence: [crm__contacts, loyalty__members]
  - name: loyalty
    fields: {loyalty_tier: loyalty_tier, loyalty_points: loyalty_points}
    rule: source_precedence
    precedence: [loyalty__members]
{%- endset -%}
    {%- set policy = var('merge_policy', none) or fromyaml(shipped) -%}
    {%- for group in policy.get('groups', []) -%}
        {%- if group.get('rule', 'most_recent') not in ['most_recent', 'least_recent', 'source_precedence',
                                                        'most_frequent', 'most_filled'] -%}
            {{ exceptions.raise_compiler_error("merge policy group " ~ group.name ~ " (macros/merge_policy.sql): rule is "
                ~ group.rule ~ "; allowed: most_recent, least_recent, source_precedence, most_frequent, most_filled") }}
        {%- endif -%}
        {%- if group.get('nulls', 'ignore') not in ['ignore', 'overwrite'] -%}
            {{ exceptions.raise_compiler_error("merge policy group " ~ group.name ~ ": nulls is " ~ group.nulls
                ~ "; allowed: ignore, overwrite") }}
        {%- endif -%}
        {%- if group.get('rule') == 'source_precedence' and not group.get('precedence') -%}
            {{ exceptions.raise_compiler_error("merge policy group " ~ group.name ~ ": rule source_precedence needs "
                ~ "`precedence`, the ordered list of source tables (e.g. [crm__contacts, loyalty__members])") }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(policy) }}
{%- endmacro %}


{#- ORDER BY of a group's candidate records, best first; record_id breaks the last ties so reruns agree. -#}
{% macro merge_order(group) -%}
    {%- set rule = group.get('rule', 'most_recent') -%}
    {%- if rule == 'least_recent' -%}
        record_updated_at asc, record_id
    {%- elif rule == 'source_precedence' -%}
        case source_table
        {%- for source in group.precedence %} when '{{ source | replace("'", "''") }}' then {{ loop.index }}{% endfor %}
        else {{ group.precedence | length + 1 }} end, record_updated_at desc, record_id desc
    {%- elif rule == 'most_frequent' -%}
        agreeing_records desc, record_updated_at desc, record_id desc
    {%- elif rule == 'most_filled' -%}
        filled_attributes desc, record_updated_at desc, record_id desc
    {%- else -%}
        record_updated_at desc, record_id desc
    {%- endif -%}
{%- endmacro %}
