"""The same rules through a torch model behind HFScorer agree with the JAX route (theory §13)."""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from schedopt.distributions import Table  # noqa: E402
from schedopt.rules import EntropyBoundRule, OrderRule, ThresholdRule, rule_nll  # noqa: E402
from schedopt.sources import HFScorer  # noqa: E402


class TableLM(torch.nn.Module):
    """A table law's exact conditionals as a masked LM: ids [B, P + n], mask id V, prompt
    ignored."""

    def __init__(self, joint):
        super().__init__()
        v, n = joint.shape[0], joint.ndim
        self.v, self.n = v, n
        seqs = np.asarray(list(itertools.product(range(v), repeat=n)))
        self.register_buffer("seqs", torch.from_numpy(seqs))
        self.register_buffer("p", torch.from_numpy(joint.reshape(-1)))
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids):
        if input_ids.shape[1] < self.n:  # HFScorer's shape probe
            return torch.zeros(*input_ids.shape, self.v, dtype=torch.float64)
        answer = input_ids[:, -self.n:]
        ok = (answer[:, None, :] == self.seqs[None]) | (answer[:, None, :] == self.v)
        w = ok.all(-1).double() * self.p[None]  # [B, S]
        onehot = torch.nn.functional.one_hot(self.seqs, self.v).double()  # [S, n, V]
        cond = torch.einsum("bs,snv->bnv", w, onehot) / w.sum(-1)[:, None, None]
        logits = torch.log(cond)
        pad = torch.zeros(input_ids.shape[0], input_ids.shape[1] - self.n, self.v,
                          dtype=logits.dtype)
        return torch.cat([pad, logits], dim=1)


@pytest.mark.parametrize("rule,counts", [  # every ranking: the scorer reduces only what it reads
    (OrderRule("confidence"), [1, 2, 1]),
    (OrderRule("left-to-right"), [3, 1]),
    (OrderRule("margin"), [2, 2]),
    (OrderRule("entropy", block_length=2), [1, 1, 1, 1]),
    (ThresholdRule(0.7), None),
    (EntropyBoundRule(0.5), None),
])
def test_torch_and_jax_routes_agree(rule, counts):
    v, n = 3, 4
    joint = np.random.default_rng(3).dirichlet(np.full(v ** n, 0.4)).reshape((v,) * n)
    seqs = np.asarray(list(itertools.product(range(v), repeat=n)), np.int32)[::2]
    prompts = [np.arange(i % 3, dtype=np.int32) for i in range(len(seqs))]  # ragged, ignored
    scorer = HFScorer(TableLM(joint), mask_id=v, batch_size=16, vocab_size=v)
    torch_r = rule_nll(scorer, seqs, rule, counts, prompts=prompts, batch_size=16)
    jax_r = rule_nll(Table(joint).log_conditionals, seqs, rule, counts, batch_size=64)
    np.testing.assert_allclose(torch_r.per_sequence, jax_r.per_sequence, rtol=1e-5)
    np.testing.assert_array_equal(torch_r.per_sequence_passes, jax_r.per_sequence_passes)
    one_by_one = counts is not None and len(counts) == n  # then the rule is its own reference
    reference_passes = 0 if one_by_one else len(seqs) * n
    assert scorer.forward_passes == int(torch_r.per_sequence_passes.sum()) + reference_passes
