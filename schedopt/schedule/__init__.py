"""Schedules: the fixed-count `Schedule`, the random-count `TimeGrid`, the literature's
baselines, and the time-grid conventions (MD4, log-linear)."""

from ._conventions import CONVENTIONS as CONVENTIONS
from ._conventions import MD4_EPS as MD4_EPS
from ._conventions import alpha_from_counts as alpha_from_counts
from ._conventions import alpha_to_timesteps as alpha_to_timesteps
from ._conventions import check_convention as check_convention
from ._conventions import check_eps as check_eps
from ._conventions import parse_alpha_schedule as parse_alpha_schedule
from ._conventions import realised_grid as realised_grid
from ._conventions import timesteps_to_alpha as timesteps_to_alpha
from ._schedules import RAW_CURVE as RAW_CURVE
from ._schedules import SCHEDULE_FORMAT as SCHEDULE_FORMAT
from ._schedules import Schedule as Schedule
from ._schedules import correlation_schedule_within as correlation_schedule_within
from ._schedules import correlation_tokens_within as correlation_tokens_within
from ._schedules import cosine as cosine
from ._schedules import cosine_tokens as cosine_tokens
from ._schedules import dtc_schedule as dtc_schedule
from ._schedules import eds as eds
from ._schedules import eds_tokens as eds_tokens
from ._schedules import pyramid as pyramid
from ._schedules import pyramid_tokens as pyramid_tokens
from ._schedules import tc_schedule as tc_schedule
from ._schedules import uniform as uniform
from ._schedules import uniform_tokens as uniform_tokens
from ._time_grid import TIME_GRID_FORMAT as TIME_GRID_FORMAT
from ._time_grid import TimeGrid as TimeGrid
