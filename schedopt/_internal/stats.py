"""The normal-approximation intervals every Monte Carlo result in schedopt reports."""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054  # the two-sided 95% quantile of the standard normal


def standard_error(values: np.ndarray) -> float:
    """The standard error of the mean of a 1-d sample (sample std with ddof = 1, over sqrt m)."""
    values = np.asarray(values, np.float64)
    return float(values.std(ddof=1) / math.sqrt(values.size))
