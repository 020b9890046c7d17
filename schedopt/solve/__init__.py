"""Solvers: Optax on the relaxed KL, the exact DP and frontier, batches, robust and raw-curve
optima, random-count grids, block splits, and comparisons at a budget."""

from ._batch import AUTO_EXACT_GRID as AUTO_EXACT_GRID
from ._batch import optimize_batch as optimize_batch
from ._binomial import optimize_binomial as optimize_binomial
from ._blocks import allocate_steps as allocate_steps
from ._blocks import block_frontiers as block_frontiers
from ._blocks import optimize_blocks as optimize_blocks
from ._compare import LABELS as LABELS
from ._compare import METHODS as METHODS
from ._compare import WITHIN_BUDGET as WITHIN_BUDGET
from ._compare import budget_table as budget_table
from ._compare import fewest_steps as fewest_steps
from ._compare import fewest_steps_optimal as fewest_steps_optimal
from ._compare import schedules_at_budget as schedules_at_budget
from ._exact import fast_frontier as fast_frontier
from ._exact import fewest_optimal_steps as fewest_optimal_steps
from ._exact import frontier as frontier
from ._exact import full_grid as full_grid
from ._exact import grid_frontier as grid_frontier
from ._exact import make_grid as make_grid
from ._exact import optimal_schedule as optimal_schedule
from ._exact import optimal_tokens as optimal_tokens
from ._jys import jys_grid as jys_grid
from ._relaxed import bucket as bucket
from ._relaxed import optimize as optimize
from ._relaxed import within_tolerance as within_tolerance
from ._robust import optimize_robust as optimize_robust
from ._unregularized import optimal_schedule_unregularized as optimal_schedule_unregularized
from ._unregularized import optimize_blocks_unregularized as optimize_blocks_unregularized
from ._unregularized import unregularized_frontier as unregularized_frontier
