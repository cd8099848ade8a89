"""From failing rows to problems: shrink a failing case, characterize its region, group findings.

The functions here are pure (specs, rows and "does it still fail the same way" callbacks in, records out)
and import no framework; `refconv.hunt` supplies callbacks that run cases in the adapters' workers.
"""

from refconv.findings.problem import Problem

__all__ = ["Problem"]
