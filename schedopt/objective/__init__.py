"""The exact expected KL of a schedule (theory §3), its relaxation, and the random-count and
block forms (§6, §7)."""

from ._binomial import expected_kl_binomial as expected_kl_binomial
from ._binomial import expected_kl_binomial_traced as expected_kl_binomial_traced
from ._binomial import mean_conditional_entropy as mean_conditional_entropy
from ._blocks import block_expected_kl as block_expected_kl
from ._divergence import block_cost as block_cost
from ._divergence import evaluate_kl as evaluate_kl
from ._divergence import expected_kl as expected_kl
from ._divergence import flat_tolerance as flat_tolerance
from ._divergence import kl_of_tokens as kl_of_tokens
from ._divergence import relaxed_kl as relaxed_kl
from ._divergence import relaxed_kl_of_cuts as relaxed_kl_of_cuts
