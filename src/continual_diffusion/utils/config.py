"""Load params.yaml, apply the selected profile's overlay and command-line overrides, validate.

Resolution order (later wins):
  1. the params file(s), merged in order         (top-level sections = the default profile)
  2. ``profiles.<profile>``, deep-merged on top   (``profile`` may itself be overridden); likewise
     ``resources.profiles.<profile>`` over ``resources`` (job_resources)
  3. overrides ``key.sub=value`` (YAML values), e.g. from ``snakemake --config`` or ``cdiff --set``
The result is validated against ``workflow/schemas/params.schema.yaml``; every profile overlay is
validated too, so a typo in any profile fails at once. Errors are one line naming the key.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from continual_diffusion.utils.errors import PipelineError

# Offline defaults of every command (no hub, no dataset download, no DVC analytics); cli.main sets them unless set.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "DVC_NO_ANALYTICS": "1"}
REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "params.schema.yaml"


def deep_merge(base: Mapping, overlay: Mapping) -> dict:
    """Recursive dict merge; non-dict values (lists included) in ``overlay`` replace those in ``base``."""
    out = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=3"`` -> ``("a.b", 3)``; the value is parsed as YAML."""
    if "=" not in text:
        raise PipelineError(f"--set {text!r}: expected KEY=VALUE")
    key, _, raw = text.partition("=")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        raise PipelineError(f"--set {key}: value {raw!r} is not valid YAML") from None


def nest(dotted: Mapping[str, Any]) -> dict:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``."""
    out: dict = {}
    for key, value in dotted.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """Inverse of :func:`nest` (leaves are non-dict values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def read_params(paths: Iterable[Path]) -> dict:
    raw: dict = {}
    for path in paths:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise PipelineError(f"{path}: params file not found") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise PipelineError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
        if not isinstance(loaded, dict):
            raise PipelineError(f"{path}: expected a mapping at the top level")
        raw = deep_merge(raw, loaded)
    return raw


@lru_cache(maxsize=1)
def schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _validate(cfg: dict, where: str) -> None:
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        error = errors[0]
        key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
        raise PipelineError(f"{where}: {key}: {error.message}")


def resolve(raw: Mapping, overrides: Mapping[str, Any] | None = None, source: str = "params.yaml") -> dict:
    """The configuration of the selected profile, validated. ``overrides`` are dotted keys."""
    overrides = dict(overrides or {})
    profiles = raw.get("profiles")
    if not isinstance(profiles, Mapping) or "tiny" not in profiles:
        raise PipelineError(f"{source}: profiles: must be a mapping that contains at least 'tiny'")
    base = {k: v for k, v in raw.items() if k != "profiles"}
    for name, overlay in profiles.items():
        if not isinstance(overlay, Mapping):
            raise PipelineError(f"{source}: profiles.{name}: must be a mapping")
        if "profile" in overlay or "profiles" in overlay:
            raise PipelineError(f"{source}: profiles.{name}: an overlay cannot set 'profile' or 'profiles'")
        _validate(deep_merge(base, overlay) | {"profiles": dict(profiles)}, f"{source} (profile {name})")
    profile = overrides.pop("profile", raw.get("profile"))
    if profile not in profiles:
        raise PipelineError(f"{source}: profile: {profile!r} is not one of {', '.join(profiles)}")
    cfg = deep_merge(base, profiles[profile])
    if isinstance(cfg.get("resources"), Mapping):  # before the overrides, so that --config resources.X wins
        cfg["resources"] = profile_resources(cfg["resources"], profile, profiles, source)
    if "profiles" in (nest(overrides).get("resources") or {}):
        raise PipelineError("resources.profiles: not an override (already applied): override resources.<rule>.<key> "
                            "(the active profile's value), e.g. resources.train_task.mem_mb=64000")
    cfg = deep_merge(cfg, nest(overrides))
    cfg["profile"] = profile
    cfg["profiles"] = copy.deepcopy(dict(profiles))
    _validate(cfg, f"{source} (profile {profile}, with overrides)" if overrides else f"{source} (profile {profile})")
    return cfg


def load(paths: Iterable[Path] = (Path("params.yaml"),), overrides: Iterable[str] | Mapping[str, Any] = ()) -> dict:
    """Read, resolve and validate. ``overrides``: ``["k=v", ...]`` or ``{"k": v}``."""
    paths = list(paths)
    if not isinstance(overrides, Mapping):
        overrides = dict(parse_override(o) for o in overrides)
    return resolve(read_params(paths), overrides, source=", ".join(str(p) for p in paths))


def benchmark_config(cfg: Mapping, benchmark: str) -> dict:
    """The data section of one benchmark plus its source's parameters."""
    if benchmark not in cfg["benchmarks"]:
        raise PipelineError(f"benchmark {benchmark!r} is not in benchmarks ({', '.join(cfg['benchmarks'])}) "
                            f"of profile {cfg['profile']}")
    data = dict(cfg["data"][benchmark])
    return {"data": data, "source": dict(cfg["sources"][data["source"]]), "seed": cfg["data"]["seed"]}


def chain_settings(cfg: Mapping, benchmark: str, method: str) -> dict:
    """What one task of a (benchmark, method) chain depends on besides its input files.

    The training loop's settings with this benchmark's step count, the method's own parameters and
    the thread count. Not the other benchmarks' steps, the method list or ``checkpoint_every`` (a
    resumed task is bit-identical to an uninterrupted one): changing those reruns no chain. Snakemake
    uses it as the train rule's params trigger, a task's checkpoint as its fingerprint. ``runtime`` (the
    device setting, not its resolution on a machine) is there when params has it.
    """
    train = cfg["train"]
    if method not in cfg["methods"]:
        raise PipelineError(f"methods.{method}: no parameters for this method")
    settings = {
        "train": {"steps": train["steps"][benchmark], "batch_size": train["batch_size"],
                  "token_lr": token_lr(cfg, benchmark, method), "token_init_norm": train["token_init_norm"]},
        "method": method_params(cfg, benchmark, method),
        "torch_threads": cfg["torch_threads"],
        "cpu_isa": cfg["cpu_isa"],
    }
    if "runtime" in cfg:
        settings["runtime"] = dict(cfg["runtime"])
    return settings


def token_lr(cfg: Mapping, benchmark: str, method: str) -> float:
    """The concept token's learning rate in ``method``'s chains: ``methods.<method>.token_lr`` when given,
    else ``train.token_lr``; the value ``method`` there means the method's own ``lr`` (the paper trains
    everything of a method at one rate). A method with no ``lr`` of its own (Textual Inversion) needs a number."""
    params = method_params(cfg, benchmark, method)
    value = params.get("token_lr", cfg["train"]["token_lr"])
    if value == "method":
        if "lr" not in params:
            raise PipelineError(f"methods.{method}.token_lr: train.token_lr is 'method' but {method} has no lr "
                                "of its own: give it a token_lr")
        value = params["lr"]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise PipelineError(f"methods.{method}.token_lr: a non-negative number or 'method', got {value!r}")
    return value


def method_params(cfg: Mapping, benchmark: str, method: str) -> dict:
    """``methods.<method>`` for one benchmark: a value given per benchmark (a mapping whose keys are
    benchmark names, e.g. ``penalty_weight: {faces: 1.0, landmarks: 0.3}``) resolves to this
    benchmark's entry; every other value is taken as it is."""
    if method not in cfg["methods"]:
        raise PipelineError(f"methods.{method}: no parameters for this method")
    known = set(cfg["data"])
    resolved = {}
    for key, value in cfg["methods"][method].items():
        if isinstance(value, Mapping) and value and set(value) <= known:
            if benchmark not in value:
                raise PipelineError(f"methods.{method}.{key}: no value for benchmark {benchmark!r}")
            value = value[benchmark]
        resolved[key] = value
    return resolved


def evaluation_settings(cfg: Mapping, benchmark: str) -> dict:
    """What one evaluation job of ``benchmark`` depends on in params: the evaluation section with this
    benchmark's class word and task count (the last task keeps its samples for the grids)."""
    ev = dict(cfg["evaluation"])
    ev["class_words"] = ev["class_words"][benchmark]
    ev["n_tasks"] = cfg["data"][benchmark]["n_tasks"]
    ev["cpu_isa"] = cfg["cpu_isa"]
    if "runtime" in cfg:
        ev["runtime"] = dict(cfg["runtime"])
    return ev


# ----- what a job asks the scheduler for (``resources`` in params.yaml; workflow/rules/resources.smk)
# Not part of any result: no DVC stage lists ``resources`` and no rule's params read it. Per-profile values
# live in ``resources.profiles.<name>``, not in ``profiles.<name>``, which DVC stages track as params.
RESOURCE_RULES = ("base_model", "identity_evaluator", "train_task", "evaluate_task", "export_diffusers")
RESOURCE_KEYS = ("gpu", "mem_mb", "runtime")  # GPUs, host memory (MB), wall time (minutes)


def profile_resources(resources: Mapping, profile: str, profiles: Mapping, source: str = "params.yaml") -> dict:
    """``resources`` with ``resources.profiles.<profile>`` deep-merged over the rest (and ``profiles`` dropped)."""
    per_profile = resources.get("profiles") or {}
    unknown = [name for name in per_profile if name not in profiles]
    if unknown:
        raise PipelineError(f"{source}: resources.profiles.{unknown[0]}: no such profile ({', '.join(profiles)})")
    base = {k: v for k, v in resources.items() if k != "profiles"}
    return deep_merge(base, per_profile.get(profile) or {})


def job_resources(cfg: Mapping, rule: str, method: str | None = None) -> dict:
    """gpu / mem_mb / runtime of a job of ``rule`` (one of RESOURCE_RULES): ``resources.default``, then
    ``resources.<rule>``, then, for a chain's job, ``resources.<rule>.methods.<method>``; {} without a
    ``resources`` section."""
    if rule not in RESOURCE_RULES:
        raise PipelineError(f"resources: {rule!r} is not a model rule ({', '.join(RESOURCE_RULES)})")
    resources = cfg.get("resources")
    if not resources:
        return {}
    entry = resources.get(rule) or {}
    values = {**(resources.get("default") or {}), **{k: v for k, v in entry.items() if k != "methods"}}
    if method is not None:
        values.update((entry.get("methods") or {}).get(method) or {})
    return values


ISA_ENVIRONMENT = {
    # torch's own vectorised kernels, oneDNN's convolutions / matmuls, MKL's BLAS (conditional numerical
    # reproducibility): each picks its code path from the CPU unless capped
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"},
    # MKL honours MKL_CBWR=AVX2 on Intel CPUs only: on others it runs its AUTO branch (MKL_VERBOSE prints
    # "CNR:AUTO" on an AMD EPYC; oneMKL developer guide, "Specifying code branches": "settings other than AUTO
    # or COMPATIBLE are available only for Intel processors"). COMPATIBLE is the branch MKL runs on every x86-64
    # CPU: it removes MKL's vendor dispatch, not every vendor difference (MKL's float sqrt starts from rsqrtps),
    # so it is not the default: studies/results/cross_vendor.md.
    "avx2_mkl_compatible": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"},
    # the same caps, and every job's square roots correctly rounded (numerics.exact_sqrt): the two sources of
    # Intel / AMD differences found in cross_vendor.md removed
    "portable": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"},
    "native": {},
}


def isa_environment(cpu_isa: str, machine: str | None = None) -> dict[str, str]:
    """Environment variables that cap the CPU kernels to ``cpu_isa`` (``cpu_isa`` in params.yaml); they
    must be set before torch is imported. Only x86-64 has these code paths: elsewhere nothing is capped."""
    import platform

    if cpu_isa not in ISA_ENVIRONMENT:
        raise PipelineError(f"cpu_isa: unknown value {cpu_isa!r} ({' | '.join(ISA_ENVIRONMENT)})")
    machine = (machine or platform.machine()).lower()
    return dict(ISA_ENVIRONMENT[cpu_isa]) if machine in ("x86_64", "amd64") else {}
