"""`schedopt.generate`: the counts it reveals, LLaDA's choices at temperature 0, and its
reported log-probabilities against the frequencies of its own samples (theory §13)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from schedopt import generate
from schedopt.distributions import Table
from schedopt.rules import EntropyBoundRule, OrderRule, ThresholdRule, rule_nll

V, N = 3, 4


def _law(seed=3):
    return Table(np.random.default_rng(seed).dirichlet(np.full(V ** N, 0.4)).reshape((V,) * N))


def _counting(logits_fn, log):
    """logits_fn that records how many answer positions each call sees revealed."""
    def fn(tokens, revealed):
        jax.debug.callback(lambda r: log.append(np.asarray(r).sum(axis=1)), revealed)
        return logits_fn(tokens, revealed)
    return fn


@pytest.mark.parametrize("counts,block", [([1, 2, 1], None), ([2, 2], 2), ([3, 1], None)])
def test_an_order_rule_reveals_exactly_the_schedules_counts(counts, block):
    log = []
    out = generate(_counting(_law().log_conditionals, log), [[]] * 5,
                   OrderRule("confidence", block_length=block), counts)
    seen = np.stack(log)  # [T, B]: revealed before each step
    np.testing.assert_array_equal(seen[:, 0], np.concatenate([[0], np.cumsum(counts)[:-1]]))
    np.testing.assert_array_equal(out.passes, len(counts))
    assert out.tokens.shape == (5, N) and out.tokens.max() < V


def test_log_prob_is_minus_the_teacher_forced_nll_of_the_output():
    """One trajectory per output: decoding and teacher forcing agree sequence by sequence."""
    law = _law()
    for rule, counts in [(OrderRule("margin"), [2, 2]), (ThresholdRule(0.6), None),
                         (EntropyBoundRule(0.4), None), (OrderRule("random"), [1, 3])]:
        out = generate(law.log_conditionals, [[]] * 64, rule, counts, length=N,
                       temperature=1.0, key=jax.random.key(1))
        if rule.name == "random":
            continue  # the order is drawn per row; rule_nll draws its own
        tf = rule_nll(law.log_conditionals, out.tokens, rule, counts, reference=False)
        np.testing.assert_allclose(out.log_prob, -tf.per_sequence, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(out.passes, tf.per_sequence_passes)


def test_sample_frequencies_match_the_reported_probabilities():
    """Monte Carlo: each output's frequency lies within 4.5 binomial sds of exp(log_prob)."""
    law = _law(5)
    draws = 4000
    out = generate(law.log_conditionals, [[]] * draws, OrderRule("confidence"), [2, 2],
                   temperature=1.0, key=jax.random.key(7), batch_size=1000)
    prob = {}
    for row, lp in zip(out.tokens, out.log_prob, strict=True):
        prob.setdefault(tuple(row), math.exp(lp))
    assert sum(prob.values()) <= 1 + 1e-6
    for seq, p in prob.items():
        hits = int(np.all(out.tokens == np.asarray(seq), axis=1).sum())
        assert abs(hits - draws * p) <= 4.5 * math.sqrt(draws * p * (1 - p)) + 1, seq


def _llada_generate(logits_fn, prompt, gen_length, block_length, steps):
    """LLaDA generate.py at temperature 0, remasking="low_confidence", re-implemented from
    ML-GSAI/LLaDA (get_num_transfer_tokens and the block loop); returns (answer, counts)."""
    p = len(prompt)
    x = np.concatenate([prompt, np.full(gen_length, -1)])
    blocks = gen_length // block_length
    per_block = steps // blocks
    counts = []
    for b in range(blocks):
        hi = p + (b + 1) * block_length  # the block's end: later positions wait
        base, extra = divmod(block_length, per_block)  # get_num_transfer_tokens
        for i in range(per_block):
            k = base + (i < extra)
            revealed = x >= 0
            logits = np.asarray(logits_fn(np.maximum(x, 0)[None], revealed[None]))[0]
            prob = np.exp(logits - logits.max(-1, keepdims=True))
            prob /= prob.sum(-1, keepdims=True)
            x0 = logits.argmax(-1)
            conf = np.take_along_axis(prob, x0[:, None], -1)[:, 0]
            conf[hi:] = -np.inf
            conf = np.where(revealed, -np.inf, conf)
            pick = np.argsort(-conf, kind="stable")[:k]
            x[pick] = x0[pick]
            counts.append(k)
    return x[p:], counts


def test_greedy_confidence_decoding_matches_llada_generate():
    law = Table(np.random.default_rng(11).dirichlet(np.full(2 ** 6, 0.5)).reshape((2,) * 6))

    def behind_prompt(tokens, revealed):  # the law's conditionals behind a 2-token prompt
        tail = law.log_conditionals(tokens[:, 2:], revealed[:, 2:])
        return jnp.concatenate([jnp.zeros_like(tail[:, :2]), tail], axis=1)

    for prompt in (np.array([0, 1]), np.array([1, 1])):
        want, counts = _llada_generate(behind_prompt, prompt, 6, 3, 4)
        assert counts == [2, 1, 2, 1]  # LLaDA's split of 3 tokens over 2 steps: 2, then 1
        got = generate(behind_prompt, [prompt], OrderRule("confidence", block_length=3), counts)
        np.testing.assert_array_equal(got.tokens[0], want)


@pytest.mark.parametrize("kwargs,message", [
    ({"rule": OrderRule("confidence"), "counts": None}, "needs a count schedule"),
    ({"rule": ThresholdRule(0.9), "counts": [2, 2]}, "chooses its own counts"),
    ({"rule": ThresholdRule(0.9), "counts": None}, "needs the answer length"),
    ({"rule": OrderRule("confidence"), "counts": [2, 2], "temperature": 1.0}, "PRNG key"),
    ({"rule": OrderRule("random"), "counts": [2, 2]}, "PRNG key"),
    ({"rule": OrderRule("confidence"), "counts": [2, 2], "temperature": -1.0}, "temperature"),
])
def test_bad_arguments_are_refused_in_one_sentence(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(_law().log_conditionals, [[]] * 2, **kwargs)


def test_the_hf_route_draws_what_the_jax_route_draws_greedily():
    pytest.importorskip("torch")
    from test_rules_torch import TableLM

    from schedopt.sources import HFScorer

    law = _law()
    prompts = [np.arange(i % 3) for i in range(6)]  # ragged: padded by the scorer
    scorer = HFScorer(TableLM(law.joint), mask_id=V,
                      batch_size=4, vocab_size=V)
    for rule, counts in [(OrderRule("entropy"), [1, 2, 1]), (ThresholdRule(0.5), None)]:
        a = generate(scorer, prompts, rule, counts, length=N)
        b = generate(law.log_conditionals, [[]] * 6, rule, counts, length=N)
        np.testing.assert_array_equal(a.tokens, b.tokens)
        np.testing.assert_allclose(a.log_prob, b.log_prob, rtol=1e-5)
    sampled = generate(scorer, prompts, OrderRule("margin"), [2, 2], temperature=1.0,
                       key=jax.random.key(0))
    tf = rule_nll(scorer, sampled.tokens, OrderRule("margin"), [2, 2], prompts=prompts,
                  reference=False)
    np.testing.assert_allclose(sampled.log_prob, -tf.per_sequence, rtol=1e-5)


def test_cli_generate_on_a_hf_model_agrees_with_nll_by_teacher_forcing(tmp_path, capsys):
    """`generate` writes answers whose log_prob is minus `nll --per-sequence` on them."""
    pytest.importorskip("transformers")
    import json

    import tiny_hf

    from schedopt.cli import main

    transition = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    model = tiny_hf.save_markov_model(tmp_path / "model", transition)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt_ids": [i % 3] * (1 + i % 2)}) + "\n"
                               for i in range(5)))
    schedule = tmp_path / "s.json"
    schedule.write_text(json.dumps({"format": "schedopt.schedule", "version": 1, "n": 6,
                                    "tokens_per_step": [1, 2, 3]}))
    out = tmp_path / "answers.jsonl"
    common = ["--hf-model", str(model), "--trust-remote-code", "--mask-id", "3"]
    assert main(["generate", *common, "--data", str(prompts), "--schedule", str(schedule),
                 "--unmask-order", "margin", "--temperature", "1", "--seed", "4",
                 "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["answers"] == 5 and summary["forward_passes_mean"] == 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt_ids": r["prompt_ids"],
                                         "answer_ids": r["answer_ids"]}) + "\n" for r in rows))
    csv = tmp_path / "seq.csv"
    assert main(["nll", *common, "--data", str(pairs), "--schedule", str(schedule),
                 "--unmask-order", "margin", "--per-sequence", str(csv), "--json"]) == 0
    nll = np.loadtxt(csv, delimiter=",", skiprows=1, usecols=1)
    np.testing.assert_allclose([-r["log_prob"] for r in rows], nll, rtol=1e-5)


def test_cli_generate_refuses_what_cannot_apply(tmp_path, capsys):
    from schedopt.cli import main

    out = tmp_path / "s.jsonl"
    for argv, message in [
        (["--model", "digits", "--unmask-order", "confidence"], "needs a count schedule"),
        (["--model", "digits"], "say how to unmask"),
        (["--model", "digits", "--data", "x.jsonl", "--threshold", "0.9"], "--data is the"),
        (["--threshold", "0.9"], "say which model decodes"),
    ]:
        assert main(["generate", *argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
        assert not out.exists()
