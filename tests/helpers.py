"""Independent routes for the tests: brute-force enumeration and closed forms.

Nothing here calls schedopt; each function follows docs/theory.md's definitions directly.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def entropy_nats(p: np.ndarray) -> float:
    p = np.asarray(p, dtype=np.float64).ravel()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def entropy_curve_from_table(joint: np.ndarray) -> np.ndarray:
    """H_j = average over j-subsets S of H(X_S), by marginalising an explicit joint table."""
    n = joint.ndim
    curve = [0.0]
    for j in range(1, n + 1):
        values = []
        for subset in itertools.combinations(range(n), j):
            others = tuple(i for i in range(n) if i not in subset)
            values.append(entropy_nats(joint.sum(axis=others)))
        curve.append(float(np.mean(values)))
    return np.asarray(curve)


def random_table(rng: np.random.Generator, n: int, vocab: int, concentration: float = 0.3):
    """A random joint law on vocab^n with strong correlations (a sparse Dirichlet draw)."""
    return rng.dirichlet(np.full(vocab**n, concentration)).reshape((vocab,) * n)


def brute_force_expected_kl(joint: np.ndarray, tokens_per_step) -> float:
    """E over uniformly random ordered partitions of KL(mu || nu_partition) (theory §1)."""
    n, vocab = joint.ndim, joint.shape[0]
    sizes = list(tokens_per_step)
    states = list(itertools.product(range(vocab), repeat=n))
    total, count = 0.0, 0
    for order in itertools.permutations(range(n)):
        # Only the set of positions in each block matters; skip orderings within blocks.
        bounds = np.cumsum([0] + sizes)
        blocks = [order[bounds[k] : bounds[k + 1]] for k in range(len(sizes))]
        if any(list(b) != sorted(b) for b in blocks):
            continue
        count += 1
        kl = 0.0
        for x in states:
            p = joint[x]
            if p == 0:
                continue
            log_q = 0.0
            revealed: tuple[int, ...] = ()
            for block in blocks:
                for i in block:
                    log_q += math.log(_conditional(joint, x, i, revealed))
                revealed = revealed + tuple(block)
            kl += p * (math.log(p) - log_q)
        total += kl
    return total / count


def _conditional(joint: np.ndarray, x, i: int, revealed: tuple[int, ...]) -> float:
    """mu(x_i | x_revealed) from the table."""
    n = joint.ndim
    keep = tuple(sorted(set(revealed) | {i}))
    marg = joint.sum(axis=tuple(k for k in range(n) if k not in keep))
    num = marg[tuple(x[k] for k in keep)]
    rest = tuple(sorted(revealed))
    den_marg = marg.sum(axis=keep.index(i))
    den = den_marg[tuple(x[k] for k in rest)] if rest else den_marg
    return float(num / den)


def compositions(n: int):
    """Every schedule of n tokens: all ordered lists of positive integers summing to n."""
    for cuts in itertools.product([False, True], repeat=n - 1):
        sizes, size = [], 1
        for cut in cuts:
            if cut:
                sizes.append(size)
                size = 1
            else:
                size += 1
        sizes.append(size)
        yield sizes


def kl_from_curve(entropy: np.ndarray, tokens_per_step) -> float:
    """theory §3's first form, as a plain loop."""
    g = np.diff(entropy)
    kl, start = 0.0, 0
    for s in tokens_per_step:
        for j in range(start, start + s):
            kl += g[start] - g[j]
        start += s
    return kl


def brute_force_optimum(entropy: np.ndarray, steps: int) -> float:
    """The least KL over every T-step schedule, by enumeration (small n only)."""
    n = len(entropy) - 1
    return min(kl_from_curve(entropy, s) for s in compositions(n) if len(s) == steps)


def markov_entropy_curve(transition: np.ndarray, n: int) -> np.ndarray:
    """theory §8's closed form for a stationary Markov chain."""
    transition = np.asarray(transition, dtype=np.float64)
    vals, vecs = np.linalg.eig(transition.T)
    pi = np.real(vecs[:, np.argmin(np.abs(vals - 1))])
    pi = pi / pi.sum()
    h, power = [], np.eye(len(pi))
    for _ in range(n):
        power = power @ transition
        h.append(sum(pi[a] * entropy_nats(power[a]) for a in range(len(pi))))
    curve = [0.0, entropy_nats(pi)]
    for j in range(2, n + 1):
        curve.append(
            entropy_nats(pi)
            + sum(
                (n - d) * math.comb(n - d - 1, j - 2) / math.comb(n, j) * h[d - 1]
                for d in range(1, n - j + 2)
            )
        )
    return np.asarray(curve)


def parity_curve(n: int) -> np.ndarray:
    """Uniform on n bits with even parity: H_j = j log 2 for j < n, H_n = (n - 1) log 2."""
    return np.asarray([j * math.log(2) for j in range(n)] + [(n - 1) * math.log(2)])


def code_curve(n: int, k: int, q: int) -> np.ndarray:
    """A k-dimensional MDS code over F_q: H_j = min(j, k) log q."""
    return np.asarray([min(j, k) * math.log(q) for j in range(n + 1)])


def clustered_curve(n: int, clusters: int = 4, noise: float = 0.05) -> np.ndarray:
    """A mixture-like curve: a sharp early drop (the cluster is found), then nearly flat."""
    g = noise * math.log(2) + math.log(clusters) * np.exp(-np.arange(n) / 1.5) / 3
    return np.concatenate([[0.0], np.cumsum(g)])


def quadratic_dp_optimum(entropy: np.ndarray, steps: int) -> float:
    """The least KL of any T-step schedule by the plain O(T n^2) DP over all (a, b) blocks
    (theory §4's recursion, no Monge shortcut and no grid compression)."""
    entropy = np.asarray(entropy, dtype=np.float64)
    n = entropy.size - 1
    g = np.diff(entropy)
    a = np.arange(n + 1)[:, None]
    b = np.arange(n + 1)[None, :]
    cost = np.where(a < b, (b - a) * g[np.minimum(a, n - 1)] - (entropy[b] - entropy[a]), np.inf)
    value = np.full(n + 1, np.inf)
    value[0] = 0.0
    for _ in range(steps):
        value = np.min(value[:, None] + cost, axis=0)
    return float(value[n])


def rough_curve(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """g (float64[n]) of the kinds estimated curves have: non-increasing with flat runs.

    "noisy": a smooth decreasing curve plus noise, projected by PAV (an isotonic fit);
    "steps": a step function with a few levels; "plateau": a steep start, then one long
    plateau with tiny drops; "constant": a flat curve (every schedule has KL 0).
    """
    j = np.arange(n)
    if kind == "noisy":
        y = rng.uniform(0.5, 2) / (1 + j / rng.uniform(1, n)) + rng.normal(size=n) * 0.02
        return np.maximum(_pav_nonincreasing(y), 0.0)
    if kind == "steps":
        levels = np.sort(rng.uniform(0, 2, rng.integers(1, 8)))[::-1]
        cuts = np.sort(rng.choice(np.arange(1, n), size=min(levels.size - 1, n - 1),
                                  replace=False))
        return levels[np.searchsorted(cuts, j, side="right")]
    if kind == "plateau":
        g = np.full(n, 0.5)
        head = min(n, int(rng.integers(1, 5)))
        g[:head] += np.sort(rng.uniform(0, 3, head))[::-1]
        for drop in rng.choice(np.arange(1, n), size=min(3, n - 1), replace=False):
            g[drop:] -= 1e-6
        return g
    return np.full(n, rng.uniform(0, 2))


def _pav_nonincreasing(y: np.ndarray) -> np.ndarray:
    """Least-squares non-increasing fit by pool-adjacent-violators (unweighted)."""
    blocks: list[list[float]] = []  # [mean, count]
    for v in y:
        blocks.append([float(v), 1])
        while len(blocks) > 1 and blocks[-1][0] > blocks[-2][0]:
            m2, c2 = blocks.pop()
            m1, c1 = blocks[-1]
            blocks[-1] = [(m1 * c1 + m2 * c2) / (c1 + c2), c1 + c2]
    return np.concatenate([np.full(c, m) for m, c in blocks])


def gamma_table(seed: int, n: int, v: int) -> np.ndarray:
    """A random joint law on v^n (independent Gamma(0.4) weights, normalised)."""
    p = np.random.default_rng(seed).gamma(0.4, size=(v,) * n)
    return p / p.sum()


def subset_entropy(table: np.ndarray, subset) -> float:
    """H(X_S) in nats for the positions in `subset`, by marginalising the joint table."""
    subset = tuple(sorted(subset))
    if not subset:
        return 0.0
    others = tuple(i for i in range(table.ndim) if i not in subset)
    m = table.sum(axis=others) if others else table
    m = m[m > 0]
    return float(-np.sum(m * np.log(m)))


def state_conditional(joint, state, i):
    """p(x_i = . | state) from the table, state a dict position -> token."""
    n = joint.ndim
    index = tuple(state.get(j, slice(None)) for j in range(n))
    sub = joint[index]  # axes: the unrevealed positions, in order
    free = [j for j in range(n) if j not in state]
    marg = sub.sum(axis=tuple(a for a, j in enumerate(free) if j != i))
    return marg / marg.sum()


def _reference_pick(rule, joint, state, count):
    """The positions one step of `rule` reveals at `state`, following theory §13 directly."""
    n = joint.ndim
    masked = [i for i in range(n) if i not in state]
    if rule.block_length is not None:
        first = min(i // rule.block_length for i in masked)
        masked = [i for i in masked if i // rule.block_length == first]
    cond = {i: state_conditional(joint, state, i) for i in masked}
    ent = {i: -sum(p * math.log(p) for p in cond[i] if p > 0) for i in masked}
    top = {i: sorted(cond[i], reverse=True) for i in masked}
    score = {
        "confidence": lambda i: top[i][0], "threshold": lambda i: top[i][0],
        "margin": lambda i: top[i][0] - top[i][1],
        "entropy": lambda i: -ent[i], "entropy-bound": lambda i: -ent[i],
        "left-to-right": lambda i: -i,
    }[rule.name]
    ranked = sorted(masked, key=lambda i: (-score(i), i))
    if rule.name == "threshold":
        k = max(1, sum(top[i][0] > rule.tau for i in masked))
    elif rule.name == "entropy-bound":
        k = 1
        while k < len(ranked):
            hs = [ent[i] for i in ranked[:k + 1]]
            if sum(hs) - max(hs) > rule.gamma:
                break
            k += 1
    else:
        k = min(count, len(ranked))
    return ranked[:k], cond


def sampler_tree(rule, joint: np.ndarray, counts) -> dict:
    """{output tuple: (probability under the state-dependent sampler `rule`, steps)}, by
    enumerating its trajectories on the table law `joint` (counts: tokens per step, or None
    for the adaptive rules; `rule` needs only .name, .block_length, .tau, .gamma)."""
    n, out = joint.ndim, {}

    def visit(state, prob, step):
        if len(state) == n:
            key = tuple(state[i] for i in range(n))
            assert key not in out  # each output is reached by one trajectory only
            out[key] = (prob, step)
            return
        count = None if counts is None else counts[step]
        pick, cond = _reference_pick(rule, joint, state, count)
        for values in itertools.product(range(joint.shape[0]), repeat=len(pick)):
            q = prob * math.prod(cond[i][v] for i, v in zip(pick, values, strict=True))
            if q > 0:
                visit(state | dict(zip(pick, values, strict=True)), q, step + 1)

    visit({}, 1.0, 0)
    return out
