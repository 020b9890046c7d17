"""A random-count sampler's grid of revealed fractions (`TimeGrid`): the type and its file.

docs/theory.md §6; its expected KL is `schedopt.objective.expected_kl_binomial`.
"""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct

from .._internal import io as _io
from .._internal.checks import LARGEST_WHOLE, check_alpha, expected_kl_field, shown, whole_number
from ..curve import EntropyProfile
from ..objective import expected_kl_binomial
from ._conventions import MD4_EPS, alpha_to_timesteps

TIME_GRID_FORMAT = "schedopt.time_grid"


VERSION = 1


@struct.dataclass
class TimeGrid:
    """A random-count sampler's grid of revealed fractions, with its expected KL.

    Attributes:
        alpha: float64[T + 1], alpha_0 = 0 < alpha_1 < ... < alpha_T = 1: the probability that
            a token is revealed by the end of step k (the expected revealed fraction).
        expected_kl: the exact expected KL (nats) of the random-count sampler on this grid.
        method: how it was made ("binomial-optax", "cosine", "custom", ...).
        meta: free-form metadata kept in the file (holds "n").
    """

    alpha: jnp.ndarray
    expected_kl: jnp.ndarray
    method: str = struct.field(pytree_node=False, default="custom")
    meta: dict = struct.field(pytree_node=False, default_factory=dict)

    @property
    def steps(self) -> int:
        """Number of steps T."""
        return int(np.asarray(self.alpha).shape[-1]) - 1

    @classmethod
    def from_alpha(cls, profile: EntropyProfile, alpha: Any, method: str = "custom") -> TimeGrid:
        """A grid for `profile` from its revealed fractions, with the exact expected KL."""
        alpha = check_alpha(alpha)
        if alpha.ndim != 1:
            raise ValueError(f"alpha must be 1-D for one grid, got shape {alpha.shape}")
        kl = expected_kl_binomial(profile, alpha)
        return cls(alpha=np.asarray(alpha, np.float64), expected_kl=kl, method=method,
                   meta={"n": profile.n})

    def timesteps(
        self, alpha_schedule: str = "linear", eps: float = MD4_EPS, convention: str = "md4"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sampler times t_0 = 1 > ... > t_T = 0 and dt_k = t_{k-1} - t_k for this grid.

        See `schedopt.schedule` for the conventions (MD4, MDLM/SEDD).
        """
        return alpha_to_timesteps(np.asarray(self.alpha), alpha_schedule, eps, convention)

    def to_json(self) -> dict:
        """The grid as a `schedopt.time_grid` version 1 dict."""
        return {
            **_io.header(TIME_GRID_FORMAT, VERSION),
            "n": int(self.meta.get("n", 0)),
            "steps": self.steps,
            "alpha": [float(a) for a in np.asarray(self.alpha)],
            "expected_kl": float(self.expected_kl),
            "unit": "nats",
            "sampler": "binomial",
            "method": self.method,
            "meta": dict(self.meta),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the grid atomically as JSON."""
        _io.write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike, profile: EntropyProfile | None = None) -> TimeGrid:
        """Read a `schedopt.time_grid` file; with `profile`, re-evaluate its KL under it."""
        obj = _io.check_format(_io.read_json(path, "time grid"), path, TIME_GRID_FORMAT, VERSION)
        _io.check_fields(obj, path, _io.TIME_GRID_FIELDS, "schedopt.time_grid file")
        _io.require_keys(obj, path, ("n", "alpha"))
        where = repr(str(path))
        try:
            # A grid's n goes on to samplers as is: no longer than floats count exactly.
            n = whole_number(obj["n"], "n", minimum=1, maximum=LARGEST_WHOLE, unit="tokens")
            alpha = check_alpha(_io.number_array(obj["alpha"], "alpha"))
            if "steps" in obj and whole_number(obj["steps"], "steps", minimum=1) != alpha.size - 1:
                raise ValueError(
                    f"steps is {obj['steps']} but alpha has {alpha.size} entries "
                    f"({alpha.size - 1} steps); fix or drop the steps field"
                )
            stored = expected_kl_field(obj.get("expected_kl"), "expected_kl")
            if obj.get("unit", "nats") != "nats":
                raise ValueError(f"unit is {shown(obj['unit'])}; time-grid KLs are in \"nats\"")
            if obj.get("sampler", "binomial") != "binomial":
                raise ValueError(f"sampler is {shown(obj['sampler'])}; a time grid is run with "
                                 "random counts: \"binomial\" or drop the field")
            if not isinstance(obj.get("method", ""), str):
                raise ValueError(f"method is {shown(obj['method'])}; give a name in quotes")
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where}: {e}") from None
        meta = _io.meta_field(obj, path)
        meta["n"] = n
        if profile is not None:
            if n != profile.n:
                raise ValueError(
                    f"time grid {where} is for n = {n} tokens but the profile has "
                    f"n = {profile.n}; use a grid made for this profile's sequence length"
                )
            kl = expected_kl_binomial(profile, alpha)
        else:
            kl = stored
        return cls(
            alpha=np.asarray(alpha, np.float64),
            expected_kl=np.float64(kl),
            method=str(obj.get("method", "custom")),
            meta=meta,
        )
