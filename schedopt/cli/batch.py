"""`schedopt batch` (a manifest of jobs in one batched run) and `schedopt frontier`."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from . import add_profile_argument, format_table, load_profile
from .core import BITS_PER_NAT, whole_number_arg
from .distributed import add_distributed_arguments
from .outputs import FRONTIER_FORMAT

_JOB_KEYS = ("profile", "steps", "target_kl", "name")
# A KL "reaches" a target up to float64 rounding (as in schedopt.solve).
_SLACK = 1e-12


def register(sub) -> None:
    p = sub.add_parser(
        "batch",
        help="optimize many (profile, budget) jobs from a manifest in one batched run",
        description="Read a manifest {\"jobs\": [{\"profile\": PATH, \"steps\": T} or "
        "{\"profile\": PATH, \"target_kl\": EPS}, ...]} (paths relative to the manifest), "
        "optimize every job in a few compiled, vmapped runs sharded over all devices, and "
        "write one schedule file per job and DIR/summary.csv. Jobs whose file exists are "
        "skipped, so an interrupted run resumes where it stopped. With --distributed, every "
        "process runs this command on the same files and process 0 writes the results.",
    )
    p.add_argument("manifest", metavar="MANIFEST.json", help="the jobs to run")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the results")
    p.add_argument(
        "--regularize",
        action="store_true",
        help="project every profile onto concave, non-decreasing curves first",
    )
    p.add_argument(
        "--fast",
        action="store_true",
        help="on an accelerator, solve problems with many runs of g by the optimizer alone "
        "(faster there, but not certified optimal); on CPU, and by default, every job is "
        "solved and certified by the exact solver",
    )
    add_distributed_arguments(p)
    p.set_defaults(func=run_batch)

    p = sub.add_parser(
        "frontier",
        help="exact optimal KL for every step budget up to K, beside the baselines",
        description="The exact optimal expected KL for every budget T = 1..K beside the "
        "uniform, cosine (MaskGIT), TC and DTC (Chen-Cong-Li) schedules; with --target-kl, "
        "also the fewest steps each method needs to reach it.",
    )
    add_profile_argument(p)
    p.add_argument(
        "--max-steps", required=True, type=whole_number_arg, metavar="K", help="largest T"
    )
    p.add_argument("--target-kl", type=float, metavar="EPS", help="also the fewest steps to EPS")
    p.add_argument("--out", metavar="F.json|F.csv", help="write every row (JSON or CSV)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_frontier)


# --------------------------------------------------------------------------- batch
def run_batch(args: argparse.Namespace) -> int:
    from .. import distributed
    from .distributed import start

    start(args)  # first: the multi-process runtime must come before any JAX computation
    with distributed.exit_on_error(
        "schedopt batch", "rerun the command on every process: finished jobs are kept"
    ):
        return _run_batch(args)


def _run_batch(args: argparse.Namespace) -> int:
    from .._internal import io as _io
    from .._internal import progress as _progress
    from ..distributed import broadcast, is_writer, same_everywhere
    from ..solve import optimize_batch

    # Every process reads the manifest and its profiles (and must find the same ones); only
    # process 0, the one writer, touches the output folder, so the processes need not share
    # a file system. It alone decides which jobs are finished and tells the others.
    manifest, out, writer = Path(args.manifest), Path(args.out), is_writer()
    jobs, profiles, budgets, names = same_everywhere(
        lambda: _read_jobs(manifest, args.regularize, args.quiet),
        lambda inputs: _fingerprint(inputs, (args.regularize, args.fast)),
        "the manifest and its profiles",
    )
    _refuse_overwriting_inputs(manifest, out, jobs, names)
    rows: list[dict | None] = [None] * len(jobs)
    finished = np.zeros(len(jobs), np.int32)
    if writer:
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {args.out!r} is a file; give a folder name")
        if not out.is_dir():
            _io.check_output_path(out)  # its parent folder must exist
            out.mkdir()
        for i, job in enumerate(jobs):
            done = _finished(out / names[i], profiles[i], budgets[i], job)
            if done is not None:
                finished[i] = 1
                rows[i] = _summary_row(i, job, done, names[i], "skipped")
    todo = [int(i) for i in np.nonzero(broadcast(finished) == 0)[0]]
    for group in _progress.progress(_groups(todo, profiles, budgets), description="batch",
                                    quiet=args.quiet):
        schedules = optimize_batch(
            [profiles[i] for i in group], [budgets[i] for i in group],
            certify="auto" if args.fast else True,
        )
        for i, schedule in zip(group, schedules, strict=True):
            schedule = _meet_target(jobs[i], profiles[i], schedule)
            meta = {**schedule.meta, "profile": jobs[i]["profile"], "job": i,
                    "profile_sha256": profile_digest(profiles[i])}
            if "target_kl" in jobs[i]:
                meta["target_kl"] = jobs[i]["target_kl"]
            schedule = schedule.replace(meta=meta)
            if writer:
                schedule.save(out / names[i])  # atomic: a killed run leaves no partial file
            rows[i] = _summary_row(i, jobs[i], schedule, names[i], "computed")
    if writer:
        _io.atomic_write(out / "summary.csv", _csv(rows))
        print(f"{len(todo)} computed, {len(jobs) - len(todo)} skipped -> {out / 'summary.csv'}")
    return 0


def _refuse_overwriting_inputs(manifest: Path, out: Path, jobs: list[dict],
                               names: list[str]) -> None:
    """No job's schedule file, nor summary.csv, may be the manifest or a job's profile."""
    from .outputs import refuse_overlap

    written = {f"jobs[{i}]'s schedule": out / name for i, name in enumerate(names)}
    written["the summary"] = out / "summary.csv"
    read = {"the manifest": manifest}
    read.update({f"jobs[{i}].profile": manifest.parent / job["profile"]
                 for i, job in enumerate(jobs)})
    refuse_overlap(written, read, fix='give the job another "name" or the batch another --out')


def _read_jobs(
    manifest: Path, regularize: bool, quiet: bool
) -> tuple[list, list, list[int], list[str]]:
    """(jobs, profiles, budgets T, output file names) from the manifest."""
    jobs = read_manifest(manifest)
    profiles = _load_profiles(jobs, manifest.parent, regularize, quiet)
    return jobs, profiles, _budgets(jobs, profiles), _output_names(jobs)


def _fingerprint(inputs: tuple, options: tuple) -> bytes:
    """Bytes that differ when two processes would run different jobs."""
    jobs, profiles, budgets, names = inputs
    curves = b"".join(np.asarray(p.entropy, np.float64).tobytes() for p in profiles)
    text = json.dumps([jobs, [int(t) for t in budgets], names, list(options)], sort_keys=True)
    return text.encode() + curves


def read_manifest(path: Path) -> list[dict]:
    """The manifest's jobs, each checked; a bad entry is named by its index and its fault."""
    from .._internal import io as _io

    obj = _io.read_json(path, "manifest")
    if not isinstance(obj, dict) or not isinstance(obj.get("jobs"), list) or not obj["jobs"]:
        raise ValueError(
            f"manifest {str(path)!r} must be an object with a non-empty \"jobs\" list, e.g. "
            '{"jobs": [{"profile": "p.json", "steps": 16}]}'
        )
    return [_check_job(i, job) for i, job in enumerate(obj["jobs"])]


def _check_job(i: int, job) -> dict:
    where = f"manifest entry {i} (jobs[{i}])"
    if not isinstance(job, dict):
        raise ValueError(f"{where} is {json.dumps(job)}, not an object; write "
                         '{"profile": PATH, "steps": T} or {"profile": PATH, "target_kl": EPS}')
    unknown = sorted(set(job) - set(_JOB_KEYS))
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {unknown}; the keys are {list(_JOB_KEYS)}")
    if not isinstance(job.get("profile"), str) or not job["profile"]:
        raise ValueError(f"{where} needs \"profile\": the path of a profile file")
    if ("steps" in job) == ("target_kl" in job):
        raise ValueError(f"{where} needs exactly one of \"steps\" (a budget) or \"target_kl\" "
                         "(a KL to reach in as few steps as possible)")
    if "steps" in job:
        t = job["steps"]
        if (isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t)
                or t != int(t) or t < 1):
            raise ValueError(f"{where} has steps {t!r}; give a whole number >= 1")
    else:
        eps = job["target_kl"]
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not (
            math.isfinite(eps) and eps > 0
        ):
            raise ValueError(f"{where} has target_kl {eps!r}; give a positive number of nats")
    name = job.get("name")
    if name is not None and (not isinstance(name, str) or Path(name).name != name
                             or not name.endswith(".json")):
        raise ValueError(f"{where} has name {name!r}; give a plain file name ending in .json")
    return dict(job)


def _load_profiles(jobs: list[dict], root: Path, regularize: bool, quiet: bool) -> list:
    from .._internal import progress as _progress

    cache: dict[Path, object] = {}
    profiles = []
    for i, job in _progress.progress(list(enumerate(jobs)), description="loading profiles",
                                     quiet=quiet):
        path = (root / job["profile"]).resolve()
        if path not in cache:
            try:
                cache[path] = load_profile(str(path), regularize)
            except ValueError as e:
                raise ValueError(f"manifest entry {i} (jobs[{i}]): {e}") from None
        profiles.append(cache[path])
    return profiles


def _budgets(jobs: list[dict], profiles: list) -> list[int]:
    """Each job's T; a target_kl job gets the fewest steps whose optimum reaches it."""
    from ..solve import fewest_steps_optimal

    budgets = []
    for i, (job, profile) in enumerate(zip(jobs, profiles, strict=True)):
        if "steps" in job:
            if int(job["steps"]) > profile.n:
                raise ValueError(
                    f"manifest entry {i} (jobs[{i}]) has steps {job['steps']} but its profile "
                    f"has n = {profile.n} tokens; give at most {profile.n} steps"
                )
            budgets.append(int(job["steps"]))
        else:
            budgets.append(fewest_steps_optimal(profile, float(job["target_kl"])))
    return budgets


def _output_names(jobs: list[dict]) -> list[str]:
    names, seen = [], {}
    for i, job in enumerate(jobs):
        stem = Path(job["profile"]).stem
        default = (f"{stem}.T{int(job['steps'])}.json" if "steps" in job
                   else f"{stem}.kl{job['target_kl']:g}.json")
        name = job.get("name") or default
        if name in seen:
            raise ValueError(
                f"manifest entries {seen[name]} and {i} would both write {name!r}; give one of "
                'them a distinct "name" (or remove the duplicate job)'
            )
        seen[name] = i
        names.append(name)
    return names


def profile_digest(profile) -> str:
    """SHA-256 of a profile's curve as float64 bytes: results are keyed by content.

    A rerun recomputes a job whose profile file changed, even when its name and n did not
    (the curve after --regularize is what is hashed, so the flag counts too).
    """
    import hashlib

    data = np.ascontiguousarray(np.asarray(profile.entropy, dtype=np.float64))
    return hashlib.sha256(data.tobytes()).hexdigest()


def _finished(path: Path, profile, steps: int, job: dict):
    """The schedule already written for this job, or None when it must be (re)computed."""
    from ..schedule import Schedule

    if not path.is_file():
        return None
    try:
        schedule = Schedule.load(path, profile=profile)
    except ValueError:
        return None  # a file from another run or another profile: recompute it
    meta = schedule.meta
    if meta.get("profile_sha256") != profile_digest(profile):
        return None  # written for other content (or by an older schedopt)
    if meta.get("target_kl") != job.get("target_kl"):
        return None
    return schedule if schedule.steps == steps else None


def _groups(todo: list[int], profiles: list, budgets: list[int]) -> list[list[int]]:
    """Jobs by (n, budget bucket): each group is one `optimize_batch` call and one save."""
    from ..solve import bucket

    groups: dict[tuple[int, int], list[int]] = {}
    for i in todo:
        groups.setdefault((profiles[i].n, bucket(budgets[i])), []).append(i)
    return list(groups.values())


def _meet_target(job: dict, profile, schedule):
    """For a target_kl job, the exact DP's schedule if the optimizer's misses the target."""
    from ..solve import optimal_schedule

    eps = job.get("target_kl")
    if eps is None or float(schedule.expected_kl) <= eps * (1 + _SLACK) + _SLACK:
        return schedule
    return optimal_schedule(profile, schedule.steps)


def _summary_row(i: int, job: dict, schedule, name: str, status: str) -> dict:
    kl = float(schedule.expected_kl)
    return {
        "job": i,
        "profile": job["profile"],
        "steps": schedule.steps,
        "target_kl": job.get("target_kl", ""),
        "expected_kl": kl,
        "expected_kl_bits": kl * BITS_PER_NAT,
        "method": schedule.method,
        "certified": bool(schedule.certified),
        "schedule": name,
        "status": status,
    }


def _csv(rows: list) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    return buffer.getvalue()


# --------------------------------------------------------------------------- frontier
def run_frontier(args: argparse.Namespace) -> int:
    from .._internal import io as _io
    from .._internal.checks import check_steps

    if args.out is not None:
        if Path(args.out).suffix.lower() not in (".json", ".csv"):
            raise ValueError(f"cannot tell the format of --out {args.out!r}; name it .json or .csv")
        _io.check_output_path(args.out)
    if args.target_kl is not None and not (math.isfinite(args.target_kl) and args.target_kl > 0):
        raise ValueError(f"--target-kl must be a positive number of nats, got {args.target_kl}")
    from . import blockfiles

    if blockfiles.is_block_profiles(args.profile):
        return blockfiles.frontier(args)
    profile = load_profile(args.profile, args.regularize)
    max_steps = check_steps(args.max_steps, profile.n, name="--max-steps")
    table = frontier_table(profile, max_steps)
    result = {**_io.header(FRONTIER_FORMAT, 1), "n": profile.n,
              "max_steps": max_steps, "unit": "nats", **table}
    if args.target_kl is not None:
        result["target_kl"] = args.target_kl
        result["fewest_steps"] = fewest_steps(profile, args.target_kl)
    if args.out is not None:
        if Path(args.out).suffix.lower() == ".json":
            _io.write_json(args.out, result)
        else:
            _io.atomic_write(args.out, _frontier_csv(result))
    if args.json:
        print(_io.dumps(result))
        return 0
    print(f"n = {profile.n} tokens, budgets T = 1..{max_steps}, expected KL in nats")
    shown = sorted({t for t in range(1, max_steps + 1) if max_steps <= 32 or t & (t - 1) == 0}
                   | {max_steps})
    rows = [{"steps": t, **{k: result[f"{k}_kl"][t - 1] for k in _METHODS}} for t in shown]
    for row in rows:
        row["ratio"] = row["uniform"] / row["optimal"] if row["optimal"] > 0 else None
    print(format_table(rows, ("steps", *_METHODS, "ratio"),
                       ("T", *(_SHORT.get(k, k) for k in _METHODS), "uniform / optimal")))
    if args.target_kl is not None:
        print(f"\nfewest steps to reach expected KL <= {args.target_kl:g} nats")
        fewest = [{"method": m, "steps": s} for m, s in result["fewest_steps"].items()]
        print(format_table(fewest, ("method", "steps"), ("method", "steps")))
    if args.out is not None:
        print(f"all {max_steps} rows -> {args.out}")
    return 0


_METHODS = ("optimal", "uniform", "cosine", "eds", "pyramid", "tc", "dtc")
_SHORT = {"eds": "EDS", "tc": "TC", "dtc": "DTC"}  # column heads of the frontier table


def frontier_table(profile, max_steps: int) -> dict:
    """Lists over T = 1..K: "steps", "<method>_kl" for each of `_METHODS`, and
    "<method>_steps" for the methods that may use fewer steps than the budget
    (`schedopt.solve.WITHIN_BUDGET`: pyramid, TC, DTC)."""
    from ..solve import WITHIN_BUDGET, budget_table

    table = {"steps": list(range(1, max_steps + 1))}
    for name, (steps, kl) in budget_table(profile, max_steps).items():
        table[f"{name}_kl"] = [float(v) for v in kl]
        if name in WITHIN_BUDGET:
            table[f"{name}_steps"] = [int(t) for t in steps]
    return table


def fewest_steps(profile, target_kl: float) -> dict[str, int]:
    """The fewest steps each method but the optimizer needs for a KL <= target_kl (nats)."""
    from ..solve import fewest_steps as fewest

    return fewest(profile, target_kl, methods=_METHODS)


def _frontier_csv(result: dict) -> str:
    info = {k: result[k] for k in ("n", "max_steps", "unit")}
    if "target_kl" in result:
        info["target_kl"] = result["target_kl"]
        info.update({f"fewest_{k}": v for k, v in result["fewest_steps"].items()})
    columns = ["steps", *(f"{k}_kl" for k in _METHODS), "pyramid_steps", "tc_steps",
               "dtc_steps"]
    lines = [f"# {FRONTIER_FORMAT} " + " ".join(f"{k}={v}" for k, v in info.items()),
             ",".join(columns)]
    for i in range(result["max_steps"]):
        lines.append(",".join(repr(result[c][i]) for c in columns))
    return "\n".join(lines) + "\n"
