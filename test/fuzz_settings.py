"""Hypothesis settings shared by the fuzz suites: seeded and reproducible, bounded in `make test`, longer in
`make fuzz` (LC_FUZZ=long)."""
import os

from hypothesis import HealthCheck, settings

LONG = os.environ.get("LC_FUZZ") == "long"


def fuzz(examples: int, long_examples: int | None = None):
    """A settings decorator: `examples` per test normally, `long_examples` (default 20x) under LC_FUZZ=long."""
    return settings(max_examples=(long_examples or 20 * examples) if LONG else examples, deadline=None,
                    derandomize=not LONG, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
