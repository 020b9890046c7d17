"""schedopt: optimal unmasking schedules for masked diffusion models.

The expected KL of any schedule is the error of a left-endpoint step approximation of the
data's conditional entropy curve (Chen, Cong and Li, COLT 2026); schedopt computes it exactly,
optimizes it with Optax, certifies the optimum with an exact dynamic program, and exports the
result for other samplers.

Importing schedopt changes no global JAX setting: the certificate and every reported KL are
computed in float64 inside a scoped `jax.enable_x64` context (see `schedopt._internal.precision`).

The public names below load on first use (PEP 562), so `import schedopt` and the command line
start without importing JAX: the CLI can take Ctrl-C from its first instruction on, and a
`--help` answers at once.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> the folder that exports it (relative to this package).
_EXPORTS = {
    "distributions": "distributions",
    "models": "models",
    "BlockProfiles": "curve",
    "block_profiles_from_table": "curve",
    "profile_from_loss_curve": "curve",
    "EntropyProfile": "curve",
    "estimate_within_budget": "estimate",
    "estimate_block_profiles": "estimate",
    "estimate_law": "estimate",
    "estimate_profile": "estimate",
    "expected_kl_binomial": "objective",
    "expected_kl": "objective",
    "relaxed_kl": "objective",
    "optimize_batch": "solve",
    "optimize_binomial": "solve",
    "optimize_blocks": "solve",
    "frontier": "solve",
    "jys_grid": "solve",
    "optimal_schedule": "solve",
    "optimize": "solve",
    "optimize_robust": "solve",
    "TimeGrid": "schedule",
    "Schedule": "schedule",
    "cosine": "schedule",
    "dtc_schedule": "schedule",
    "eds": "schedule",
    "pyramid": "schedule",
    "tc_schedule": "schedule",
    "uniform": "schedule",
    "export_schedule": "export",
    "read_schedule_file": "export",
    "write_export": "export",
    "schedule_nll": "check",
    "sample_quality": "check",
    "sample": "check",
    "sample_entropy_bounded": "check",
    "verify": "check",
    "generate": "decode",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'schedopt' has no attribute {name!r}")
    module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
    value = module if _EXPORTS[name] == name else getattr(module, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
