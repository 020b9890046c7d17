"""Prompt/answer pairs from a JSONL file, for prompt-conditioned curves and NLLs (theory §12).

One JSON object per line, either with token ids

    {"prompt_ids": [101, 2054, ...], "answer_ids": [7592, 102]}

or with text fields tokenised by the model's tokenizer (field names chosen by the caller;
the prompt optionally through the tokenizer's chat template, as instruct models are prompted):

    {"prompt": "What is 2 + 2?", "answer": "4"}

Answers are generated at a fixed length n (the sampler's gen_length): shorter answers are
padded with `pad_id` (LLaDA pads with EOS), longer ones cut to n. Without a length every answer
must already have the same length. Blank lines are skipped; every other fault is one sentence
naming the line.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class PromptAnswerPairs:
    """Prompts (any lengths) and answers (padded to n), one pair per record.

    Attributes:
        prompts: M int32 arrays.
        answers: int32[M, n].
        lines: int[M] the file line of each pair (1-based).
        padded: answers that were padded to n.
        truncated: answers that were cut to n.
        source_lengths: int[M] each answer's token count before padding or cutting (None
            when no answer length was imposed), so `head` counts what it keeps.
    """

    prompts: list[np.ndarray]
    answers: np.ndarray
    lines: np.ndarray
    padded: int = 0
    truncated: int = 0
    source_lengths: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.answers.shape[0])

    def head(self, m: int) -> PromptAnswerPairs:
        """The first m pairs (their padded and truncated counts are of these m only)."""
        if self.source_lengths is None:
            return dataclasses.replace(self, prompts=self.prompts[:m], answers=self.answers[:m],
                                       lines=self.lines[:m])
        kept, n = self.source_lengths[:m], self.answers.shape[1]
        return dataclasses.replace(self, prompts=self.prompts[:m], answers=self.answers[:m],
                                   lines=self.lines[:m], padded=int(np.sum(kept < n)),
                                   truncated=int(np.sum(kept > n)), source_lengths=kept)

    def summary(self) -> dict[str, Any]:
        lengths = [p.size for p in self.prompts]
        return {"pairs": len(self), "answer_length": int(self.answers.shape[1]),
                "prompt_tokens_min": int(min(lengths)), "prompt_tokens_max": int(max(lengths)),
                "answers_padded": self.padded, "answers_truncated": self.truncated}


def read_pairs(
    path: str | os.PathLike,
    *,
    answer_length: int | None = None,
    pad_id: int | None = None,
    vocab_size: int | None = None,
    tokenizer: Any = None,
    prompt_field: str = "prompt",
    answer_field: str = "answer",
    chat_template: bool = False,
) -> PromptAnswerPairs:
    """Read prompt/answer pairs from a JSONL file.

    Args:
        path: the file.
        answer_length: n: pad or cut every answer to n tokens (None: all answers must have
            one length already).
        pad_id: the token that pads short answers (the model's EOS for LLaDA).
        vocab_size: V: every id (prompt, answer, pad) must lie in 0..V-1.
        tokenizer: a Hugging Face tokenizer, needed for text fields.
        prompt_field, answer_field: the text fields' names.
        chat_template: wrap each prompt as one user message through the tokenizer's chat
            template, with the generation prompt added (as instruct models are prompted).

    Returns:
        `PromptAnswerPairs`.

    Raises:
        ValueError: an unreadable or empty file, or a bad record (naming its line).
    """
    path = Path(path)
    if answer_length is not None and (isinstance(answer_length, bool) or int(answer_length) < 1):
        raise ValueError(f"answer_length must be a whole number >= 1, got {answer_length!r}")
    if pad_id is not None and vocab_size is not None and not 0 <= pad_id < vocab_size:
        raise ValueError(f"pad id {pad_id} is outside the vocabulary 0..{vocab_size - 1}")
    prompts, answers, lines = [], [], []
    for number, where, record in _records(path):
        prompt, answer = _record_ids(record, where, tokenizer, prompt_field, answer_field,
                                     chat_template)
        for name, ids in (("prompt", prompt), ("answer", answer)):
            _check_ids(ids, where, name, vocab_size)
        if answer.size == 0:
            raise ValueError(f"{where}: the answer is empty; every pair needs answer tokens")
        prompts.append(prompt)
        answers.append(answer)
        lines.append(number)
    if not answers:
        raise ValueError(f"{str(path)!r} holds no records; write one JSON object per line")
    return _fixed_length(prompts, answers, np.asarray(lines), answer_length, pad_id, path)


def read_prompts(
    path: str | os.PathLike,
    *,
    vocab_size: int | None = None,
    tokenizer: Any = None,
    prompt_field: str = "prompt",
    chat_template: bool = False,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Prompts alone from a JSONL file (for generation): (M int32 arrays, lines int[M]).

    Each record holds "prompt_ids" or the text field `prompt_field` (tokenised as in
    `read_pairs`); answer fields, if any, are ignored.
    """
    prompts, lines = [], []
    for number, where, record in _records(Path(path)):
        if "prompt_ids" in record:
            prompt = _ids(record["prompt_ids"], where, "prompt_ids")
        elif prompt_field in record and isinstance(record[prompt_field], str):
            if tokenizer is None:
                raise ValueError(f"{where} holds text; text fields need the model's tokenizer "
                                 "(--hf-model), or give prompt_ids")
            prompt = _tokenize_prompt(tokenizer, record[prompt_field], chat_template, where)
        else:
            raise ValueError(f"{where} has no \"prompt_ids\" list and no text field "
                             f"{prompt_field!r} (it has {sorted(record)}); name the text field "
                             "with --prompt-field")
        _check_ids(prompt, where, "prompt", vocab_size)
        prompts.append(prompt.astype(np.int32))
        lines.append(number)
    if not prompts:
        raise ValueError(f"{str(path)!r} holds no records; write one JSON object per line")
    return prompts, np.asarray(lines)


def _check_ids(ids: np.ndarray, where: str, name: str, vocab_size: int | None) -> None:
    """Refuse ids outside the vocabulary (or negative), naming the line."""
    if vocab_size is not None and ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
        raise ValueError(f"{where}: {name} token id {bad} is outside the model's "
                         f"vocabulary 0..{vocab_size - 1}")
    if ids.size and ids.min() < 0:
        raise ValueError(f"{where}: {name} token id {int(ids.min())} is negative")


def _records(path: Path):
    """(line number, where, record) for each non-blank line of a JSONL file of objects."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"data file {str(path)!r} does not exist") from None
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} is not UTF-8 text; give a JSONL file") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{str(path)!r} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{where} is not valid JSON; write one JSON object per line") from None
        if not isinstance(record, dict) or not record:
            raise ValueError(f"{where} is empty or not a JSON object; expected "
                             '{"prompt_ids": [...], "answer_ids": [...]} or text fields')
        yield number, where, record


def _record_ids(record, where, tokenizer, prompt_field, answer_field, chat_template):
    if "answer_ids" in record or "prompt_ids" in record:
        return (_ids(record.get("prompt_ids", []), where, "prompt_ids"),
                _ids(record.get("answer_ids"), where, "answer_ids"))
    missing = [f for f in (prompt_field, answer_field) if f not in record]
    if missing:
        raise ValueError(
            f"{where} has no {' or '.join(repr(f) for f in missing)} field (it has "
            f"{sorted(record)}); name the text fields with --prompt-field/--answer-field or "
            "give prompt_ids and answer_ids"
        )
    if tokenizer is None:
        raise ValueError(f"{where} holds text; text fields need the model's tokenizer "
                         "(--hf-model), or give prompt_ids and answer_ids")
    prompt, answer = record[prompt_field], record[answer_field]
    if not isinstance(prompt, str) or not isinstance(answer, str):
        raise ValueError(f"{where}: fields {prompt_field!r} and {answer_field!r} must be strings")
    return (_tokenize_prompt(tokenizer, prompt, chat_template, where),
            np.asarray(tokenizer(answer, add_special_tokens=False)["input_ids"], np.int64))


def _tokenize_prompt(tokenizer, prompt: str, chat_template: bool, where: str) -> np.ndarray:
    if not chat_template:
        return np.asarray(tokenizer(prompt)["input_ids"], np.int64)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{where}: the tokenizer has no chat template; drop --chat-template")
    out = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                        add_generation_prompt=True, tokenize=True)
    if isinstance(out, dict) or hasattr(out, "keys"):  # newer transformers return a mapping
        out = out["input_ids"]
    return np.asarray(out, np.int64).ravel()


def _ids(value, where: str, name: str) -> np.ndarray:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ValueError(f"{where}: {name} must be a flat list of whole-number token ids")
    return np.asarray(value, np.int64)


def _fixed_length(prompts, answers, lines, answer_length, pad_id, path) -> PromptAnswerPairs:
    if answer_length is None:
        n = answers[0].size
        for ids, line in zip(answers, lines, strict=True):
            if ids.size != n:
                raise ValueError(
                    f"{str(path)!r} line {line}: the answer has {ids.size} tokens but line "
                    f"{lines[0]}'s has {n}; answers are ragged, so pass --answer-length N "
                    "(and --pad-id) to pad or cut them to the generation length"
                )
        return PromptAnswerPairs([p.astype(np.int32) for p in prompts],
                                 np.stack(answers).astype(np.int32), lines)
    n = int(answer_length)
    out = np.zeros((len(answers), n), np.int32)
    padded = truncated = 0
    for i, (ids, line) in enumerate(zip(answers, lines, strict=True)):
        if ids.size < n and pad_id is None:
            raise ValueError(
                f"{str(path)!r} line {line}: the answer has {ids.size} tokens, fewer than the "
                f"answer length {n}; pass --pad-id (LLaDA pads answers with its EOS token)"
            )
        padded += ids.size < n
        truncated += ids.size > n
        out[i] = np.concatenate([ids[:n], np.full(max(0, n - ids.size), pad_id or 0)])
    return PromptAnswerPairs([p.astype(np.int32) for p in prompts], out, lines,
                             padded=int(padded), truncated=int(truncated),
                             source_lengths=np.asarray([a.size for a in answers], np.int64))
