"""Estimating curves: Rao-Blackwellised Monte Carlo from a model or a known law, within a
budget of forward passes, per block, with checkpoints to resume."""

from ._blocks import estimate_block_profiles as estimate_block_profiles
from ._budget import DECAY_RATES as DECAY_RATES
from ._budget import estimate_within_budget as estimate_within_budget
from ._budget import smooth_decreasing_fit as smooth_decreasing_fit
from ._law import estimate_law as estimate_law
from ._monte_carlo import FULL_GRID_MAX as FULL_GRID_MAX
from ._monte_carlo import CurveEstimate as CurveEstimate
from ._monte_carlo import batch_sharding as batch_sharding
from ._monte_carlo import default_grid as default_grid
from ._monte_carlo import estimate_curves as estimate_curves
from ._monte_carlo import estimate_profile as estimate_profile
from ._monte_carlo import interpolation_matrix as interpolation_matrix
from ._monte_carlo import masked_means as masked_means
from ._monte_carlo import random_orders as random_orders
from ._monte_carlo import revealed_grid as revealed_grid
from ._monte_carlo import schedule_grid as schedule_grid
from ._resume import Checkpoint as Checkpoint
