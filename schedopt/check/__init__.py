"""Checks beside the flow: sampling and `verify`, held-out T-step NLL, paired differences,
sample quality, and the pictures."""

from ._entropy_bounded import sample_entropy_bounded as sample_entropy_bounded
from ._heldout import llada_stock as llada_stock
from ._heldout import paired_difference as paired_difference
from ._nll import predicted_excess as predicted_excess
from ._nll import schedule_nll as schedule_nll
from ._nll import schedules_nll as schedules_nll
from ._plot import check_png_path as check_png_path
from ._plot import new_figure as new_figure
from ._plot import plot_equal_passes as plot_equal_passes
from ._plot import plot_frontier as plot_frontier
from ._plot import plot_profile as plot_profile
from ._plot import plot_report as plot_report
from ._plot import plot_tokens as plot_tokens
from ._plot import save_png as save_png
from ._quality import sample_quality as sample_quality
from ._sampler import sample as sample
from ._sampler import schedule_log_likelihood as schedule_log_likelihood
from ._verify import HEAVY_TAIL_KURTOSIS as HEAVY_TAIL_KURTOSIS
from ._verify import Verification as Verification
from ._verify import verification_samples as verification_samples
from ._verify import verify as verify
