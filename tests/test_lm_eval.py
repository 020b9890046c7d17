"""The lm-evaluation-harness model "schedopt", run offline by the installed harness on local
YAML tasks over JSONL files this test writes, with a tiny BERT-style masked LM.

Independent routes: the forward passes counted inside the model's own forward; the answers of
`schedopt.generate` decoded and cut here; LLaDA's eval_llada.py Monte Carlo likelihood
(`get_loglikelihood`, `_forward_process`) and `suffix_greedy_prediction`, re-implemented from
ML-GSAI/LLaDA@b7e6c35 on the raw torch model; the exact log-probability of a one-token
continuation.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("lm_eval")

import tiny_hf  # noqa: E402

pytestmark = pytest.mark.torch

QUESTIONS = ["the cat sat", "a dog ran", "the red mat", "who is big"]  # 3 tokens each
CHOICES = [("the cat", ["sat on a mat", "ran", "and and"]), ("a big dog", ["is red", "ran on"])]
SEED, MC, BATCH, TEMP = 3, 8, 4, 5.0


def _task(path, name, data, body):
    path.write_text(f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                    f"    test: {data}\n  cache_dir: {path.parent / 'cache'}\n"
                    f"test_split: test\n{body}")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One harness run over both tasks: (results, model dir, forward calls [(rows, length)])."""
    import lm_eval
    import transformers
    from lm_eval.tasks import TaskManager

    import schedopt.lm_eval_model  # noqa: F401 - registers "schedopt"

    tmp = tmp_path_factory.mktemp("lmeval")
    model = tiny_hf.save_bert(tmp / "bert", seed=1)
    schedule = tmp / "block.json"  # one block of 4 tokens in 2 steps
    schedule.write_text(json.dumps({"format": "schedopt.schedule", "version": 1, "n": 4,
                                    "tokens_per_step": [3, 1]}))
    (tmp / "gen.jsonl").write_text("".join(json.dumps({"q": q, "a": "x"}) + "\n"
                                           for q in QUESTIONS))
    (tmp / "mc.jsonl").write_text("".join(json.dumps({"q": q, "c": c, "y": 0}) + "\n"
                                          for q, c in CHOICES))
    tasks = tmp / "tasks"
    tasks.mkdir()
    _task(tasks / "gen.yaml", "tiny_gen", tmp / "gen.jsonl",
          'output_type: generate_until\ndoc_to_text: "{{q}}"\ndoc_to_target: "{{a}}"\n'
          'generation_kwargs:\n  until: ["."]\nmetric_list:\n  - metric: exact_match\n')
    _task(tasks / "mc.yaml", "tiny_mc", tmp / "mc.jsonl",
          'output_type: multiple_choice\ndoc_to_text: "{{q}}"\ndoc_to_choice: c\n'
          'doc_to_target: y\nmetric_list:\n  - metric: acc\n')
    calls = []
    forward = transformers.BertForMaskedLM.forward

    def counted(self, input_ids=None, **kwargs):
        calls.append(tuple(input_ids.shape))
        return forward(self, input_ids=input_ids, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(transformers.BertForMaskedLM, "forward", counted)
    mp.setenv("HF_DATASETS_OFFLINE", "1")
    mp.setenv("HF_HUB_OFFLINE", "1")
    try:
        results = lm_eval.simple_evaluate(
            model="schedopt", model_args={"pretrained": str(model), "schedule": str(schedule),
                                          "rule": "confidence", "block_length": 4,
                                          "gen_length": 8, "temperature": TEMP, "seed": SEED,
                                          "mc_num": MC, "batch_size": BATCH,
                                          "check_greedy": True},
            tasks=["tiny_gen", "tiny_mc"], task_manager=TaskManager(include_path=str(tasks)),
            log_samples=True)
    finally:
        mp.undo()
    return results, model, calls


def _samples(results, task):
    return sorted(results["samples"][task], key=lambda s: (s["doc_id"], s["arguments"]))


def test_generate_until_answers_are_schedopt_generates_cut_at_until(run):
    import jax

    from schedopt import generate
    from schedopt.rules import OrderRule
    from schedopt.sources import hf_scorer

    results, model, calls = run
    scorer, tok = hf_scorer(str(model), mask_id=tiny_hf.MASK_ID, batch_size=BATCH)
    out = generate(scorer, [tok(q)["input_ids"] for q in QUESTIONS],
                   OrderRule("confidence", 4), [3, 1, 3, 1], temperature=TEMP,
                   key=jax.random.key(SEED), batch_size=BATCH)
    want = [tok.decode(t.tolist()).split(".")[0].split("[EOS]")[0] for t in out.tokens]
    got = [s["resps"][0][0] for s in _samples(results, "tiny_gen")]
    assert [s["arguments"][0][0] for s in _samples(results, "tiny_gen")] == QUESTIONS
    assert got == want
    assert any(len(w) < len(tok.decode(t.tolist())) for w, t in zip(want, out.tokens,
                                                                    strict=True))  # a cut
    # Decoding passes seen by the model itself: T = 2 per block, 2 blocks, 4 answers a pass.
    decoding = [c for c in calls if c[1] == 3 + 8]
    assert decoding == [(4, 11)] * 4
    logged = results["config"]["schedopt"]
    assert logged["stats"]["generate_until"]["forward_passes"] == 4 * 4
    assert logged["stats"]["generate_until"]["tokens_per_second"] > 0
    assert logged["seed"] == SEED and logged["tokens_per_step"] == [3, 1, 3, 1]
    assert logged["versions"]["lm_eval"] and logged["versions"]["torch"].startswith("2.")


def _llada_loglikelihood(model, prefix, target, mc_num, batch_size, generator, mask_id):
    """eval_llada.py get_loglikelihood + _forward_process, the global RNG -> `generator`."""
    import torch
    import torch.nn.functional as F

    seq = torch.cat([prefix, target])[None, :].repeat((batch_size, 1))
    prompt_index = torch.arange(seq.shape[1]) < len(prefix)
    loss_acc = []
    for _ in range(mc_num // batch_size):
        b, length = seq.shape
        target_len = (length - prompt_index.sum()).item()
        k = torch.randint(1, target_len + 1, (), generator=generator)
        x = torch.round(torch.linspace(float(k), k + (b - 1) * (target_len / b), steps=b)).long()
        x = ((x - 1) % target_len) + 1
        is_mask = torch.arange(target_len).repeat(b, 1) < x.unsqueeze(1)
        for i in range(b):
            is_mask[i] = is_mask[i][torch.randperm(target_len, generator=generator)]
        is_mask = torch.cat((torch.zeros(b, prompt_index.sum(), dtype=torch.bool), is_mask), 1)
        noisy = torch.where(is_mask, mask_id, seq)
        p_mask = (x / target_len).unsqueeze(1).repeat(1, length)
        mask_indices = noisy == mask_id
        with torch.no_grad():
            logits = model(noisy).logits
        loss = F.cross_entropy(logits[mask_indices], seq[mask_indices], reduction="none")
        loss_acc.append((loss / p_mask[mask_indices]).sum().item() / b)
    return -sum(loss_acc) / len(loss_acc)


def _llada_is_greedy(model, prefix, target, mask_id):
    """eval_llada.py suffix_greedy_prediction (cfg = 0)."""
    import torch

    seq = torch.full((1, len(prefix) + len(target)), mask_id)
    seq[0, :len(prefix)] = prefix
    for _ in range(len(target)):
        mask_index = seq == mask_id
        with torch.no_grad():
            logits = model(seq).logits[mask_index]
        x0 = torch.argmax(logits, dim=-1)
        confidence = torch.softmax(logits.float(), -1).gather(-1, x0[:, None])[:, 0]
        index = torch.sort(confidence, descending=True).indices
        x0[index[1:]] = mask_id
        seq[mask_index] = x0.clone()
    return bool(torch.all(target == seq[0, len(prefix):]))


def test_loglikelihood_is_lladas_monte_carlo_estimate(run):
    import torch
    from transformers import AutoTokenizer, BertForMaskedLM

    results, model_dir, calls = run
    model = BertForMaskedLM.from_pretrained(str(model_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    samples = _samples(results, "tiny_mc")
    pairs = [(q, " " + c) for q, cs in CHOICES for c in cs]
    got = {tuple(a) for s in samples for a in s["arguments"]}
    assert got == set(pairs)
    values = {tuple(a): r[0] for s in samples
              for a, r in zip(s["arguments"], s["resps"], strict=True)}
    flags = []
    for context, continuation in pairs:
        prefix = torch.tensor(tok(context)["input_ids"])
        target = torch.tensor(tok(context + continuation)["input_ids"][len(prefix):])
        state = np.random.SeedSequence([SEED, zlib.crc32(context.encode()),
                                        zlib.crc32(continuation.encode())]).generate_state(1)
        generator = torch.Generator().manual_seed(int(state[0]))
        want = _llada_loglikelihood(model, prefix, target, MC, BATCH, generator,
                                    tiny_hf.MASK_ID)
        value, greedy = values[(context, continuation)]
        assert value == pytest.approx(want, rel=1e-5, abs=1e-6), (context, continuation)
        assert greedy == _llada_is_greedy(model, prefix, target, tiny_hf.MASK_ID)
        flags.append(greedy)
        if len(target) == 1:  # one token: the estimate is exactly log p(token | context)
            masked = torch.cat([prefix, torch.tensor([tiny_hf.MASK_ID])])[None]
            with torch.no_grad():
                logp = torch.log_softmax(model(masked).logits[0, -1].double(), -1)
            assert value == pytest.approx(float(logp[target[0]]), rel=1e-5)
    assert True in flags and False in flags
    # Rows the model scored for likelihoods: mc_num per pair, plus n for each greedy check.
    rows = sum(r for r, length in calls if length != 11)
    n_total = sum(len(tok(c)["input_ids"]) for _, c in pairs)
    assert rows == MC * len(pairs) + n_total
    assert results["config"]["schedopt"]["stats"]["loglikelihood"]["forward_passes"] == rows


def test_bad_model_arguments_are_refused_in_one_sentence(tmp_path):
    from schedopt.lm_eval_model import SchedoptLM

    schedule = tmp_path / "s.json"
    schedule.write_text(json.dumps({"format": "schedopt.schedule", "version": 1, "n": 4,
                                    "tokens_per_step": [3, 1]}))
    for kwargs, message in [
        ({"pretrained": "x", "schedule": str(schedule), "steps": 4}, "unknown model argument"),
        ({"schedule": str(schedule)}, "pretrained=DIR"),
        ({"pretrained": "x", "schedule": str(schedule), "mc_num": 6}, "not a multiple"),
        ({"pretrained": "x", "rule": "threshold", "gen_length": 8}, "needs tau="),
        ({"pretrained": "x", "rule": "confidence"}, "needs a count schedule"),
        ({"pretrained": "x", "rule": "best", "schedule": str(schedule)}, "unknown rule"),
        ({"pretrained": "x", "schedule": str(schedule), "gen_length": 6}, "covers 4 tokens"),
        ({"pretrained": "x", "schedule": str(schedule), "batch_size": "auto"}, "batch_size"),
    ]:
        with pytest.raises(ValueError, match=message) as e:
            SchedoptLM(**kwargs)
        assert "\n" not in str(e.value)


def test_the_documented_command_runs_lm_evals_cli(run, tmp_path, spawn):
    """`python -m schedopt.lm_eval_model` is lm_eval's CLI with "schedopt" registered; its
    default device (cuda:0) falls back to cpu here."""
    import subprocess
    import sys

    from processes import child_env

    results, model, _ = run
    tasks = model.parent / "tasks"
    schedule = model.parent / "block.json"
    proc = spawn([sys.executable, "-m", "schedopt.lm_eval_model", "--model", "schedopt",
                  "--model_args", f"pretrained={model},schedule={schedule},rule=confidence,"
                  "block_length=4,gen_length=8,batch_size=4", "--batch_size", "2", "--tasks",
                  "tiny_gen", "--include_path",
                  str(tasks), "--output_path", str(tmp_path / "out")],
                 env=child_env(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1"),
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    written = [json.loads(p.read_text()) for p in (tmp_path / "out").rglob("results*.json")]
    logged = written[0]["config"]["schedopt"] if written else {}
    assert logged["stats"]["generate_until"]["forward_passes"] == 4 * len(QUESTIONS)
    assert logged["batch_size"] == 4  # --model_args wins over --batch_size, no clash
    import torch

    if not torch.cuda.is_available():  # lm_eval's default device is cuda:0
        assert "CUDA is not available; using cpu" in err
    with pytest.raises(NotImplementedError, match="loglikelihood_rolling"):
        from schedopt.lm_eval_model import SchedoptLM

        SchedoptLM.loglikelihood_rolling(None, [])
