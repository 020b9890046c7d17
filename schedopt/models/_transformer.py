"""A small bidirectional transformer masked diffusion model (MDM) in flax.nnx.

The model reads a sequence in which masked positions hold the mask id (= vocab_size) and
returns logits over the vocab_size real tokens at every position. It has no time input: like
MD4 and LLaDA, the mask pattern itself says how much is revealed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

LogitsFn = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class MDMConfig:
    """Shape of a `MaskedDiffusionTransformer`.

    Attributes:
        vocab_size: number of real token values V; the mask id is V.
        length: sequence length n (positions have learned embeddings).
        width: model width (embedding size).
        depth: number of transformer blocks.
        heads: attention heads (width must be divisible by heads).
        mlp_ratio: hidden size of each block's MLP, as a multiple of width.
        dropout: dropout rate during training (residual branches and embeddings).
    """

    vocab_size: int
    length: int
    width: int = 128
    depth: int = 3
    heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.1

    def __post_init__(self):
        for name in ("vocab_size", "length", "width", "depth", "heads", "mlp_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MDMConfig.{name} must be a positive integer, got {value!r}")
        if self.width % self.heads:
            raise ValueError(
                f"MDMConfig.width = {self.width} is not divisible by heads = {self.heads}; "
                "pick a width that is a multiple of the number of heads"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"MDMConfig.dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def mask_id(self) -> int:
        """The token id of a masked position."""
        return self.vocab_size

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: Any) -> MDMConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(obj, dict) or not {"vocab_size", "length"} <= obj.keys():
            raise ValueError("the model config must be a dict with vocab_size and length")
        unknown = sorted(set(obj) - fields)
        if unknown:
            raise ValueError(f"the model config has unknown keys {unknown}; remove them")
        return cls(**obj)


def _dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout with an explicit key (None: no dropout, as at evaluation)."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


class _Block(nnx.Module):
    """Pre-LayerNorm transformer block with full (bidirectional) self-attention."""

    def __init__(self, config: MDMConfig, *, rngs: nnx.Rngs):
        w = config.width
        self.heads = config.heads
        self.dropout = config.dropout
        self.norm1 = nnx.LayerNorm(w, rngs=rngs)
        self.qkv = nnx.Linear(w, 3 * w, rngs=rngs)
        self.proj = nnx.Linear(w, w, rngs=rngs)
        self.norm2 = nnx.LayerNorm(w, rngs=rngs)
        self.up = nnx.Linear(w, config.mlp_ratio * w, rngs=rngs)
        self.down = nnx.Linear(config.mlp_ratio * w, w, rngs=rngs)

    def __call__(self, x: jax.Array, key: jax.Array | None, batch: int) -> jax.Array:
        """x: float32[B * n, width], the tokens of B sequences, flattened.

        Dense layers act on the flattened 2-D array: on CPU their gradients are several times
        faster than on [B, n, width].
        """
        tokens, w = x.shape
        n, h = tokens // batch, self.heads
        k1, k2 = (None, None) if key is None else jax.random.split(key)
        q, k, v = (t.reshape(batch, n, h, w // h)
                   for t in jnp.split(self.qkv(self.norm1(x)), 3, axis=-1))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.float32(w // h))
        attended = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v)
        x = x + _dropout(self.proj(attended.reshape(tokens, w)), self.dropout, k1)
        hidden = jax.nn.gelu(self.up(self.norm2(x)))
        return x + _dropout(self.down(hidden), self.dropout, k2)


class MaskedDiffusionTransformer(nnx.Module):
    """Bidirectional transformer denoiser: int[B, n] ids with masks -> float32[B, n, V] logits.

    Args:
        config: the model's shape.
        rngs: initialisation randomness (nnx.Rngs(seed)). `init_model(config, seed)` is the
            fast way to build one (no per-op compilation on CPU).
    """

    def __init__(self, config: MDMConfig, *, rngs: nnx.Rngs):
        self.config = config
        init = nnx.initializers.normal(0.02)
        self.embed = nnx.Embed(config.vocab_size + 1, config.width, embedding_init=init,
                               rngs=rngs)
        self.position = nnx.Param(init(rngs.params(), (config.length, config.width), jnp.float32))
        self.blocks = nnx.List([_Block(config, rngs=rngs) for _ in range(config.depth)])
        self.norm = nnx.LayerNorm(config.width, rngs=rngs)
        self.head = nnx.Linear(config.width, config.vocab_size, rngs=rngs)

    def __call__(self, inputs: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
        """Logits for every position.

        Args:
            inputs: int[B, n] token ids in 0..V, where V (= config.mask_id) marks a mask.
            dropout_key: a PRNG key to train with dropout; None (the default) evaluates.

        Returns:
            float32[B, n, V] logits over the real tokens.
        """
        keys = [None] * (self.config.depth + 1)
        if dropout_key is not None:
            keys = list(jax.random.split(dropout_key, self.config.depth + 1))
        batch, n = inputs.shape
        x = (self.embed(inputs) + self.position[...]).reshape(batch * n, self.config.width)
        x = _dropout(x, self.config.dropout, keys[0])
        for block, key in zip(self.blocks, keys[1:], strict=True):
            x = block(x, key, batch)
        logits = self.head(self.norm(x)).astype(jnp.float32)
        return logits.reshape(batch, n, self.config.vocab_size)


def init_model(config: MDMConfig, seed: int = 0) -> MaskedDiffusionTransformer:
    """A freshly initialised model, deterministic given `seed`.

    Weights are drawn with NumPy (no XLA compilation, which costs seconds on a CPU):
    embeddings N(0, 0.02^2), dense kernels N(0, 1/fan_in) (LeCun), biases 0, norm scales 1.
    """
    abstract = nnx.eval_shape(lambda: MaskedDiffusionTransformer(config, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = str(getattr(path[-1], "key", path[-1]))
        if name == "bias":
            value = np.zeros(leaf.shape)
        elif name == "scale":
            value = np.ones(leaf.shape)
        elif name == "kernel":
            value = rng.normal(0.0, 1.0 / np.sqrt(leaf.shape[0]), leaf.shape)
        else:  # token and position embeddings
            value = rng.normal(0.0, 0.02, leaf.shape)
        return jnp.asarray(value, leaf.dtype)

    pure = jax.tree_util.tree_map_with_path(draw, nnx.to_pure_dict(state))
    nnx.replace_by_pure_dict(state, pure)
    return nnx.merge(graphdef, state)


def masked_inputs(tokens: jax.Array, revealed: jax.Array, mask_id: int) -> jax.Array:
    """Model inputs: the token where revealed, the mask id elsewhere."""
    return jnp.where(revealed, tokens, mask_id).astype(jnp.int32)


@jax.jit
def _apply(graphdef, state, tokens, revealed):
    model = nnx.merge(graphdef, state)
    return model(masked_inputs(tokens, revealed, model.config.mask_id))


def logits_fn(model: MaskedDiffusionTransformer) -> LogitsFn:
    """The model as an estimator's `logits_fn(tokens[B, n], revealed[B, n]) -> logits[B, n, V]`.

    Masked positions of `tokens` may hold anything: they are replaced by the mask id. Called
    directly, the weights are arguments of one jitted function (each input shape compiles
    once); traced inside another jitted function (the estimator and the sampler take it as a
    static argument) they become constants of that program, which suits small models. The
    attributes `vocab_size` and `length` let callers check data before running the model.
    """
    graphdef, state = nnx.split(model)

    def fn(tokens: jax.Array, revealed: jax.Array) -> jax.Array:
        return _apply(graphdef, state, tokens, revealed)

    fn.vocab_size = model.config.vocab_size  # type: ignore[attr-defined]
    fn.length = model.config.length  # type: ignore[attr-defined]
    return fn
