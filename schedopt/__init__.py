"""schedopt: optimal unmasking schedules for masked diffusion models.

The expected KL of any schedule is the error of a left-endpoint step approximation of the
data's conditional entropy curve (Chen, Cong and Li, COLT 2026); schedopt computes it exactly,
optimizes it with Optax, certifies the optimum with an exact dynamic program, and exports the
result for other samplers.

Importing schedopt changes no global JAX setting: the certificate and every reported KL are
computed in float64 inside a scoped `jax.enable_x64` context (see `schedopt.precision`).
"""

from . import distributions as distributions
from .adaptive_estimate import estimate_within_budget as estimate_within_budget
from .batch import optimize_batch as optimize_batch
from .binomial import TimeGrid as TimeGrid
from .binomial import expected_kl_binomial as expected_kl_binomial
from .binomial import optimize_binomial as optimize_binomial
from .blocks import BlockProfiles as BlockProfiles
from .blocks import block_profiles_from_table as block_profiles_from_table
from .blocks import estimate_block_profiles as estimate_block_profiles
from .blocks import optimize_blocks as optimize_blocks
from .divergence import expected_kl as expected_kl
from .divergence import relaxed_kl as relaxed_kl
from .estimate import estimate_profile as estimate_profile
from .exact import frontier as frontier
from .exact import optimal_schedule as optimal_schedule
from .export import export_schedule as export_schedule
from .export import read_schedule_file as read_schedule_file
from .export import write_export as write_export
from .losscurve import profile_from_loss_curve as profile_from_loss_curve
from .nll import schedule_nll as schedule_nll
from .optimize import optimize as optimize
from .profile import EntropyProfile as EntropyProfile
from .quality import sample_quality as sample_quality
from .robust import optimize_robust as optimize_robust
from .sampler import sample as sample
from .sampler import sample_entropy_bounded as sample_entropy_bounded
from .sampler import verify as verify
from .schedules import Schedule as Schedule
from .schedules import cosine as cosine
from .schedules import dtc_schedule as dtc_schedule
from .schedules import tc_schedule as tc_schedule
from .schedules import uniform as uniform

__version__ = "0.1.0"


def __getattr__(name: str):
    # schedopt.models (flax.nnx) loads on first use, keeping `import schedopt` and the CLI fast.
    if name == "models":
        import importlib

        return importlib.import_module(".models", __name__)
    raise AttributeError(f"module 'schedopt' has no attribute {name!r}")
