"""Default regression thresholds of `refconv compare` (stdlib only, so `refconv --help` stays fast)."""

ERROR_FACTOR = 10.0  # new bound_ratio > ERROR_FACTOR * max(base, 1) regresses
TIME_FACTOR = 1.5  # median time slower by this factor ...
TIME_MIN_MS = 1.0  # ... and by at least this many milliseconds regresses
