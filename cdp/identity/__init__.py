"""Identity tools outside dbt: evaluation against a ground truth and `cdp profile explain`."""
