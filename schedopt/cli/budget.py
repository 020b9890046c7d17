"""What `profile --max-forward-passes` prints, for the --model and --hf-model paths alike."""

from __future__ import annotations

import sys


def budget_summary(profile) -> dict:
    """The passes, schedules and stability of a --max-forward-passes profile ({} otherwise)."""
    if "stability" not in profile.meta or "max_forward_passes" not in profile.meta:
        return {}
    return {"forward_passes": profile.meta["forward_passes"],
            "schedules": profile.meta["schedules"], "stability": profile.meta["stability"]}


def report_stability(result) -> None:
    """One stderr line per target T: how stable a `BudgetEstimate`'s schedule is."""
    for t, report in result.stability.items():
        print(f"schedopt profile: T = {t}: schedule {result.schedules[t].tolist()} agrees with "
              f"{100 * report['agreement']:.0f}% of bootstrap re-estimates; 90% of them put its "
              f"excess KL below {report['excess_p90']:.3g} nats "
              f"({100 * report['relative_p90']:.1f}% of the optimum)", file=sys.stderr)
