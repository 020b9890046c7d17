"""Hugging Face models on prompt/answer pairs, offline: tiny models built from a config.

Independent routes: a `trust_remote_code` model directory whose logits are the exact
conditionals of a stationary Markov chain, so the prompt-conditioned curve is computed here by
enumerating the joint table of (last prompt token, answer); a BERT-style masked LM scored both
by `HFScorer` (statistics reduced in torch) and by the existing full-logits route
(`torch_logits_fn` + JAX kernels); padded batches against one-row batches.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import jax
import numpy as np
import pytest

pytest.importorskip("transformers")

import tiny_hf  # noqa: E402

from schedopt.cli import main  # noqa: E402
from schedopt.estimate import estimate_curves  # noqa: E402
from schedopt.sources import (  # noqa: E402
    HFScorer,
    hf_scorer,
    load_hf_model,
    torch_logits_fn,  # noqa: E402
)

TRANSITION = np.array([[0.80, 0.15, 0.05], [0.10, 0.60, 0.30], [0.25, 0.05, 0.70]])
N = 4  # answer length


def entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def prompted_chain_curve(transition: np.ndarray, n: int) -> np.ndarray:
    """H_j = E_{|S|=j} H(X_S | prompt) for a stationary chain: only the last prompt token
    matters, so enumerate the table of (last prompt token, answer)."""
    pi = tiny_hf.stationary(transition)
    s = len(pi)
    table = np.zeros((s,) * (n + 1))
    for x in itertools.product(range(s), repeat=n + 1):
        p = pi[x[0]]
        for a, b in itertools.pairwise(x):
            p *= transition[a, b]
        table[x] = p

    def h(axes):
        others = tuple(i for i in range(n + 1) if i not in axes)
        return entropy(table.sum(axis=others).ravel())

    base = h((0,))
    return np.asarray([0.0] + [np.mean([h((0, *sub)) - base
                                        for sub in itertools.combinations(range(1, n + 1), j)])
                               for j in range(1, n + 1)])


@pytest.fixture(scope="module")
def markov_dir(tmp_path_factory):
    return tiny_hf.save_markov_model(tmp_path_factory.mktemp("markov") / "model", TRANSITION)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_hf.save_bert(tmp_path_factory.mktemp("bert") / "model")


@pytest.fixture(scope="module")
def chain_pairs(tmp_path_factory):
    """(prompts, answers, path of the JSONL): prompts of 1 to 3 tokens, answers of N."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 4, size=600)
    chains = tiny_hf.sample_chain(TRANSITION, lengths + N, seed=1)
    prompts = [c[:k] for c, k in zip(chains, lengths, strict=True)]
    answers = np.stack([c[k:] for c, k in zip(chains, lengths, strict=True)])
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt_ids": p.tolist(), "answer_ids": a.tolist()})
                            + "\n" for p, a in zip(prompts, answers, strict=True)))
    return prompts, answers, path


# --------------------------------------------------------------------------- exact law
def test_remote_code_model_gives_the_exact_prompted_curve(markov_dir, chain_pairs):
    prompts, answers, _ = chain_pairs
    scorer, tokenizer = hf_scorer(str(markov_dir), mask_id=3, trust_remote_code=True,
                                  batch_size=256)
    assert tokenizer is None and scorer.vocab_size == 3
    est = estimate_curves(scorer, answers, prompts=prompts, key=jax.random.key(0))
    exact = np.diff(prompted_chain_curve(TRANSITION, N))
    for kind in ("model", "data"):
        mean, se = est.curve(kind)
        assert np.all(np.abs(mean - exact) < 4.5 * se), (kind, mean, exact, se)
    # Without the prompt the first answer token would have the stationary entropy.
    mean, se = est.curve("model")
    assert entropy(tiny_hf.stationary(TRANSITION)) - mean[0] > 5 * se[0]


def test_cli_profile_and_nll_of_a_remote_code_model(markov_dir, chain_pairs, tmp_path, capsys):
    _, _, data = chain_pairs
    common = ["--hf-model", str(markov_dir), "--trust-remote-code", "--mask-id", "3",
              "--data", str(data), "--batch-size", "256"]
    out = tmp_path / "p.json"
    assert main(["--quiet", "profile", *common, "--kind", "model", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    profile = json.loads(out.read_text())
    exact = prompted_chain_curve(TRANSITION, N)
    se = profile["meta"]["joint_entropy_stderr"]
    assert abs(summary["joint_entropy"] - exact[-1]) < 4.5 * se
    assert profile["meta"]["prompt_tokens_min"] == 1 and profile["meta"]["prompt_tokens_max"] == 3

    schedule = tmp_path / "s.json"
    schedule.write_text(json.dumps({"format": "schedopt.schedule", "version": 1,
                                    "tokens_per_step": [3, 1], "n": N, "steps": 2}))
    assert main(["--quiet", "nll", *common, "--schedule", str(schedule), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = {r["schedule"]: r for r in result["results"]}
    mine, stock = rows[str(schedule)], rows["LLaDA stock T=2"]
    g = np.diff(exact)
    for row, steps in ((mine, [3, 1]), (stock, [2, 2])):
        bounds = np.concatenate([[0], np.cumsum(steps)])
        kl = sum(np.sum(g[a] - g[a:b]) for a, b in itertools.pairwise(bounds))
        assert abs(row["excess"] - kl) < 4.5 * row["excess_stderr"]
    diff = mine["vs_stock"]
    assert diff["interval"][0] <= diff["difference"] <= diff["interval"][1]
    assert abs(diff["difference"] - (mine["nll"] - stock["nll"])) < 1e-9


# --------------------------------------------------------------------------- BERT-style model
def test_bert_scorer_agrees_with_the_full_logits_route(bert_dir):
    scorer, _ = hf_scorer(str(bert_dir), mask_id=tiny_hf.MASK_ID, batch_size=64)
    rng = np.random.default_rng(2)
    answers = rng.integers(6, 25, size=(12, 5))
    prompts = rng.integers(6, 25, size=(12, 3))
    a = estimate_curves(scorer, answers, prompts=prompts, key=jax.random.key(1))
    fn = torch_logits_fn(scorer.model, mask_id=tiny_hf.MASK_ID)
    b = estimate_curves(fn, answers, prompts=prompts, key=jax.random.key(1), jit=False)
    np.testing.assert_allclose(a.cross_entropy, b.cross_entropy, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.predictive_entropy, b.predictive_entropy, rtol=1e-4, atol=1e-5)
    assert np.ptp(a.cross_entropy) > 0.5  # the model's predictions vary: the test has teeth


def test_padding_with_an_attention_mask_changes_nothing(bert_dir):
    model, _ = load_hf_model(str(bert_dir))
    padded = HFScorer(model, mask_id=tiny_hf.MASK_ID, batch_size=16)
    single = HFScorer(model, mask_id=tiny_hf.MASK_ID, batch_size=1)
    rng = np.random.default_rng(3)
    prompts = [rng.integers(6, 25, size=k) for k in rng.integers(0, 6, size=10)]
    answers = rng.integers(6, 25, size=(10, 4))
    revealed = rng.random((10, 4)) < 0.5
    for x, y in zip(padded.token_statistics(prompts, answers, revealed),
                    single.token_statistics(prompts, answers, revealed), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_cli_text_pairs_through_the_chat_template(bert_dir, tmp_path, capsys):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(bert_dir), local_files_only=True)
    records = [{"question": "what is the cat", "reply": "the cat sat on a mat ."},
               {"question": "who ran", "reply": "a big dog ran"},
               {"question": "is the mat red ?", "reply": "blue"}]
    data = tmp_path / "text.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "p.json"
    args = ["--quiet", "profile", "--hf-model", str(bert_dir), "--mask-id", "2", "--data",
            str(data), "--prompt-field", "question", "--answer-field", "reply",
            "--chat-template", "--answer-length", "5", "--out", str(out)]
    assert main(args) == 0
    meta = json.loads(out.read_text())["meta"]
    wrapped = [tok.apply_chat_template([{"role": "user", "content": r["question"]}],
                                       add_generation_prompt=True, tokenize=True)
               for r in records]
    wrapped = [w["input_ids"] if hasattr(w, "keys") else w for w in wrapped]
    assert meta["prompt_tokens_max"] == max(len(w) for w in wrapped)
    assert meta["prompt_tokens_min"] == min(len(w) for w in wrapped)
    assert meta["answers_padded"] == 2 and meta["answers_truncated"] == 1
    assert meta["pad_id"] == tiny_hf.EOS_ID
    # --sequences 2: the counts are of the two pairs used (7 words cut to 5, 4 padded to 5).
    assert main([*args, "--sequences", "2", "--force"]) == 0
    meta = json.loads(out.read_text())["meta"]
    assert (meta["pairs"], meta["answers_padded"], meta["answers_truncated"]) == (2, 1, 1)
    capsys.readouterr()


@pytest.mark.parametrize("lines, extra, message", [
    (['{"prompt_ids": [6], "answer_ids": [7, 8]}', '{"prompt_ids": [6], "answer_ids": [7]}'],
     [], "line 2: the answer has 1 tokens but line 1's has 2; answers are ragged"),
    (['{"prompt_ids": [6], "answer_ids": [7, 8]}', '{"prompt_ids": [6], "answer_ids": []}'],
     [], "line 2: the answer is empty"),
    (['{"prompt_ids": [6], "answer_ids": [7, 99]}', '{"prompt_ids": [6], "answer_ids": [7, 8]}'],
     [], "line 1: answer token id 99 is outside the model's vocabulary 0..24"),
    (['{"prompt_ids": [6], "answer_ids": [7, 8]}', "{}"], [], "line 2 is empty"),
    (['{"prompt_ids": [6], "answer_ids": [7, 8]}', "{oops"], [], "line 2 is not valid JSON"),
    (['{"prompt_ids": [6], "answer_ids": [7, 8]}', '{"prompt_ids": [[6]], "answer_ids": [7, 8]}'],
     [], "line 2: prompt_ids must be a flat list"),
    (['{"q": "the cat", "answer": "sat"}'], [], "line 1 has no 'prompt' field"),
    (['{"prompt_ids": [6], "answer_ids": [7, 8]}'], ["--answer-length", "2"],
     "--hf-model needs --mask-id"),
    (['{"prompt_ids": [6], "answer_ids": [7, 8]}', '{"prompt_ids": [6], "answer_ids": [7]}'],
     ["--mask-id", "2", "--answer-length", "2", "--pad-id", "99"],
     "pad id 99 is outside the vocabulary 0..24"),
])
def test_bad_records_are_one_line_naming_the_line(bert_dir, tmp_path, capsys, lines, extra,
                                                  message):
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join(lines) + "\n")
    args = ["profile", "--hf-model", str(bert_dir), "--data", str(data), "--out",
            str(tmp_path / "p.json"), *(extra or ["--mask-id", "2"])]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "p.json").exists()


def test_missing_model_is_one_line(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt_ids": [1], "answer_ids": [2, 3]}\n' * 2)
    assert main(["profile", "--hf-model", str(tmp_path / "nowhere"), "--mask-id", "2",
                 "--data", str(data), "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "never downloads" in err and len(err.splitlines()) == 1


# --------------------------------------------------------------------------- resume
def test_an_interrupted_estimate_resumes_to_the_same_result(markov_dir, chain_pairs, tmp_path):
    prompts, answers, _ = chain_pairs
    prompts, answers = prompts[:40], answers[:40]
    scorer, _ = hf_scorer(str(markov_dir), mask_id=3, trust_remote_code=True, batch_size=16)
    whole = estimate_curves(scorer, answers, prompts=prompts, key=jax.random.key(4),
                            batch_size=16)

    class Interrupted(HFScorer):
        calls = 0

        def token_statistics(self, *args):
            Interrupted.calls += 1
            if Interrupted.calls == 5:
                raise KeyboardInterrupt
            return super().token_statistics(*args)

    flaky = Interrupted(scorer.model, mask_id=3, batch_size=16)
    path = tmp_path / "partial.npz"
    with pytest.raises(KeyboardInterrupt):
        estimate_curves(flaky, answers, prompts=prompts, key=jax.random.key(4), batch_size=16,
                        checkpoint=path)
    assert path.exists()
    with np.load(path) as saved:
        assert len([k for k in saved.files if k.endswith(":0")]) == 4  # four batches kept
    resumed = estimate_curves(flaky, answers, prompts=prompts, key=jax.random.key(4),
                              batch_size=16, checkpoint=path)
    assert Interrupted.calls == 5 + (-(-whole.forward_passes // 16) - 4)  # only the rest ran
    np.testing.assert_array_equal(resumed.cross_entropy, whole.cross_entropy)
    np.testing.assert_array_equal(resumed.predictive_entropy, whole.predictive_entropy)
    assert not path.exists()
    path.write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a schedopt checkpoint"):
        estimate_curves(scorer, answers, prompts=prompts, key=jax.random.key(4), checkpoint=path)


def test_nll_warns_when_a_schedule_is_not_better_than_stock(markov_dir, chain_pairs, tmp_path,
                                                            capsys):
    _, _, data = chain_pairs
    g = np.diff(prompted_chain_curve(TRANSITION, N))

    def kl(steps):
        bounds = np.concatenate([[0], np.cumsum(steps)])
        return sum(np.sum(g[a] - g[a:b]) for a, b in itertools.pairwise(bounds))

    worst = max(([1, 3], [3, 1]), key=kl)
    assert kl(worst) > kl([2, 2]) + 0.02  # exactly worse than LLaDA's [2, 2]
    schedule = tmp_path / "bad.json"
    schedule.write_text(json.dumps({"format": "schedopt.schedule", "version": 1,
                                    "tokens_per_step": worst, "n": N, "steps": 2}))
    assert main(["--quiet", "nll", "--hf-model", str(markov_dir), "--trust-remote-code",
                 "--mask-id", "3", "--data", str(data), "--batch-size", "256",
                 "--schedule", str(schedule)]) == 0
    captured = capsys.readouterr()
    assert "LLaDA stock T=2" in captured.out and "vs stock" in captured.out
    assert "is not better than LLaDA's stock schedule" in captured.err


def test_bfloat16_weights_give_nearly_the_float32_statistics(bert_dir):
    full, _ = hf_scorer(str(bert_dir), mask_id=tiny_hf.MASK_ID)
    half, _ = hf_scorer(str(bert_dir), mask_id=tiny_hf.MASK_ID, dtype="bfloat16")
    rng = np.random.default_rng(5)
    prompts = [rng.integers(6, 25, size=3) for _ in range(8)]
    answers = rng.integers(6, 25, size=(8, 5))
    revealed = rng.random((8, 5)) < 0.4
    a = full.token_statistics(prompts, answers, revealed)
    b = half.token_statistics(prompts, answers, revealed)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype == np.float64
        np.testing.assert_allclose(y, x, rtol=0.1, atol=0.1)
    with pytest.raises(ValueError, match="dtype must be one of"):
        hf_scorer(str(bert_dir), mask_id=2, dtype="float8")


def test_cli_resume_refuses_a_partial_file_of_other_options(markov_dir, chain_pairs, tmp_path,
                                                            capsys):
    _, _, data = chain_pairs
    out = tmp_path / "p.json"
    (tmp_path / "p.json.partial.npz").write_bytes(b"")
    (tmp_path / "p.json.partial.json").write_text(json.dumps({"hf_model": "another"}))
    args = ["profile", "--hf-model", str(markov_dir), "--trust-remote-code", "--mask-id", "3",
            "--data", str(data), "--sequences", "8", "--out", str(out)]
    assert main([*args, "--resume"]) == 2
    assert "written for other options" in capsys.readouterr().err
    assert main(["--quiet", *args]) == 0  # without --resume: starts afresh
    assert out.exists() and not (tmp_path / "p.json.partial.npz").exists()
    assert not (tmp_path / "p.json.partial.json").exists()
    capsys.readouterr()


# --------------------------------------------------------------------------- forward-pass budget
def test_budget_estimate_through_the_scorer_gives_the_exact_prompted_curve(markov_dir,
                                                                           chain_pairs):
    # Through HFScorer with ragged prompts: every revealed count 0..3 is on the coarse grid,
    # and the raw curve (mean over sequences of each row's value) must match the closed form.
    from schedopt.estimate import estimate_within_budget

    prompts, answers, _ = chain_pairs
    scorer, _ = hf_scorer(str(markov_dir), mask_id=3, trust_remote_code=True, batch_size=256)
    est = estimate_within_budget(scorer, answers, prompts=prompts, key=jax.random.key(0),
                                 max_forward_passes=400, steps=(2, 3), kind="model",
                                 bootstrap=20)
    assert est.forward_passes <= 400 and scorer.forward_passes >= est.forward_passes
    meta = est.profile.meta
    assert meta["grid"] == list(range(N))
    exact = np.diff(prompted_chain_curve(TRANSITION, N))
    raw = np.asarray(meta["raw_conditional_entropy"])
    se = np.asarray(est.profile.stderr)
    assert np.all(np.abs(raw - exact) < 4.5 * se), (raw, exact, se)
    # Without the prompt the first answer token would have the stationary entropy.
    assert entropy(tiny_hf.stationary(TRANSITION)) - raw[0] > 5 * se[0]
    assert set(est.stability) == {2, 3}


def test_budget_estimate_spends_the_same_passes_through_the_scorer_and_jax(markov_dir):
    # The same model behind both routes (HFScorer: padded ragged batches reduced in torch;
    # torch_logits_fn: the JAX kernels, one shape per prompt length) and the same key: the
    # same sequences, orders and rows, so the same grid, refinement and schedules.
    from schedopt.estimate import estimate_within_budget

    n = 12
    rng = np.random.default_rng(5)
    lengths = rng.integers(1, 4, size=40)
    chains = tiny_hf.sample_chain(TRANSITION, lengths + n, seed=6)
    prompts = [c[:k] for c, k in zip(chains, lengths, strict=True)]
    answers = np.stack([c[k:] for c, k in zip(chains, lengths, strict=True)])
    scorer, _ = hf_scorer(str(markov_dir), mask_id=3, trust_remote_code=True, batch_size=64)
    fn = torch_logits_fn(scorer.model, mask_id=3)
    common = dict(prompts=prompts, key=jax.random.key(3), max_forward_passes=160,
                  steps=(3, 6), bootstrap=0)
    a = estimate_within_budget(scorer, answers, **common)
    b = estimate_within_budget(fn, answers, jit=False, **common)
    assert a.forward_passes == b.forward_passes == scorer.forward_passes <= 160
    assert a.profile.meta["refined_points"]  # the refinement ran
    for name in ("grid", "coarse_grid", "refined_points", "sequences", "schedules"):
        assert a.profile.meta[name] == b.profile.meta[name], name
    np.testing.assert_allclose(a.profile.meta["raw_conditional_entropy"],
                               b.profile.meta["raw_conditional_entropy"], rtol=1e-5, atol=1e-6)


def test_cli_profile_within_a_budget_of_an_hf_model(markov_dir, chain_pairs, tmp_path, capsys):
    _, _, data = chain_pairs
    out = tmp_path / "p.json"
    assert main(["--quiet", "profile", "--hf-model", str(markov_dir), "--trust-remote-code",
                 "--mask-id", "3", "--data", str(data), "--max-forward-passes", "64",
                 "--target-steps", "2", "3", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed["forward_passes"] <= 64 and set(printed["stability"]) == {"2", "3"}
    assert captured.err.count("schedopt profile: T = ") == 2  # the stability report
    meta = json.loads(out.read_text())["meta"]
    assert meta["forward_passes"] <= 64 and meta["max_forward_passes"] == 64
    assert set(meta["stability"]) == {"2", "3"} and meta["prompt_tokens_max"] == 3


@pytest.mark.parametrize("extra, message", [
    (["--block-length", "2"], "does not combine with --block-length"),
    (["--resume"], "does not combine with --resume"),
    (["--distributed"], "runs in one process"),
])
def test_cli_budget_refuses_what_does_not_combine(markov_dir, chain_pairs, tmp_path, capsys,
                                                  extra, message):
    _, _, data = chain_pairs
    out = tmp_path / "p.json"
    code = main(["profile", "--hf-model", str(markov_dir), "--trust-remote-code", "--mask-id",
                 "3", "--data", str(data), "--max-forward-passes", "64", *extra,
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


# --------------------------------------------------------------------------- model conventions
@pytest.fixture(scope="module")
def dream_dir(tmp_path_factory):
    return tiny_hf.save_markov_model(tmp_path_factory.mktemp("dream") / "model", TRANSITION,
                                     dream=True)


@pytest.fixture(scope="module")
def deaf_dir(tmp_path_factory):
    """Accepts attention_mask but ignores it, as Fast-dLLM's copy of LLaDA."""
    return tiny_hf.save_markov_model(tmp_path_factory.mktemp("deaf") / "model", TRANSITION,
                                     ignore_mask=True)


def test_dream_conventions_come_from_its_config_and_give_the_exact_curve(dream_dir, markov_dir,
                                                                         chain_pairs):
    # Dream-like: model_type "Dream", output i predicts position i + 1, and its attention
    # refuses a 2-D int mask. Read its way, the curve is the closed form; read unshifted, not.
    prompts, answers, _ = chain_pairs
    scorer, _ = hf_scorer(str(dream_dir), mask_id=3, trust_remote_code=True)
    assert scorer.shifted and scorer.attention == "4d"
    exact = np.diff(prompted_chain_curve(TRANSITION, N))
    mean, se = estimate_curves(scorer, answers, prompts=prompts,
                               key=jax.random.key(0)).curve("data")
    assert np.all(np.abs(mean - exact) < 4.5 * se), (mean, exact, se)
    # Row by row against the unshifted chain model (exact conditionals): equal read Dream's
    # way, far off read unshifted.
    plain, _ = hf_scorer(str(markov_dir), mask_id=3, trust_remote_code=True)
    revealed = np.random.default_rng(9).random((40, N)) < 0.5
    masked = ~revealed
    want = plain.token_statistics(prompts[:40], answers[:40], revealed)
    got = scorer.token_statistics(prompts[:40], answers[:40], revealed)
    for x, y in zip(got, want, strict=True):
        np.testing.assert_allclose(x[masked], y[masked], atol=1e-5)
    unshifted = HFScorer(scorer.model, mask_id=3, shifted=False, check_padding=False)
    wrong = unshifted.token_statistics(prompts[:40], answers[:40], revealed)[1]
    assert np.max(np.abs(wrong - want[1])[masked]) > 0.5
    with pytest.raises(ValueError, match="Expected attn_mask dtype.*--attention-mask"):
        HFScorer(scorer.model, mask_id=3, attention="2d").token_statistics(
            prompts[:4], answers[:4], np.zeros((4, N), bool))


def test_cli_profile_of_a_dream_like_model(dream_dir, chain_pairs, tmp_path, capsys):
    _, _, data = chain_pairs
    out = tmp_path / "p.json"
    assert main(["--quiet", "profile", "--hf-model", str(dream_dir), "--trust-remote-code",
                 "--mask-id", "3", "--data", str(data), "--sequences", "200", "--kind", "model",
                 "--out", str(out)]) == 0
    meta = json.loads(out.read_text())["meta"]
    assert meta["shifted_logits"] is True and meta["attention_mask"] == "4d"
    exact = prompted_chain_curve(TRANSITION, N)
    assert abs(json.loads(capsys.readouterr().out)["joint_entropy"] - exact[-1]) < (
        4.5 * meta["joint_entropy_stderr"])


def test_a_model_that_ignores_its_attention_mask_is_refused(deaf_dir, chain_pairs, tmp_path,
                                                            capsys):
    prompts, answers, data = chain_pairs
    revealed = np.random.default_rng(7).random((12, N)) < 0.5
    deaf = HFScorer(load_hf_model(str(deaf_dir), trust_remote_code=True)[0], mask_id=3)
    assert deaf.attention == "2d"  # its forward takes attention_mask...
    with pytest.raises(ValueError, match="change when a row is right-padded"):
        deaf.token_statistics(prompts[:12], answers[:12], revealed)  # ...and ignores it
    out = tmp_path / "p.json"
    args = ["profile", "--hf-model", str(deaf_dir), "--trust-remote-code", "--mask-id", "3",
            "--data", str(data), "--sequences", "16", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "--attention-mask none" in err and len(err.splitlines()) == 1 and not out.exists()
    # Without a mask, rows are grouped by prompt length: the scores of rows scored alone.
    grouped = HFScorer(deaf.model, mask_id=3, attention="none")
    got = grouped.token_statistics(prompts[:12], answers[:12], revealed)
    alone = [grouped.token_statistics(prompts[i:i + 1], answers[i:i + 1], revealed[i:i + 1])
             for i in range(12)]
    for k in range(2):
        np.testing.assert_allclose(got[k], np.concatenate([a[k] for a in alone]), atol=1e-6)
    assert main(["--quiet", *args, "--attention-mask", "none"]) == 0
    capsys.readouterr()


def test_mask_id_is_checked_against_the_config_and_the_vocabulary(markov_dir, bert_dir,
                                                                  chain_pairs, tmp_path,
                                                                  capsys):
    model, _ = load_hf_model(str(markov_dir), trust_remote_code=True)
    with pytest.raises(ValueError, match="mask_token_id = 3; pass --mask-id 3"):
        HFScorer(model, mask_id=2)
    HFScorer(model, mask_id=2, force_mask_id=True)  # forced: runs
    bert, _ = load_hf_model(str(bert_dir))
    with pytest.raises(ValueError, match="mask id 99 is outside the model.s vocabulary 0..24"):
        HFScorer(bert, mask_id=99)
    _, _, data = chain_pairs
    base = ["profile", "--hf-model", str(markov_dir), "--trust-remote-code", "--data",
            str(data), "--sequences", "8", "--out", str(tmp_path / "p.json")]
    assert main([*base, "--mask-id", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--force-mask-id" in err and len(err.splitlines()) == 1
    # Forced, it runs past the check (and state 2, read as a mask, then breaks the scores).
    main(["--quiet", *base, "--mask-id", "2", "--force-mask-id"])
    assert "mask_token_id" not in capsys.readouterr().err


def test_no_probe_input_and_no_tokenizer_needed_for_token_ids(tmp_path, chain_pairs,
                                                              monkeypatch):
    # A model that refuses inputs shorter than 5 tokens runs on the data (prompt + answer is
    # at least 5 here); a tokenizer that fails as LLaDA's does without tokenizer files
    # (KeyError 'LLaDAConfig') leaves token-id data unaffected.
    import transformers

    prompts, answers, _ = chain_pairs
    path = tiny_hf.save_markov_model(tmp_path / "m", TRANSITION, min_tokens=5)

    def no_tokenizer(*args, **kwargs):
        raise KeyError("LLaDAConfig")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_tokenizer)
    scorer, tokenizer = hf_scorer(str(path), mask_id=3, trust_remote_code=True)
    assert tokenizer is None and scorer.vocab_size == 3
    ce, _ = scorer.token_statistics(prompts[:6], answers[:6], np.zeros((6, N), bool))
    assert np.all(np.isfinite(ce))


def test_a_load_failure_inside_the_model_code_names_transformers(tmp_path, capsys):
    import transformers

    from schedopt.sources import TRANSFORMERS_RANGE

    path = tiny_hf.save_markov_model(
        tmp_path / "m", TRANSITION,
        fail_on_load="'LLaDAModelLM' object has no attribute 'all_tied_weights_keys'")
    with pytest.raises(ValueError) as info:
        load_hf_model(str(path), trust_remote_code=True)
    message = str(info.value)
    assert f"transformers {transformers.__version__}" in message
    assert TRANSFORMERS_RANGE in message and "all_tied_weights_keys" in message
    # The hf extra pins the same range.
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert f'hf = ["torch>=2.2", "{TRANSFORMERS_RANGE}"]' in pyproject


# --------------------------------------------------------------------------- memory
def test_a_large_vocabulary_is_reduced_in_bounded_chunks(tmp_path, monkeypatch):
    # V = 120000 (tiny hidden size): the statistics equal a float64 log-softmax of the full
    # logits computed here, no chunk handed to the reduction exceeds CHUNK_ELEMENTS, and
    # every chunk of a pass is reduced in the same two buffers (no allocation per chunk).
    import torch
    from transformers import BertConfig, BertForMaskedLM

    import schedopt.sources._hf as hf

    torch.manual_seed(0)
    v = 120_000
    model = BertForMaskedLM(BertConfig(vocab_size=v, hidden_size=4, num_hidden_layers=1,
                                       num_attention_heads=1, intermediate_size=8,
                                       max_position_embeddings=32)).eval()
    with torch.no_grad():
        model.cls.predictions.decoder.weight.mul_(30.0)
    seen = []
    reduce = hf.position_statistics

    buffers = []

    def spy(logits, targets, *rest, **options):
        seen.append(tuple(logits.shape))
        buffers.append(tuple(w.data_ptr() for w in options["work"]))
        return reduce(logits, targets, *rest, **options)

    monkeypatch.setattr(hf, "position_statistics", spy)
    monkeypatch.setattr(hf, "CHUNK_ELEMENTS", 1_000_000)  # 8 positions per chunk
    rng = np.random.default_rng(8)
    prompts = [rng.integers(5, v, size=k) for k in (3, 1, 4, 2, 3)]
    answers = rng.integers(5, v, size=(5, 6))
    revealed = rng.random((5, 6)) < 0.4
    scorer = HFScorer(model, mask_id=4)
    passes = []
    forward = scorer._forward
    monkeypatch.setattr(scorer, "_forward", lambda *a: passes.append(1) or forward(*a))
    ce, ent = scorer.token_statistics(prompts, answers, revealed)
    assert len(seen) > 3 and all(k * w <= 1_000_000 and w == v for k, w in seen)
    assert len(set(buffers)) <= len(passes) < len(seen)
    for i, p in enumerate(prompts):
        ids = np.concatenate([p, np.where(revealed[i], answers[i], 4)])
        with torch.no_grad():
            logits = model(input_ids=torch.from_numpy(ids)[None]).logits[0].double().numpy()
        z = logits[len(p):] - logits[len(p):].max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        np.testing.assert_allclose(ce[i], -logp[np.arange(6), answers[i]], rtol=1e-4,
                                   atol=1e-4)
        np.testing.assert_allclose(ent[i], -(np.exp(logp) * logp).sum(-1), rtol=1e-4,
                                   atol=1e-4)
    assert np.ptp(ce) > 1.0


def test_strided_logits_are_reduced_as_a_float64_log_softmax(bert_dir):
    # A model whose logits are a non-contiguous view takes the reduction's gather by
    # advanced indexing instead of index_select: the four rule statistics at the masked
    # positions equal a float64 log-softmax of the logits computed here.
    import torch

    model, _ = load_hf_model(str(bert_dir))

    class Strided(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, input_ids, attention_mask=None):
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask).logits
            return (out.transpose(0, 1).contiguous().transpose(0, 1),)

    rng = np.random.default_rng(6)
    prompts = [rng.integers(6, 25, size=3) for _ in range(6)]
    answers = rng.integers(6, 25, size=(6, 5))
    revealed = rng.random((6, 5)) < 0.4
    got = HFScorer(Strided(model), mask_id=tiny_hf.MASK_ID).rule_statistics(prompts, answers,
                                                                             revealed)
    for i, prompt in enumerate(prompts):
        ids = np.concatenate([prompt, np.where(revealed[i], answers[i], tiny_hf.MASK_ID)])
        with torch.no_grad():
            logits = model(input_ids=torch.from_numpy(ids)[None]).logits[0, 3:].double().numpy()
        z = logits - logits.max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        top = np.sort(logp, axis=-1)[:, ::-1]
        want = (-logp[np.arange(5), answers[i]], -(np.exp(logp) * logp).sum(-1), top[:, 0],
                top[:, 1])
        masked = ~revealed[i]
        for value, expected in zip(got, want, strict=True):
            np.testing.assert_allclose(value[i][masked], expected[masked], rtol=1e-5, atol=1e-5)
            assert np.isnan(value[i][~masked]).all()


def test_only_the_statistics_asked_for_are_computed(bert_dir):
    # What the confidence rule reads: cross-entropy and log top-1 equal a float64 log-softmax
    # of the logits computed here; the statistics not asked for are NaN everywhere.
    import torch

    model, _ = load_hf_model(str(bert_dir))
    rng = np.random.default_rng(7)
    prompts = [rng.integers(6, 25, size=k) for k in (2, 3, 4, 3)]
    answers = rng.integers(6, 25, size=(4, 5))
    revealed = rng.random((4, 5)) < 0.4
    scorer = HFScorer(model, mask_id=tiny_hf.MASK_ID)
    ce, ent, top1, top2 = scorer.rule_statistics(prompts, answers, revealed,
                                                 statistics=("cross_entropy", "log_top1"))
    assert np.isnan(ent).all() and np.isnan(top2).all()
    for i, prompt in enumerate(prompts):
        ids = np.concatenate([prompt, np.where(revealed[i], answers[i], tiny_hf.MASK_ID)])
        with torch.no_grad():
            logits = model(input_ids=torch.from_numpy(ids)[None]).logits[0, len(prompt):]
        z = logits.double().numpy()
        logp = z - z.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        masked = ~revealed[i]
        np.testing.assert_allclose(ce[i][masked], -logp[np.arange(5), answers[i]][masked],
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(top1[i][masked], logp.max(-1)[masked], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown statistics"):
        scorer.rule_statistics(prompts, answers, revealed, statistics=("confidence",))


def test_out_of_memory_names_batch_size_and_the_fitted_batch_halves(markov_dir, chain_pairs):
    prompts, answers, _ = chain_pairs
    model, _ = load_hf_model(str(markov_dir), trust_remote_code=True)

    Tight = tight_module_class()
    revealed = np.zeros((8, N), bool)
    explicit = HFScorer(Tight(model, rows=2), mask_id=3, batch_size=4)
    with pytest.raises(ValueError, match="pass a smaller --batch-size"):
        explicit.token_statistics(prompts[:8], answers[:8], revealed)
    fitted = HFScorer(Tight(model, rows=2), mask_id=3)  # fitted to memory, then halved
    got = fitted.token_statistics(prompts[:8], answers[:8], revealed)
    want = HFScorer(model, mask_id=3, batch_size=1).token_statistics(prompts[:8], answers[:8],
                                                                     revealed)
    for x, y in zip(got, want, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-6)
    assert fitted.forward_passes == 8


def tight_module_class():
    """A module class that runs `model` but fails like the CPU allocator above `rows` rows."""
    import torch

    class Tight(torch.nn.Module):
        def __init__(self, inner, *, rows):
            super().__init__()
            self.inner, self.rows, self.config = inner, rows, inner.config

        def forward(self, input_ids, attention_mask=None):
            if input_ids.shape[0] > self.rows:
                raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                                   "not enough memory: you tried to allocate 40000000000 bytes")
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    return Tight
