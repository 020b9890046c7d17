"""Every runnable code block of README.md and docs/*.md runs as written, and shows true numbers.

What runs, per page, in one temporary folder (so later blocks see the files made earlier):
- `console` blocks, and `bash`/`sh` blocks with `$ ` prompts: each `$ ` line runs in bash
  (`schedopt` as a command is `python -m schedopt` of this tree; SCHEDOPT_CACHE_DIR=off;
  redirections, pipes and `# comments` are bash's own). The lines after a command, up to the
  next `$ `, are its shown output: line for line, the words must match the command's stdout (its
  stderr when stdout is empty) and every number must agree, integers exactly and decimals to a
  relative 1e-3.
- `python` blocks, executed in order in one namespace per page. A comment that shows a value
  (`x  # 7.17641 nats`, `s = f()  # tokens_per_step [8, 9, ...]`) is checked against the
  statement's value (or the assigned name's, or that attribute of it): the numbers shown,
  with `...` ending a list meaning "these first".
- Other blocks (`text`, `json`, `bash` synopses without prompts) are not run.

Markers, HTML comments on the lines just before the opening fence (invisible on the page):
- `<!-- not run: REASON -->`: the block needs a GPU, a real checkpoint or the network; it is
  skipped (the page must say so in words).
- `<!-- varies: PREFIX; PREFIX -->`: shown output lines that start with one of the prefixes
  (timings, sampled values) are matched in their words only, not their numbers.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import math
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*(not run|varies):\s*(.*?)\s*-->\s*$")
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
REL_TOL = 1e-3
COMMAND_TIMEOUT_S = 600


@dataclasses.dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    body: list[str]
    not_run: str | None = None
    varies: tuple[str, ...] = ()

    def where(self, offset: int | None = None) -> str:
        line = self.line if offset is None else self.line + 1 + offset
        at = f"{self.page}:{line}"
        return f"{at} ({self.lang} block opened at line {self.line})"


def blocks_of(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, with their markers."""
    lines = path.read_text().splitlines()
    name = str(path.relative_to(ROOT))
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i
        j = i + 1
        while j < len(lines) and not FENCE.match(lines[j]):
            j += 1
        body = [b[len(indent):] if b.startswith(indent) else b.lstrip() for b in lines[i + 1 : j]]
        block = Block(name, start + 1, lang, body)
        k = start - 1
        while k >= 0 and MARKER.match(lines[k]):
            kind, text = MARKER.match(lines[k]).groups()
            if kind == "not run":
                block.not_run = text
            else:
                block.varies += tuple(p.strip() for p in text.split(";") if p.strip())
            k -= 1
        found.append(block)
        i = j + 1
    return found


def runnable(block: Block) -> bool:
    """python and console blocks, and bash/sh blocks with `$ ` prompts."""
    if block.lang in ("python", "console"):
        return True
    return block.lang in ("bash", "sh") and any(b.startswith("$ ") for b in block.body)


# ---------------------------------------------------------------- shell blocks


def commands(block: Block) -> list[tuple[int, str, list[tuple[int, str]]]]:
    """(offset of the `$ ` line, command, [(offset, shown output line)]) in order."""
    out = []
    for k, text in enumerate(block.body):
        if text.startswith("$ "):
            out.append((k, text[2:], []))
        elif out:
            out[-1][2].append((k, text))
    return out


def as_this_tree(command: str) -> str:
    """`schedopt` as a command word -> this interpreter's `python -m schedopt`."""
    python = f'"{sys.executable}" -m schedopt'
    return re.sub(r"(^|[|;&]\s*|\$\(\s*)schedopt\b", lambda m: m.group(1) + python, command)


def words(line: str) -> str:
    return " ".join(NUMBER.sub("#", line).split())


def numbers_agree(shown: str, got: str) -> bool:
    if re.fullmatch(r"[-+]?\d+", shown) and re.fullmatch(r"[-+]?\d+", got):
        return int(shown) == int(got)
    return math.isclose(float(shown), float(got), rel_tol=REL_TOL, abs_tol=1e-12)


def compare_output(block: Block, command: str, shown, got: str) -> None:
    lines = [t for t in got.splitlines() if t.strip()]
    expected = [(k, t) for k, t in shown if t.strip()]
    if len(lines) != len(expected):
        pytest.fail(
            f"{block.where(expected[0][0] if expected else None)}: `$ {command}` printed "
            f"{len(lines)} lines, the page shows {len(expected)}; it printed:\n{got}"
        )
    for (k, want), line in zip(expected, lines, strict=True):
        if words(want) != words(line):
            pytest.fail(
                f"{block.where(k)}: the page shows\n  {want}\nthe command printed\n  {line}"
            )
        if any(want.startswith(p) for p in block.varies):
            continue
        for a, b in zip(NUMBER.findall(want), NUMBER.findall(line), strict=True):
            if not numbers_agree(a, b):
                pytest.fail(
                    f"{block.where(k)}: number {a} on the page, {b} printed by `$ {command}`:"
                    f"\n  page:    {want}\n  printed: {line}"
                )


def run_shell(block: Block, folder: Path) -> None:
    env = dict(os.environ, SCHEDOPT_CACHE_DIR="off",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for k, command, shown in commands(block):
        done = subprocess.run(["bash", "-c", as_this_tree(command)], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        got = done.stdout if done.stdout.strip() else done.stderr
        if done.returncode != 0 and not any(t.strip() for _, t in shown):
            pytest.fail(f"{block.where(k)}: `$ {command}` exited {done.returncode}:\n{done.stderr}")
        if shown:
            compare_output(block, command, shown, got)


# ---------------------------------------------------------------- python blocks

VALUE_COMMENT = re.compile(r"^(?:([A-Za-z_]\w*)\s+)?(\[[^\]]*\]|[-+]?\d[\d.eE+-]*)")


def shown_value(comment: str):
    """(attribute or None, [numbers], prefix_only) of a comment that shows a value, else None."""
    m = VALUE_COMMENT.match(comment.strip())
    if not m:
        return None
    attribute, text = m.groups()
    rest = comment.strip()[m.end():]
    prefix = "..." in text or rest.startswith("...")
    values = [float(v) for v in NUMBER.findall(text)]
    return (attribute, values, prefix) if values else None


def comments(source_lines: list[str], first: int, last: int) -> list[tuple[int, str]]:
    """(offset, comment) of the lines first..last of a block."""
    return [(k, c) for k in range(first, last + 1) for c in _tokenize_comments(source_lines[k])]


def _tokenize_comments(line: str):
    """The comments of one source line (without their `#`)."""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line + "\n").readline):
            if tok.type == tokenize.COMMENT:
                yield tok.string[1:]
    except (tokenize.TokenError, IndentationError):
        return


def check_value(block: Block, k: int, comment: str, value) -> None:
    attribute, want, prefix = shown_value(comment)
    if attribute is not None:
        value = getattr(value, attribute)
    got = np.asarray(value, dtype=np.float64).ravel()
    if prefix:
        got = got[: len(want)]
    if got.size != len(want) or not np.allclose(got, want, rtol=REL_TOL, atol=1e-12):
        pytest.fail(f"{block.where(k)}: the page shows `#{comment}`, the code gives {got.tolist()}")


def run_python(block: Block, namespace: dict) -> None:
    source = "\n".join(block.body)
    lines = block.body
    for node in ast.parse(source).body:
        first, last = node.lineno - 1, node.end_lineno - 1
        code = ast.Module([node], type_ignores=[])
        where = f"<{block.page}:{block.line + 1 + first}>"
        try:
            if isinstance(node, ast.Expr):
                value = eval(compile(ast.Expression(node.value), where, "eval"), namespace)
            else:
                exec(compile(code, where, "exec"), namespace)
                value = None
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                    value = namespace[node.targets[0].id]
        except Exception as error:
            pytest.fail(f"{block.where(first)}: {type(error).__name__}: {error}\n  {lines[first]}")
        for k, comment in comments(lines, first, last):
            if shown_value(comment) is not None:
                check_value(block, k, comment, value)


# ---------------------------------------------------------------- the test


def test_blocks_are_found_and_markers_parse():
    readme = blocks_of(ROOT / "README.md")
    assert any(b.lang == "console" for b in readme) and any(b.lang == "python" for b in readme)
    assert shown_value(" tokens_per_step [8, 9, 11, ...]") == ("tokens_per_step", [8, 9, 11], True)
    assert shown_value(" 7.17641 nats, exact") == (None, [7.17641], False)
    assert shown_value(" int32[1000, 128]") is None and shown_value(" or 'model'") is None
    assert words("KL 7.1 nats (10 bits)") == "KL # nats (# bits)"
    assert as_this_tree("echo x | schedopt plot") == f'echo x | "{sys.executable}" -m schedopt plot'


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_blocks_run_as_written(page: Path, tmp_path: Path, monkeypatch):
    blocks = [b for b in blocks_of(page) if runnable(b)]
    for block in blocks:
        if block.not_run is not None:
            assert block.not_run, f"{block.where()}: give the reason in <!-- not run: REASON -->"
    todo = [b for b in blocks if b.not_run is None]
    if not todo:
        pytest.skip(f"{page.name}: no runnable block")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for block in todo:
        if block.lang == "python":
            run_python(block, namespace)
        else:
            run_shell(block, tmp_path)


def test_a_wrong_number_or_word_is_reported_with_page_and_line():
    block = Block("docs/x.md", 10, "console", ["$ echo", "KL 7.17641 nats"])
    shown = commands(block)[0][2]
    compare_output(block, "echo", shown, "KL 7.17642 nats\n")  # within 1e-3
    with pytest.raises(pytest.fail.Exception, match=r"docs/x.md:12 .*number 7.17641 on the page"):
        compare_output(block, "echo", shown, "KL 7.2 nats\n")
    with pytest.raises(pytest.fail.Exception, match=r"docs/x.md:12 .*the page shows"):
        compare_output(block, "echo", shown, "KL 7.17641 bits\n")
    varies = Block("docs/x.md", 10, "console", ["$ echo", "KL 7.17641 nats"], varies=("KL",))
    compare_output(varies, "echo", shown, "KL 9 nats\n")
