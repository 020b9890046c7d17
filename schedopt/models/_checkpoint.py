"""Checkpoints: weights in safetensors, the model's shape and record in a small JSON file.

A checkpoint is two files side by side: `NAME.json` (format "schedopt.mdm", version 1: the
model config, the dataset it was trained on, its held-out masked CE and training settings) and
`NAME.safetensors` (the weights, float32, named by their path in the model, e.g.
"blocks/0/qkv/kernel"). Pass the JSON path to load it. The digits model shipped with the
package loads with `load_checkpoint("digits")`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._internal import io as _io
from ._transformer import MaskedDiffusionTransformer, MDMConfig

FORMAT = "schedopt.mdm"
VERSION = 1
PRETRAINED = {"digits": Path(__file__).resolve().parent.parent / "data" / "digits_mdm.json"}


def _flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "/"))
        else:
            out[name] = np.asarray(value)
    return out


def _unflatten_into(template: Any, flat: dict[str, np.ndarray], path: str, prefix: str = ""):
    """A copy of the nested dict `template` with its leaves taken from `flat` (shapes checked)."""
    out = {}
    for key, value in template.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out[key] = _unflatten_into(value, flat, path, name + "/")
            continue
        if name not in flat:
            raise ValueError(
                f"checkpoint {path!r} lacks the weight {name!r}; it does not match its config"
            )
        if flat[name].shape != value.shape:
            raise ValueError(
                f"checkpoint {path!r}: weight {name!r} has shape {flat[name].shape} but the "
                f"config needs {value.shape}; the weights do not match the config"
            )
        out[key] = jnp.asarray(flat[name], dtype=value.dtype)
    return out


def save_checkpoint(path: str | os.PathLike, model: MaskedDiffusionTransformer,
                    record: dict[str, Any] | None = None) -> Path:
    """Write `model` as `path` (JSON, must end in .json) plus the .safetensors beside it.

    Args:
        path: the JSON file to write; the weights go to the same name with .safetensors.
        model: the trained model.
        record: extra JSON-able facts to keep (dataset, held-out CE, training settings).

    Returns:
        The JSON path. Both files are written atomically, weights first.
    """
    from safetensors.numpy import save

    path = _io.check_output_path(path)
    if path.suffix != ".json":
        raise ValueError(
            f"checkpoint path {str(path)!r} must end in .json; the weights go beside it"
        )
    weights = path.with_suffix(".safetensors")
    flat = _flatten(nnx.to_pure_dict(nnx.state(model)))
    _io.atomic_write(weights, save({k: np.ascontiguousarray(v) for k, v in flat.items()}))
    _io.write_json(path, {
        **_io.header(FORMAT, VERSION),
        "weights": weights.name,
        "config": model.config.to_json(),
        "record": dict(record or {}),
    })
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[MaskedDiffusionTransformer, dict]:
    """Read a checkpoint written by `save_checkpoint` (or "digits" for the shipped model).

    Returns:
        (model, record): the model, ready for evaluation, and the record saved with it.

    Raises:
        ValueError: the file is missing, not a schedopt.mdm checkpoint, or its weights are
            unreadable or do not match its config.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = PRETRAINED.get(str(path), Path(path))
    obj = _io.check_format(_io.read_json(path, "model checkpoint"), path, FORMAT, VERSION)
    _io.require_keys(obj, path, ("weights", "config"))
    try:
        config = MDMConfig.from_json(obj["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint {str(path)!r} has a bad config: {e}") from None
    weights = path.parent / str(obj["weights"])
    if not weights.is_file():
        raise ValueError(
            f"checkpoint {str(path)!r} names weights {weights.name!r}, which do not exist; "
            "keep the .safetensors file beside the .json"
        )
    try:
        flat = load(weights.read_bytes())
    except (SafetensorError, ValueError, OSError) as e:
        raise ValueError(
            f"cannot read the weights {str(weights)!r} ({e}); the file is damaged: "
            "retrain or copy it again"
        ) from None
    abstract = nnx.eval_shape(lambda: MaskedDiffusionTransformer(config, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    pure = _unflatten_into(nnx.to_pure_dict(state), flat, str(path))
    nnx.replace_by_pure_dict(state, pure)
    model = nnx.merge(graphdef, state)
    if not all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(nnx.state(model))):
        raise ValueError(f"checkpoint {str(path)!r} holds non-finite weights; retrain the model")
    return model, dict(obj.get("record") or {})
