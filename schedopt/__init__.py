"""schedopt: optimal unmasking schedules for masked diffusion models.

The expected KL of any schedule is the error of a left-endpoint step approximation of the
data's conditional entropy curve (Chen, Cong and Li, COLT 2026); schedopt computes it exactly,
optimizes it with Optax, certifies the optimum with an exact dynamic program, and exports the
result for other samplers.

schedopt turns on JAX's float64 mode on import: the certificate and every reported KL are
float64 (the optimizer itself may run in float32).
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from . import distributions as distributions  # noqa: E402
from .batch import optimize_batch as optimize_batch  # noqa: E402
from .binomial import TimeGrid as TimeGrid  # noqa: E402
from .binomial import expected_kl_binomial as expected_kl_binomial  # noqa: E402
from .binomial import optimize_binomial as optimize_binomial  # noqa: E402
from .blocks import BlockProfiles as BlockProfiles  # noqa: E402
from .blocks import block_profiles_from_table as block_profiles_from_table  # noqa: E402
from .blocks import estimate_block_profiles as estimate_block_profiles  # noqa: E402
from .blocks import optimize_blocks as optimize_blocks  # noqa: E402
from .divergence import expected_kl as expected_kl  # noqa: E402
from .divergence import relaxed_kl as relaxed_kl  # noqa: E402
from .estimate import estimate_profile as estimate_profile  # noqa: E402
from .exact import frontier as frontier  # noqa: E402
from .exact import optimal_schedule as optimal_schedule  # noqa: E402
from .export import export_schedule as export_schedule  # noqa: E402
from .export import read_schedule_file as read_schedule_file  # noqa: E402
from .export import write_export as write_export  # noqa: E402
from .nll import schedule_nll as schedule_nll  # noqa: E402
from .optimize import optimize as optimize  # noqa: E402
from .profile import EntropyProfile as EntropyProfile  # noqa: E402
from .sampler import sample as sample  # noqa: E402
from .sampler import verify as verify  # noqa: E402
from .schedules import Schedule as Schedule  # noqa: E402
from .schedules import cosine as cosine  # noqa: E402
from .schedules import dtc_schedule as dtc_schedule  # noqa: E402
from .schedules import tc_schedule as tc_schedule  # noqa: E402
from .schedules import uniform as uniform  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name: str):
    # schedopt.models (flax.nnx) loads on first use, keeping `import schedopt` and the CLI fast.
    if name == "models":
        import importlib

        return importlib.import_module(".models", __name__)
    raise AttributeError(f"module 'schedopt' has no attribute {name!r}")
