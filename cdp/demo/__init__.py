"""Demo data generator."""
