"""Token datasets that need no download, with fixed train / valid / test splits.

- `digits`: scikit-learn's bundled 8x8 handwritten digits: 1797 images, 64 tokens, 17 grey
  levels (0..16). A fixed permutation (seed 0) puts 1300 images in train, 200 in valid (for
  early stopping) and 297 in test (the held-out split curves and NLLs are measured on).
- `text`: characters of a fixed list of the Python standard library's own source files, cut into
  non-overlapping chunks of `length` characters over a 96-symbol vocabulary (newline and the 95
  printable ASCII characters). Train, valid and test come from different files, so held-out
  text is really unseen. The text depends on the Python version, which is kept in `meta`.
- `hmm`: samples of a fixed sticky `HiddenMarkov` (4 hidden states, 8 symbols), whose exact
  curve is known, so a learned curve can be checked against it. Any amount of training data.

Every split is an int32[M, n] array of token ids in 0..vocab_size-1.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .._internal.checks import check_count

DATASETS = ("digits", "text", "hmm")

# Text vocabulary: id 0 is newline, ids 1..95 are the printable ASCII characters ' '..'~'.
TEXT_VOCABULARY = "\n" + "".join(chr(c) for c in range(32, 127))
_TEXT_FILES = {
    "train": (
        "argparse", "calendar", "configparser", "dataclasses", "difflib", "enum", "fractions",
        "inspect", "ipaddress", "pprint", "random", "shlex", "statistics", "textwrap",
        "tokenize",
    ),
    "valid": ("csv", "heapq"),
    "test": ("fnmatch", "gettext", "glob", "string"),
}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Token sequences in three fixed splits.

    Attributes:
        name: "digits", "text" or "hmm".
        vocab_size: number of token values V (ids 0..V-1; a model's mask id is V).
        train, valid, test: int32[M, n] sequences; valid drives early stopping, test is the
            held-out split every curve and NLL is reported on.
        meta: how the data was made (sources, seeds, Python version).
    """

    name: str
    vocab_size: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def length(self) -> int:
        """Sequence length n (tokens)."""
        return int(self.train.shape[1])

    def split(self, name: str) -> np.ndarray:
        """One split by name: "train", "valid" or "test"."""
        if name not in ("train", "valid", "test"):
            raise ValueError(f"split must be 'train', 'valid' or 'test', got {name!r}")
        return getattr(self, name)


def load_dataset(name: str, **kwargs: Any) -> Dataset:
    """A dataset by name ("digits", "text" or "hmm"); keyword arguments go to its loader."""
    loaders = {"digits": digits, "text": text, "hmm": hmm}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return loaders[name](**kwargs)


def digits() -> Dataset:
    """scikit-learn's 8x8 digits as 64 tokens with 17 grey levels, split 1300 / 200 / 297."""
    from sklearn.datasets import load_digits

    images = load_digits().data.astype(np.int32)  # [1797, 64], values 0..16
    order = np.random.default_rng(0).permutation(images.shape[0])
    train, valid, test = np.split(images[order], [1300, 1500])
    meta = {"source": "sklearn.datasets.load_digits", "split_seed": 0}
    return Dataset("digits", 17, train, valid, test, meta)


def text(length: int = 64) -> Dataset:
    """Character chunks of Python standard-library source files (see the module docstring).

    Args:
        length: characters per sequence (n).
    """
    length = check_count(length, "length")
    splits = {}
    for split, modules in _TEXT_FILES.items():
        ids = np.concatenate([encode_text(_read_module_source(m)) for m in modules])
        count = ids.size // length
        splits[split] = ids[: count * length].reshape(count, length)
    meta = {
        "source": "Python standard library source files",
        "python": ".".join(map(str, sys.version_info[:3])),
        "files": {k: list(v) for k, v in _TEXT_FILES.items()},
    }
    return Dataset("text", len(TEXT_VOCABULARY), splits["train"], splits["valid"],
                   splits["test"], meta)


def encode_text(source: str) -> np.ndarray:
    """int32 token ids of `source`: tabs become 4 spaces, other unknown characters '?'."""
    source = source.replace("\t", "    ").replace("\r", "")
    codes = np.frombuffer(source.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    ids = np.where(codes == 10, 0, codes - 31)
    unknown = (ids < 0) | (ids >= len(TEXT_VOCABULARY))
    return np.where(unknown, TEXT_VOCABULARY.index("?"), ids).astype(np.int32)


def decode_text(ids: np.ndarray) -> str:
    """The inverse of `encode_text` on one sequence of ids."""
    return "".join(TEXT_VOCABULARY[int(i)] for i in np.asarray(ids).ravel())


def _read_module_source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ValueError(
            f"the standard-library module {module!r} has no Python source file here; "
            "use a Python installation that ships its .py files"
        )
    return Path(spec.origin).read_text(encoding="utf-8", errors="replace")


def default_hmm(length: int = 64):
    """The `hmm` dataset's law: 4 sticky hidden states (stay 0.9), 8 symbols.

    Each hidden state emits its own pair of symbols with probability 0.4 each and the other six
    with 0.2 / 6, so a token says a lot, but not everything, about its neighbours.
    """
    from ..distributions import HiddenMarkov

    states, symbols = 4, 8
    transition = np.full((states, states), 0.1 / (states - 1)) + np.eye(states) * (
        0.9 - 0.1 / (states - 1)
    )
    emission = np.full((states, symbols), 0.2 / (symbols - 2))
    for s in range(states):
        emission[s, 2 * s : 2 * s + 2] = 0.4
    return HiddenMarkov(transition, emission, check_count(length, "length"))


def hmm(length: int = 64, train: int = 50_000, valid: int = 1_000, test: int = 1_000,
        seed: int = 0) -> Dataset:
    """Samples of `default_hmm(length)`: independent draws for each split.

    Args:
        length: tokens per sequence (n).
        train, valid, test: number of sequences in each split.
        seed: JAX PRNG seed; split k uses fold_in(key, k).
    """
    import jax

    law = default_hmm(length)
    key = jax.random.key(int(seed))
    sizes = {"train": train, "valid": valid, "test": test}
    splits = {
        name: np.asarray(law.sample(check_count(m, name), key=jax.random.fold_in(key, k)),
                         dtype=np.int32)
        for k, (name, m) in enumerate(sizes.items())
    }
    meta = {"source": "schedopt.sources.default_hmm", "seed": seed}
    return Dataset("hmm", 8, splits["train"], splits["valid"], splits["test"], meta)


def check_sequences(data: Any, *, length: int | None, vocab_size: int,
                    what: str = "data") -> np.ndarray:
    """Validate token sequences and return them as int32[M, n].

    Args:
        data: integer array-like [M, n].
        length: the n a model expects (None: any).
        vocab_size: tokens must lie in 0..vocab_size-1.
        what: the argument's name, for messages.

    Raises:
        ValueError: empty data, wrong rank or length, non-integers, tokens outside the vocabulary.
    """
    x = np.asarray(data)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"{what} must be a non-empty 2-D array of token ids [sequences, length], "
            f"got shape {x.shape}; pass at least one sequence"
        )
    if length is not None and x.shape[1] != length:
        raise ValueError(
            f"{what} has sequences of length {x.shape[1]} but the model takes {length} tokens; "
            "use data of the model's sequence length"
        )
    if not np.issubdtype(x.dtype, np.integer):
        if not (np.issubdtype(x.dtype, np.number) and np.all(x == np.round(x))):
            raise ValueError(f"{what} must hold integer token ids, got dtype {x.dtype}")
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"{what} holds token id {bad}, outside the vocabulary 0..{vocab_size - 1}; "
            "encode the data with the model's vocabulary"
        )
    return x.astype(np.int32)
