"""Entropy curves: `EntropyProfile`, per-block curves, and curves read from training loss logs."""

from ._blocks import BLOCK_PROFILES_FORMAT as BLOCK_PROFILES_FORMAT
from ._blocks import BlockProfiles as BlockProfiles
from ._blocks import block_profiles_from_table as block_profiles_from_table
from ._blocks import check_block_length as check_block_length
from ._blocks import load_block_profiles as load_block_profiles
from ._blocks import steps_per_block as steps_per_block
from ._losscurve import convex_nonincreasing as convex_nonincreasing
from ._losscurve import loss_by_revealed_count as loss_by_revealed_count
from ._losscurve import profile_from_loss_curve as profile_from_loss_curve
from ._losscurve import profile_from_loss_curve_file as profile_from_loss_curve_file
from ._losscurve import read_loss_curve as read_loss_curve
from ._losscurve import write_binned_loss_curve as write_binned_loss_curve
from ._losscurve import write_loss_curve as write_loss_curve
from ._profile import EntropyProfile as EntropyProfile
from ._profile import isotonic_nonincreasing as isotonic_nonincreasing
