"""Campaign effectiveness: campaigns declared in dbt_project/campaigns/*.yml (definition), measured by
the dbt models of the analytics schema, reported by `cdp campaigns report` (report)."""

from cdp.campaigns.definition import (
    Campaign,
    CampaignError,
    Goal,
    load_campaigns,
    render_campaign_catalogue,
    write_campaign_catalogue,
)

__all__ = [
    "Campaign",
    "CampaignError",
    "Goal",
    "load_campaigns",
    "render_campaign_catalogue",
    "write_campaign_catalogue",
]
