"""Predictive traits: lifetime value and "alive" probability (BG/NBD + Gamma-Gamma), purchase and
churn propensity, and look-alike scoring. Plain numpy/scipy/scikit-learn; no Dagster imports."""

from cdp.errors import CdpError


class PredictionError(CdpError):
    """A model cannot be fitted or used; the message says why and what to do."""
