"""State-dependent decoding rules (confidence, margin, entropy, thresholds): their exact
teacher-forced NLL, count schedules for them, and comparisons at equal forward passes."""

from ._counts import best_counts as best_counts
from ._counts import optimize_rule_counts as optimize_rule_counts
from ._counts import rule_step_costs as rule_step_costs
from ._equal_passes import ENTROPY_BOUND as ENTROPY_BOUND
from ._equal_passes import PASSES_TOLERANCE as PASSES_TOLERANCE
from ._equal_passes import RANDOM_OPTIMAL as RANDOM_OPTIMAL
from ._equal_passes import THRESHOLD as THRESHOLD
from ._equal_passes import EqualPasses as EqualPasses
from ._equal_passes import equal_passes as equal_passes
from ._equal_passes import match_passes as match_passes
from ._rules import ORDERS as ORDERS
from ._rules import EntropyBoundRule as EntropyBoundRule
from ._rules import OrderRule as OrderRule
from ._rules import PositionStats as PositionStats
from ._rules import Rule as Rule
from ._rules import ThresholdRule as ThresholdRule
from ._rules import choose as choose
from ._rules import follow as follow
from ._rules import logit_statistics as logit_statistics
from ._rules import one_by_one_rule as one_by_one_rule
from ._rules import rule_nll as rule_nll
from ._rules import statistics_read as statistics_read
