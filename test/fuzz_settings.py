"""Hypothesis settings shared by the fuzz suites: seeded and reproducible, bounded in `make test`, longer in
`make fuzz` (LC_FUZZ=long). Both are derandomized so that CI reruns exactly what passed here; set
LC_FUZZ_RANDOM=1 to explore fresh examples (and turn each failure found into a fixed unit test)."""
import os

from hypothesis import HealthCheck, settings

LONG = os.environ.get("LC_FUZZ") == "long"
RANDOM = os.environ.get("LC_FUZZ_RANDOM") == "1"


def fuzz(examples: int, long_examples: int | None = None):
    """A settings decorator: `examples` per test normally, `long_examples` (default 20x) under LC_FUZZ=long."""
    return settings(max_examples=(long_examples or 20 * examples) if LONG else examples, deadline=None,
                    derandomize=not RANDOM, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
