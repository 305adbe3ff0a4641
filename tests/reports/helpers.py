"""A continual summary built from hand-written metric matrices with the pipeline's own formulas."""

import warnings

import numpy as np

from continual_diffusion.metrics.continual import chain_metrics
from continual_diffusion.stages.report.summary import SUMMARY_KEYS

META = {
    "accuracy_closed": {"formula": "closed-set accuracy", "features": "identity classifier", "higher_is_better": True},
    "mmd": {"formula": "unbiased MMD^2, kernel poly", "features": "identity classifier", "higher_is_better": False},
}


def lower(values):
    """A T x T matrix from its lower triangle given row by row (NaN above the diagonal)."""
    t = len(values)
    r = np.full((t, t), np.nan)
    for i, row in enumerate(values):
        r[i, : len(row)] = row
    return r


def fake_summary(matrices: dict, seeds=(0,)) -> dict:
    """matrices: {(benchmark, method, key): [R per seed]} -> summary.json's structure."""
    summary: dict = {}
    for (b, m, key), per_seed in matrices.items():
        meta = META[key]
        stats = [chain_metrics(r, meta["higher_is_better"]) for r in per_seed]
        entry = {}
        for k in SUMMARY_KEYS:
            v = np.asarray([s[k] for s in stats])
            entry[k] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                        "values": v.tolist()}
        entry["meta"] = meta
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NaN above the diagonal in every seed
            entry["R_mean"] = np.nanmean(np.stack(per_seed), axis=0).tolist()
        entry["R_per_seed"] = [r.tolist() for r in per_seed]
        summary.setdefault(b, {}).setdefault(m, {"seeds": list(seeds)})[key] = entry
    return summary


# per benchmark, as metrics/param_cost.profile_costs writes them (the LoRA rank may differ per benchmark)
_SD_V1 = {"clora": {"n_param_percent": 0.09221}, "lora_sequential": {"n_param_percent": 0.09221},
          "custom_diffusion_seq": {"n_param_percent": 2.2302}}
COSTS = {"base": {"faces": {"clora": {"n_param_percent": 0.41}, "lora_sequential": {"n_param_percent": 0.41},
                            "custom_diffusion_seq": {"n_param_percent": 3.27}},
                  "landmarks": {"clora": {"n_param_percent": 1.64}, "lora_sequential": {"n_param_percent": 1.64},
                                "custom_diffusion_seq": {"n_param_percent": 3.27}}},
         "sd_v1": {"faces": _SD_V1, "landmarks": _SD_V1}}


ALL_UNDEFINED = {("clora", 0): {1, 2, 3}}  # C-LoRA's face_similarity undefined for every concept (all-NaN R)


def face_summary(tmp_path, undefined=None) -> dict:
    """summary.json of a 3-task face benchmark (C-LoRA and LoRA, seed 0; tests/test_summary.py's
    write_face_results) as the report commands read it: missing numbers are None."""
    import json

    from continual_diffusion.stages.report.summary import summarize
    from tests.test_summary import write_face_results

    write_face_results(tmp_path / "results", ALL_UNDEFINED if undefined is None else undefined, seeds=(0,))
    summarize(tmp_path / "results", ["faces"], ["clora", "lora_sequential"], [0], {"faces": 3}, tmp_path / "summary")
    return json.loads((tmp_path / "summary" / "summary.json").read_text())
