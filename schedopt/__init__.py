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

from .divergence import expected_kl as expected_kl  # noqa: E402
from .divergence import relaxed_kl as relaxed_kl  # noqa: E402
from .profile import EntropyProfile as EntropyProfile  # noqa: E402
from .schedules import Schedule as Schedule  # noqa: E402
from .schedules import cosine as cosine  # noqa: E402
from .schedules import dtc_schedule as dtc_schedule  # noqa: E402
from .schedules import tc_schedule as tc_schedule  # noqa: E402
from .schedules import uniform as uniform  # noqa: E402

__version__ = "0.1.0"
