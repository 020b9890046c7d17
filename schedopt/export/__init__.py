"""Export: schedule files for other samplers, the one reader of schedule-like files
(`read_schedule_file` -> `SamplerSchedule`, with each sampler's object), diffusers schedulers."""

from ._diffusers import amused_scheduler as amused_scheduler
from ._diffusers import block_refinement_scheduler as block_refinement_scheduler
from ._export import check_output_path_extension as check_output_path_extension
from ._export import export_schedule as export_schedule
from ._export import load_schedule as load_schedule
from ._export import score_imported as score_imported
from ._export import write_export as write_export
from ._integrations import SamplerSchedule as SamplerSchedule
from ._integrations import read_schedule_file as read_schedule_file
