"""Settings for the whole suite."""

from hypothesis import settings

# The suite runs on small shared machines: Hypothesis' per-example deadline (200 ms) fails tests
# on load, not on bugs. Correctness is what the properties check; speed has its own benchmarks.
settings.register_profile("raftwork", deadline=None)
settings.load_profile("raftwork")
