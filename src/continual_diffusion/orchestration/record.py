"""The record of the default run: what HEAD produces, on which platform, and a check of a rerun against it.

``reports/record/<profile>.json`` (committed) holds, from one full ``make run`` of the committed code:
  platform   CPU model, generation and ISA flags, the ISA caps the jobs ran under, torch / MKL / oneDNN / numpy /
             Python versions (``platform_info``); results are bit-identical only where the
             ``bit_identity_key`` of two platforms is equal
  outputs    the md5 of every stage output, as ``dvc.lock`` records it
  files      the md5 of every file of every stage output, by stage (``output_files``): what a rerun of part
             of the pipeline (``check(partial=True)``: a few chains, as CI runs) is compared with, file by file
  numbers    every reported number: for each benchmark, method and metric key of the summary, P, its
             minimum, A, F and the early-concept averages (mean over seeds), and R[t, i]

``check`` compares a rerun with the record, stage by stage in pipeline order:
  * same ``bit_identity_key``: every stage output must have the recorded md5 (bit for bit);
  * another platform: every summary number (P, A, F, early averages) must be within its tolerance,
        |x_rerun - x_record| <= TOLERANCES[metric kind]   (absolute),
    and the cells R[t, i] that differ are counted (a chain on another platform is another random draw
    of training: single cells may move far),
    and the first stage whose outputs differ is named either way, so a drift is located at its source,
    with the first differing file of that stage.

``check(partial=True)`` checks a rerun of part of the pipeline (``snakemake --config 'train={methods:
[clora, lora_sequential]}'``: those chains, with the data, base model and evaluator they read): only the
files on disk are compared, a recorded file that is absent counts as not rerun, a file that the record
does not know is a difference; the report stage (which summarises whichever methods ran) and dvc.lock
(not rewritten by a run with overrides) are left out, and only the summary numbers of the benchmark and
method pairs that ran are held to the tolerances.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import re
from pathlib import Path

from continual_diffusion.orchestration.pipeline import STAGES
from continual_diffusion.utils import layout
from continual_diffusion.utils.config import ISA_ENVIRONMENT, isa_environment
from continual_diffusion.utils.errors import PipelineError
from continual_diffusion.utils.io import json_text, write_text_atomic

RECORD_DIR = Path("reports/record")
ISA_CAPS = tuple(ISA_ENVIRONMENT["avx2"])  # the variables cpu_isa sets (config.ISA_ENVIRONMENT)
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
CAPPED_FLAGS = ("sse4_2", "avx", "avx2", "fma")  # the flags the AVX2-capped kernels can use
# /proc/cpuinfo fields naming the CPU's generation -> their keys in cpu_description (never in the key)
CPU_GENERATION_FIELDS = {"vendor_id": "vendor", "cpu family": "family", "model": "model_number", "stepping": "stepping"}
SUMMARY_STATS = ("plasticity", "plasticity_min", "final", "forgetting", "early_just_learned", "early_final")

# Absolute tolerances of a rerun's summary numbers on another platform, by metric key: about three times
# the seed-to-seed std of plasticity P on the miniature (0.04-0.06 closed accuracy over seeds 0-4). Keys not
# listed use "default".
TOLERANCES = {
    "accuracy": 0.15, "accuracy_closed": 0.15, "other_rate": 0.15,
    "image_similarity": 0.05, "mmd": 0.02, "default": 0.15,
}


def record_path(profile: str) -> Path:
    return RECORD_DIR / f"{profile}.json"


def _torch_build() -> dict:
    import torch

    text = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version ([\w.\-]+)", text)
    onednn = re.search(r"MKL-DNN v([\d.]+)", text)
    return {
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl": mkl.group(1) if mkl else None,
        "onednn": onednn.group(1) if onednn else None,
    }


def cpu_description() -> dict:
    """CPU model name and the ISA flags that decide which kernels torch, MKL and oneDNN pick; also the vendor
    and the generation (/proc/cpuinfo's family, model number and stepping), which a VM's generic model name
    ("AMD EPYC", "Intel(R) Xeon(R) Processor") hides. Only the name and the flags enter ``bit_identity_key``."""
    model, flags, generation = platform.processor() or platform.machine(), set(), {}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                model = value.strip()
            elif key in CPU_GENERATION_FIELDS:
                generation.setdefault(CPU_GENERATION_FIELDS[key], value.strip())
            elif key == "flags":
                flags = set(value.split())
                break
    return {"model": model, "machine": platform.machine(), "isa_flags": [f for f in CPU_FLAGS if f in flags],
            **generation}


def cpu_generation(cpu: dict) -> str | None:
    """"AuthenticAMD family 25 model 17 stepping 1" from a ``cpu_description``; None where it has none."""
    if "family" not in cpu:
        return None
    return (f"{cpu.get('vendor', '?')} family {cpu['family']} model {cpu.get('model_number', '?')} "
            f"stepping {cpu.get('stepping', '?')}")


def platform_info(cpu_isa: str) -> dict:
    """Where a run happened, and the part of it that decides bit-identity (``bit_identity_key``); the
    jobs' ISA caps are those of params' ``cpu_isa`` (config.isa_environment, set by the Snakefile)."""
    import numpy

    caps = isa_environment(cpu_isa)
    info = {
        "cpu": cpu_description(),
        "cpu_isa": cpu_isa,
        "isa_caps": {k: caps.get(k) for k in ISA_CAPS},
        **_torch_build(),
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }
    info["bit_identity_key"] = bit_identity_key(info)
    return info


def bit_identity_key(info: dict) -> str:
    """Runs with equal keys give bit-identical CPU results: the CPU model and ISA flags, the kernels' ISA
    (capped, or the CPU's own when uncapped) and the library versions that implement them."""
    caps = info["isa_caps"]
    isa = caps.get("ATEN_CPU_CAPABILITY") or info["torch_cpu_capability"]
    if caps.get("ATEN_CPU_CAPABILITY") and "avx2" not in info["cpu"]["isa_flags"]:
        isa = "below-cap"  # a CPU without AVX2 cannot run the capped code path
    onednn_isa = caps.get("ONEDNN_MAX_CPU_ISA") or "+".join(info["cpu"]["isa_flags"])
    mkl_path = caps.get("MKL_CBWR") or "+".join(info["cpu"]["isa_flags"])
    if info.get("cpu_isa") == "portable" and isa == "avx2":
        # cpu_isa: portable leaves no vendor- or model-dependent step on the pipeline's path (MKL's COMPATIBLE
        # branch, exact square roots: numerics.py, studies/results/cross_vendor.md): any x86-64 CPU with AVX2
        return (f"portable|{info['cpu']['machine']}|aten={isa}|onednn={onednn_isa}|mkl={mkl_path}"
                f"|torch={info['torch']}|mkl_version={info['mkl']}|onednn_version={info['onednn']}")
    # The CPU model is part of the key: under the same caps an AMD EPYC and an Intel Xeon gave different bits
    # from the evaluator on (studies/results/record_check_epyc_vs_xeon.txt), so equal caps are not enough.
    # A VM may show a generic model name ("Intel(R) Xeon(R) Processor") for different CPUs: the ISA flags too,
    # up to the cap: under the caps no library runs AVX-512 or AMX code, and an AMD EPYC with AVX-512 (Zen 4)
    # gave the bits of one without it (studies/results/cross_isa_tiny_epyc_zen4.json, a full `make run`).
    flags = info["cpu"]["isa_flags"]
    if caps.get("ATEN_CPU_CAPABILITY") and caps.get("ONEDNN_MAX_CPU_ISA"):
        flags = [f for f in flags if f in CAPPED_FLAGS]
    return (f"{info['cpu']['model']}|{info['cpu']['machine']}|{'+'.join(flags)}|aten={isa}"
            f"|onednn={onednn_isa}|mkl={mkl_path}|torch={info['torch']}|mkl_version={info['mkl']}"
            f"|onednn_version={info['onednn']}")


def lock_outputs(lock_path: Path = Path("dvc.lock")) -> dict:
    """{stage: {output path: md5}} from a dvc.lock."""
    import yaml

    if not Path(lock_path).exists():
        raise PipelineError(f"{lock_path}: not found (run the pipeline first)")
    lock = yaml.safe_load(Path(lock_path).read_text()) or {}
    return {name: {o["path"]: o.get("md5") for o in stage.get("outs", [])}
            for name, stage in (lock.get("stages") or {}).items()}


SKIPPED_FILES = frozenset({".snakemake_timestamp"})  # Snakemake's bookkeeping in directory outputs (empty)
PARTIAL_SKIPPED_STAGES = frozenset({"report"})  # a partial run's report summarises the methods that ran


def _md5(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def output_files(profile: str) -> dict[str, dict[str, str]]:
    """{stage: {file path: md5}} of every file under every stage output present on disk, stages in
    pipeline order, paths sorted (POSIX, relative to the project root)."""
    files: dict[str, dict[str, str]] = {}
    for stage in STAGES:
        entries: dict[str, str] = {}
        for out in stage.outs_for(profile):
            root = Path(out)
            paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
            for path in paths:
                if path.name not in SKIPPED_FILES:
                    entries[path.as_posix()] = _md5(path)
        files[stage.name] = entries
    return files


def compare_files(recorded: dict, current: dict, partial: bool) -> dict:
    """File-by-file comparison in pipeline order: ``first`` (stage, path, what) of the first difference,
    ``differing`` (count), ``compared`` and ``not_rerun`` per stage. Partial: recorded files absent from
    disk are not rerun (no difference) and the report stage is skipped."""
    first, differing, compared, not_rerun = None, 0, {}, {}
    for stage in STAGES:
        if partial and stage.name in PARTIAL_SKIPPED_STAGES:
            continue
        rec, cur = recorded.get(stage.name, {}), current.get(stage.name, {})
        compared[stage.name] = sum(1 for path in cur if path in rec)
        not_rerun[stage.name] = sum(1 for path in rec if path not in cur)
        for path in sorted(set(rec) | set(cur)):
            if path not in cur:
                if partial:
                    continue
                what = "missing from the rerun"
            elif path not in rec:
                what = "not in the record"
            elif rec[path] != cur[path]:
                what = "content differs"
            else:
                continue
            differing += 1
            if first is None:
                first = (stage.name, path, what)
    return {"first": first, "differing": differing, "compared": compared, "not_rerun": not_rerun}


def summary_numbers(summary: dict) -> dict:
    """Every reported number of a summary.json, flattened to ``benchmark/method/key/statistic`` ->
    value (None where undefined); R[t, i] as ``.../R[t,i]``."""
    numbers: dict = {}
    for b, methods in summary.items():
        for m, entry in methods.items():
            for key, stats in entry.items():
                if key == "seeds" or not isinstance(stats, dict):
                    continue
                for stat in SUMMARY_STATS:
                    if stat in stats:
                        numbers[f"{b}/{m}/{key}/{stat}"] = stats[stat]["mean"]
                for t, row in enumerate(stats.get("R_mean", []), start=1):
                    for i, value in enumerate(row, start=1):
                        if value is not None:
                            numbers[f"{b}/{m}/{key}/R[{t},{i}]"] = value
    return numbers


def build_record(profile: str, cpu_isa: str, lock_path: Path = Path("dvc.lock")) -> dict:
    summary_path = layout.reports_dir(profile, "summary", "summary.json")
    if not summary_path.exists():
        raise PipelineError(f"{summary_path}: not found (run the pipeline first)")
    return {
        "profile": profile,
        "platform": platform_info(cpu_isa),
        "outputs": lock_outputs(lock_path),
        "files": output_files(profile),
        "numbers": summary_numbers(json.loads(summary_path.read_text())),
    }


def write_record(profile: str, cpu_isa: str, lock_path: Path = Path("dvc.lock")) -> Path:
    path = record_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json_text(build_record(profile, cpu_isa, lock_path)))
    return path


def tolerance(number_key: str) -> float:
    metric = number_key.split("/")[2]
    return TOLERANCES.get(metric, TOLERANCES["default"])


def first_differing_stage(recorded: dict, current: dict) -> tuple[str, str] | None:
    """(stage, output) of the first stage in pipeline order whose output md5 differs, or None."""
    for stage in STAGES:
        rec, cur = recorded.get(stage.name, {}), current.get(stage.name, {})
        for out in sorted(set(rec) | set(cur)):
            if rec.get(out) != cur.get(out):
                return stage.name, out
    return None


def is_cell(number_key: str) -> bool:
    """R[t, i] of one chain: reported, but on another platform a chain is another random draw of training,
    so single cells are counted (``cells_differing``), not held to a tolerance."""
    return "/R[" in number_key


def _chain_group(number_key: str) -> str:
    return "/".join(number_key.split("/")[:2])  # benchmark/method


def compare_numbers(recorded: dict, current: dict, partial: bool = False) -> list[str]:
    """One line per summary number outside its tolerance (or present on one side only). Partial: only
    the numbers of the benchmark/method pairs that the rerun reports."""
    if partial:
        ran = {_chain_group(k) for k in current}
        recorded = {k: v for k, v in recorded.items() if _chain_group(k) in ran}
    problems = []
    for key in sorted(k for k in set(recorded) | set(current) if not is_cell(k)):
        a, b = recorded.get(key), current.get(key)
        if a is None and b is None:
            continue
        if a is None or b is None:
            problems.append(f"{key}: recorded {a}, rerun {b}")
        elif not (math.isfinite(a) and math.isfinite(b)) or abs(a - b) > tolerance(key):
            problems.append(f"{key}: recorded {a:.4f}, rerun {b:.4f} (tolerance {tolerance(key)})")
    return problems


def check(profile: str, cpu_isa: str, lock_path: Path = Path("dvc.lock"), record: Path | None = None,
          partial: bool = False) -> dict:
    """Compare the current outputs and numbers with the record (module docstring); returns a report with
    ``ok``, ``mode`` (bit-identity | tolerance), ``partial``, ``first_difference`` (stage, output and the
    first differing file), ``files_compared`` / ``files_not_rerun`` per stage and ``problems``."""
    record = Path(record or record_path(profile))
    if not record.exists():
        raise PipelineError(f"{record}: no record (write one with `cdiff record --write` after `make run`)")
    recorded = json.loads(record.read_text())
    if "files" not in recorded:
        raise PipelineError(f"{record}: no per-file digests (written by an older version: rewrite it with "
                            "`cdiff record --write` after `make run`)")
    summary_path = layout.reports_dir(profile, "summary", "summary.json")
    if not summary_path.exists():
        raise PipelineError(f"{summary_path}: not found (run the pipeline first)")
    current_platform = platform_info(cpu_isa)
    current_numbers = summary_numbers(json.loads(summary_path.read_text()))
    same_platform = recorded["platform"]["bit_identity_key"] == current_platform["bit_identity_key"]
    files = compare_files(recorded["files"], output_files(profile), partial)
    first = None  # the earliest difference in pipeline order: a file, or a dvc.lock entry whose files agree
    if files["first"] is not None:
        stage, path, what = files["first"]
        output = next(o for o in _stage(stage).outs_for(profile) if path == o or path.startswith(o + "/"))
        first = {"stage": stage, "output": output, "file": path, "file_difference": what}
    if not partial:  # a run with overrides does not rewrite dvc.lock
        in_lock = first_differing_stage(recorded["outputs"], lock_outputs(lock_path))
        if in_lock is not None and (first is None or _stage_index(in_lock[0]) < _stage_index(first["stage"])):
            first = {"stage": in_lock[0], "output": in_lock[1]}
    problems = compare_numbers(recorded["numbers"], current_numbers, partial)
    if partial and sum(files["compared"].values()) == 0:
        problems.insert(0, "no output file of the record is on disk: nothing was rerun")
    if same_platform and first is not None:
        where = f" (first file: {first['file']}, {first['file_difference']})" if "file" in first else ""
        problems.insert(0, f"stage {first['stage']}: output {first['output']} differs from the record{where}; "
                           f"{files['differing']} file(s) differ (same platform: bit-identity expected)")
    return {
        "ok": not problems,
        "mode": "bit-identity" if same_platform else "tolerance",
        "partial": partial,
        "recorded_platform": recorded["platform"]["bit_identity_key"],
        "current_platform": current_platform["bit_identity_key"],
        "recorded_cpu": cpu_generation(recorded["platform"]["cpu"]),
        "current_cpu": cpu_generation(current_platform["cpu"]),
        "first_difference": first,
        "files_compared": files["compared"],
        "files_not_rerun": files["not_rerun"],
        "files_differing": files["differing"],
        "numbers_compared": sum(1 for k in set(current_numbers) if not is_cell(k)) if partial else
        sum(1 for k in set(recorded["numbers"]) | set(current_numbers) if not is_cell(k)),
        "cells_differing": sum(1 for k in set(recorded["numbers"]) | set(current_numbers)
                               if is_cell(k) and (not partial or k in current_numbers)
                               and recorded["numbers"].get(k) != current_numbers.get(k)),
        "problems": problems,
    }


def _stage(name: str):
    return next(stage for stage in STAGES if stage.name == name)


def _stage_index(name: str) -> int:
    return [stage.name for stage in STAGES].index(name)


def check_text(report: dict) -> str:
    """The check as lines for a terminal or a CI log."""
    scope = "partial rerun" if report.get("partial") else "full run"
    lines = [f"record check ({report['mode']}, {scope}): {'OK' if report['ok'] else 'DIFFERS'}",
             f"  recorded platform: {report['recorded_platform']}",
             f"  this platform:     {report['current_platform']}"]
    if report.get("current_cpu"):
        lines.append(f"  CPU generation: recorded {report.get('recorded_cpu') or 'not recorded'}, "
                     f"this {report['current_cpu']}")
    first = report["first_difference"]
    if first:
        where = f", first file {first['file']}: {first['file_difference']}" if "file" in first else ""
        lines.append(f"  first stage whose outputs differ: {first['stage']} ({first['output']}{where})")
    else:
        lines.append("  every " + ("rerun file" if report.get("partial") else "stage output")
                     + " is bit-identical to the record")
    lines.append("  files compared: " + ", ".join(
        f"{stage} {n}" + (f" (+{report['files_not_rerun'][stage]} not rerun)" if report["files_not_rerun"][stage] else "")
        for stage, n in report["files_compared"].items()) + f"; differing: {report['files_differing']}")
    lines.append(f"  summary numbers compared: {report['numbers_compared']}, outside tolerance: "
                 f"{sum(1 for p in report['problems'] if not p.startswith('stage '))}; cells R[t, i] that differ: "
                 f"{report['cells_differing']}")
    lines += [f"  {p}" for p in report["problems"][:50]]
    if len(report["problems"]) > 50:
        lines.append(f"  ... {len(report['problems']) - 50} more")
    return "\n".join(lines) + "\n"


def run_record(cfg: dict, write: bool, lock: Path, reference: Path | None, as_json: bool, partial: bool) -> None:
    """``cdiff record``: ``write`` the run's record from ``lock``, or check this rerun against ``reference``
    (default: the profile's record) and print the check (``as_json``: as JSON); a one-line error when the
    rerun differs."""
    import logging
    import sys

    profile = cfg["profile"]
    if write:
        path = write_record(profile, cfg["cpu_isa"], lock)
        logging.getLogger(__name__).info("wrote %s", path)
        return
    report = check(profile, cfg["cpu_isa"], lock, reference, partial=partial)
    sys.stdout.write(json.dumps(report, indent=1) + "\n" if as_json else check_text(report))
    if not report["ok"]:
        first = report["first_difference"]
        where = (f"first differing stage: {first['stage']} ({first.get('file', first['output'])})" if first
                 else "all stage outputs equal")
        raise PipelineError(f"the rerun differs from {reference or record_path(profile)} "
                            f"({report['mode']}; {where}; {len(report['problems'])} problem(s) above)")
