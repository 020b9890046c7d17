"""Several processes as one run (JAX's multi-controller runtime): start, share, write once."""

from ._runtime import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from ._runtime import broadcast as broadcast
from ._runtime import exit_on_error as exit_on_error
from ._runtime import initialize as initialize
from ._runtime import is_writer as is_writer
from ._runtime import same_everywhere as same_everywhere
from ._runtime import succeeded as succeeded
from ._runtime import to_host as to_host
