"""The PyTorch adapter: a torch denoiser as a schedopt logits_fn (extra [torch])."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import schedopt
from schedopt.check import schedule_nll
from schedopt.sources import torch_logits_fn

torch = pytest.importorskip("torch")

V, N, MASK = 5, 8, 5


class TinyDenoiser(torch.nn.Module):
    """Embedding, one self-attention layer and a head: ids [B, n] (mask id V) -> [B, n, V]."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(V + 1, 16)
        self.position = torch.nn.Parameter(0.1 * torch.randn(N, 16))
        self.attention = torch.nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = torch.nn.Linear(16, V)

    def forward(self, ids):
        x = self.embed(ids) + self.position
        return self.head(x + self.attention(x, x, x, need_weights=False)[0])


class ProductLaw(torch.nn.Module):
    """Ignores its input: fixed per-position log-probabilities, the conditionals of a product
    law, returned as a Hugging Face-style output with a `.logits` attribute."""

    def __init__(self, log_probs):
        super().__init__()
        self.log_probs = torch.as_tensor(log_probs, dtype=torch.float32)

    def forward(self, ids):
        class Output:
            logits = self.log_probs.expand(ids.shape[0], -1, -1)

        return Output()


def test_adapter_equals_the_module_on_masked_ids():
    module = TinyDenoiser().eval()
    fn = torch_logits_fn(module, mask_id=MASK, batch_size=3)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, V, (7, N))
    revealed = rng.random((7, N)) < 0.5
    with torch.no_grad():
        direct = module(torch.as_tensor(np.where(revealed, tokens, MASK))).numpy()
    got = np.asarray(jax.jit(fn)(jnp.asarray(tokens), jnp.asarray(revealed)))
    np.testing.assert_allclose(got, direct, atol=1e-6)


def test_product_law_through_the_adapter_gives_its_exact_numbers():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(V), size=N)
    fn = torch_logits_fn(ProductLaw(np.log(probs)), mask_id=MASK)
    x = np.stack([[rng.choice(V, p=p) for p in probs] for _ in range(300)])
    # The one-by-one NLL of x is -sum_i log p_i(x_i) exactly; a product law has no
    # correlations, so every schedule's excess is exactly 0 (per sequence, not just on average).
    r = schedule_nll(fn, x, [3, 5], key=jax.random.key(0))
    exact = -np.log(probs[np.arange(N), x]).sum(axis=1).mean()
    assert r.one_by_one == pytest.approx(exact, rel=1e-5)
    assert abs(r.excess) < 1e-4
    # Both curves' H_n estimate the law's entropy sum_i H(p_i) (the data curve through the
    # sample's cross-entropy): within 3 standard errors (99.7%).
    entropy = -(probs * np.log(probs)).sum()
    for kind in ("model", "data"):
        profile = schedopt.estimate_profile(fn, x, key=jax.random.key(1), kind=kind)
        assert abs(profile.joint_entropy - entropy) <= 3 * profile.meta["joint_entropy_stderr"]


def test_tuple_output_and_vocab_slice():
    class WithExtras(torch.nn.Module):
        def forward(self, ids):  # 2 extra special-token logits, returned in a tuple
            return (torch.zeros(*ids.shape, V + 2),)

    fn = torch_logits_fn(WithExtras(), mask_id=MASK, vocab_size=V)
    out = fn(jnp.zeros((2, N), jnp.int32), jnp.zeros((2, N), bool))
    assert out.shape == (2, N, V)


@pytest.mark.parametrize(
    "module, kwargs, match",
    [
        (lambda ids: torch.zeros(ids.shape), {}, "shape"),
        (lambda ids: torch.zeros(*ids.shape, 3), {"vocab_size": 4}, "vocab_size"),
        ("not a module", {}, "callable"),
        (lambda ids: ids, {"mask_id": -1}, "mask_id"),
    ],
)
def test_bad_module_is_one_value_error(module, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn = torch_logits_fn(module, **{"mask_id": MASK, **kwargs})
        fn(jnp.zeros((2, N), jnp.int32), jnp.zeros((2, N), bool))


def test_missing_torch_is_a_clear_import_error(monkeypatch):
    module = TinyDenoiser()
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install 'schedopt\[torch\]'"):
        torch_logits_fn(module, mask_id=MASK)
