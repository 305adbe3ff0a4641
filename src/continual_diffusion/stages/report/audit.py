"""Reproduced-vs-reported audit: every value and claim of ``reports/reported/paper_numbers.yaml``
beside what this pipeline computed.

Values (one table cell of the paper each):
  delta = ours - paper;  reproduced  iff |delta| <= tolerance
  (tolerance = the entry's absolute tolerance, or defaults.relative_tolerance * |paper value|).
  Status "no paper value" when the cell is empty, "not comparable: miniature vs paper setting" when the
  cell needs Stable Diffusion on the real data and this run is the miniature, "not comparable: not run
  by this pipeline" for the classification benchmark.
Claims (qualitative statements, checked on our own seed means, in whatever setting ran):
  better_than_all  d_o = g (ours_method - ours_o) for every other method o, with g = +1 where higher is
                   better and -1 where lower is better (F: always lower is better); reproduced iff
                   min_o d_o > margin.  delta = min_o d_o (the closest competitor).
  above            reproduced iff min over methods of (value - threshold) > 0; delta = that minimum.
  equals           reproduced iff |ours - value| <= tolerance; delta = ours - value.
A claim whose methods did not all run is "not comparable: methods not run (...)"; one whose methods ran
without its metric (e.g. identity accuracy under a paper profile, whose evaluation.metrics lack it) is
"not comparable: <metric> not evaluated in this profile (evaluation.metrics)".
A value the summary has as missing (it reads a cell undefined for its concept, summary.py) is "n/a":
the cell or claim is "not comparable: n/a (<method>: <reason>)", never a crash or a comparison.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from continual_diffusion.stages.report import method_name
from continual_diffusion.stages.report.summary import NA, is_missing
from continual_diffusion.utils.errors import PipelineError
from continual_diffusion.utils.io import atomic_directory, json_text

REPRODUCED, NOT_REPRODUCED = "reproduced", "not reproduced"
NO_VALUE = "no paper value"
MINIATURE = "not comparable: miniature vs paper setting"
NOT_RUN = "not comparable: not run by this pipeline"
UNDEFINED = "not comparable: n/a"
VALUE_KEYS = ("id", "quantity", "setting", "benchmark", "method", "table", "row", "column", "value", "tolerance",
              "source")
RELATIONS = ("better_than_all", "above", "equals")


def load_reported(path: Path) -> dict:
    """Read and check the reported-values file; a malformed entry fails with its id and key."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: reported values file missing")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("values"), list) or not isinstance(data.get("claims"), list):
        raise PipelineError(f"{path}: needs top-level lists 'values' and 'claims'")
    ids = set()
    for i, entry in enumerate(data["values"]):
        missing = [k for k in VALUE_KEYS if k not in entry]
        if missing:
            raise PipelineError(f"{path}: values[{i}] ({entry.get('id', '?')}): missing key {missing[0]}")
        if entry["id"] in ids:
            raise PipelineError(f"{path}: values[{i}]: duplicate id {entry['id']}")
        ids.add(entry["id"])
    for i, claim in enumerate(data["claims"]):
        if claim.get("relation") not in RELATIONS:
            raise PipelineError(f"{path}: claims[{i}] ({claim.get('id', '?')}): relation must be one of "
                                f"{', '.join(RELATIONS)}, got {claim.get('relation')!r}")
        for key in ("id", "statement", "quantity", "source"):
            if key not in claim:
                raise PipelineError(f"{path}: claims[{i}] ({claim.get('id', '?')}): missing key {key}")
    return data


def _ours(summary: dict, costs: dict, benchmark: str, method: str, quantity: str, metric: str | None):
    """(mean, std, seeds) of our value, or None where it was not computed."""
    if quantity == "n_param_percent":
        cost = costs.get("sd_v1", {}).get(benchmark, {}).get(method)
        return None if cost is None else (cost["n_param_percent"], 0.0, None)
    if quantity == "n_param_percent_here":
        cost = costs.get("base", {}).get(benchmark, {}).get(method)
        return None if cost is None else (cost["n_param_percent"], 0.0, None)
    entry = summary.get(benchmark, {}).get(method, {})
    if metric not in entry:
        return None
    stat = entry[metric][quantity]
    if is_missing(stat):
        return None, None, entry["seeds"]
    return stat["mean"], stat["std"], entry["seeds"]


def _absent(summary: dict, benchmark: str, methods: list[str], metric: str | None) -> str:
    """The status of a row some of whose ``methods`` have no value: not run, or run without the metric."""
    not_run = [m for m in methods if m not in summary.get(benchmark, {})]
    if not_run or metric is None:
        return f"not comparable: methods not run ({', '.join(not_run or methods)})"
    return f"not comparable: {metric} not evaluated in this profile (evaluation.metrics)"


def _undefined(summary: dict, benchmark: str, values: dict, metric: str | None) -> str | None:
    """The status of a row whose values ({method: _ours}) include a missing one, else None."""
    why = [f"{m}: {summary[benchmark][m][metric].get('missing', 'missing in the summary')}"
           for m, v in values.items() if v is not None and v[0] is None]
    return f"{UNDEFINED} ({'; '.join(why)})" if why else None


def _higher_is_better(summary: dict, benchmark: str, quantity: str, metric: str | None) -> bool:
    if quantity == "forgetting" or quantity.startswith("n_param"):
        return False
    entry = next(e for e in summary[benchmark].values() if metric in e)
    return bool(entry[metric]["meta"]["higher_is_better"])


def _fmt(ours, with_seeds: bool = True) -> str:
    if ours is None:
        return "not computed"
    mean, std, seeds = ours
    if mean is None:
        return NA
    if seeds is None:
        return f"{mean:.4g}"
    if not with_seeds:
        return f"{mean:.4g} +- {std:.2g}"
    return f"{mean:.4g} +- {std:.2g} (seeds {', '.join(map(str, seeds))})"


def audit_values(reported: dict, summary: dict, costs: dict, setting: str) -> list[dict]:
    rows = []
    rel = float(reported.get("defaults", {}).get("relative_tolerance", 0.1))
    for entry in reported["values"]:
        paper = entry["value"]
        tol = entry["tolerance"] if entry["tolerance"] is not None else (None if paper is None else rel * abs(paper))
        benchmarks = list(summary) if entry["benchmark"] == "any" else [entry["benchmark"]]
        for b in benchmarks[:1] if entry["setting"] == "sd_v1" else benchmarks:
            ours = None
            if entry["setting"] != "classification" and entry["method"] is not None:
                ours = _ours(summary, costs, b, entry["method"], entry["quantity"], entry.get("metric"))
            undefined = ours is not None and _undefined(summary, b, {entry["method"]: ours}, entry.get("metric"))
            delta = None if ours is None or undefined or paper is None else ours[0] - paper
            if entry["setting"] == "classification":
                status = NOT_RUN
            elif entry["setting"] == "paper" and setting != "paper":
                status = MINIATURE
            elif paper is None:
                status = NO_VALUE
            elif ours is None:
                status = NOT_RUN
            elif undefined:
                status = undefined
            else:
                status = REPRODUCED if abs(delta) <= tol + 1e-12 else NOT_REPRODUCED
            what = entry["column"] + (f", {entry['row']}" if entry["row"] else "")
            where = "" if entry["benchmark"] in ("any", "imagenet_r") else f" [{entry['benchmark']}]"
            rows.append({"kind": "value", "id": entry["id"], "claim": what + where,
                         "paper": paper, "source": f"{entry['table']}; {entry['source']}", "ours": ours,
                         "delta": delta, "tolerance": tol, "status": status})
    return rows


def audit_claims(reported: dict, summary: dict, costs: dict) -> list[dict]:
    rows = []
    for claim in reported["claims"]:
        metrics = claim.get("metrics") or [claim.get("metric")]
        # SD v1.x costs use the paper's ranks (the same for every benchmark); the profile's own may differ
        benchmarks = [next(iter(summary))] if claim["quantity"] == "n_param_percent" else list(summary)
        for b in benchmarks:
            for metric in metrics:
                rows.append(_claim_row(claim, summary, costs, b, metric))
    return rows


def _claim_row(claim: dict, summary: dict, costs: dict, b: str, metric: str | None) -> dict:
    q = claim["quantity"]
    row = {"kind": "claim", "id": claim["id"], "source": claim["source"], "paper": None, "ours": None,
           "delta": None, "tolerance": None}
    label = {"n_param_percent": "", "n_param_percent_here": f" [{b}]"}.get(q, f" [{b}, {q} of {metric}]")
    row["claim"] = claim["statement"] + label
    if claim["relation"] == "equals":
        ours = _ours(summary, costs, b, claim["method"], q, metric)
        row.update(paper=claim["value"], ours=ours, tolerance=claim["tolerance"])
        undefined = _undefined(summary, b, {claim["method"]: ours}, metric)
        if ours is None and q.startswith("n_param") or ours is None and claim["method"] not in summary.get(b, {}):
            row["status"] = f"{NOT_RUN} ({claim['method']})"
        elif ours is None:
            row["status"] = _absent(summary, b, [claim["method"]], metric)
        elif undefined:
            row["status"] = undefined
        else:
            row["delta"] = ours[0] - claim["value"]
            row["status"] = REPRODUCED if abs(row["delta"]) <= claim["tolerance"] + 1e-12 else NOT_REPRODUCED
        return row
    names = [claim["method"]] + list(claim.get("others", [])) if claim["relation"] == "better_than_all" \
        else list(claim["methods"])
    values = {m: _ours(summary, costs, b, m, q, metric) for m in names}
    missing = [m for m, v in values.items() if v is None]
    if missing:
        row["status"] = _absent(summary, b, missing, None if q.startswith("n_param") else metric)
        return row
    undefined = _undefined(summary, b, values, metric)
    if undefined:
        row.update(ours=values, status=undefined)
        return row
    if claim["relation"] == "above":
        margins = {m: values[m][0] - claim["threshold"] for m in names}
        row.update(tolerance=claim["threshold"], ours={m: values[m] for m in names})
        row["delta"] = min(margins.values())
        row["status"] = REPRODUCED if row["delta"] > 0 else NOT_REPRODUCED
        return row
    sign = 1.0 if _higher_is_better(summary, b, q, metric) else -1.0
    mine = values[claim["method"]][0]
    margins = {o: sign * (mine - values[o][0]) for o in claim["others"]}
    closest = min(margins, key=margins.get)
    row.update(ours={m: values[m] for m in names}, delta=margins[closest], tolerance=claim.get("margin", 0.0),
               closest=closest)
    row["status"] = REPRODUCED if margins[closest] > row["tolerance"] else NOT_REPRODUCED
    row["failing"] = sorted(o for o, d in margins.items() if d <= row["tolerance"])
    return row


def _ours_cell(row: dict) -> str:
    ours = row["ours"]
    if isinstance(ours, dict):
        parts = [f"{method_name(m)} {_fmt(v, with_seeds=False)}" for m, v in ours.items()]
        seeds = next((v[2] for v in ours.values() if v and v[2] is not None), None)
        return "; ".join(parts) + (f" (seeds {', '.join(map(str, seeds))})" if seeds else "")
    return _fmt(ours) if ours is not None else ""


def _num(x) -> str:
    return "" if x is None else f"{x + 0.0:.4g}"  # + 0.0: no "-0"


def markdown(value_rows: list[dict], claim_rows: list[dict], scope: dict) -> str:
    def counts(rows: list[dict]) -> str:
        tally: dict = {}
        for r in rows:
            category = r["status"].split(" (")[0]
            tally[category] = tally.get(category, 0) + 1
        return "; ".join(f"{k}: {v}" for k, v in sorted(tally.items()))

    claims_ok = sum(r["status"] == REPRODUCED for r in claim_rows)
    lines = ["# Audit: reproduced vs reported", "",
             "## Summary", "",
             f"- **Scope**: profile `{scope['profile']}` ({scope['setting_text']}); benchmarks "
             f"{', '.join(scope['benchmarks'])}; methods {', '.join(scope['methods'])}; seeds "
             f"{', '.join(map(str, scope['seeds']))}.",
             "- **Method**: every cell of `reports/reported/paper_numbers.yaml` is set beside our value: "
             "reproduced when |ours - paper| <= tolerance. The paper's qualitative claims are checked on our own "
             "seed means (better_than_all: the method beats every listed method on the quantity, in the metric's "
             "direction; lower F is better). Cells the paper's setting alone can give are not compared on the "
             "miniature.",
             f"- **Results**: {claims_ok} of {len(claim_rows)} claim checks reproduced ({counts(claim_rows)}). "
             f"Table cells: {counts(value_rows)}.", ""]
    failed = [r for r in claim_rows if r["status"] == NOT_REPRODUCED]
    if failed:
        lines += ["Claims not reproduced here:", ""]
        for r in failed:
            extra = f" (fails against {', '.join(method_name(m) for m in r['failing'])})" if r.get("failing") else ""
            lines.append(f"- {r['claim']}{extra}")
        lines.append("")
    lines += ["## Claims", "", "| claim | paper value and source | ours (mean +- std, seeds) | delta | tolerance | status |",
              "|---|---|---|---|---|---|"]
    for r in claim_rows:
        paper = (_num(r["paper"]) + "; " if r["paper"] is not None else "") + r["source"]
        lines.append(f"| {r['claim']} | {paper} | {_ours_cell(r)} | {_num(r['delta'])} | {_num(r['tolerance'])} | "
                     f"{r['status']} |")
    lines += ["", "## Table cells", "",
              "| cell | paper value and source | ours (mean +- std, seeds) | delta | tolerance | status |",
              "|---|---|---|---|---|---|"]
    for r in value_rows:
        paper = (_num(r["paper"]) if r["paper"] is not None else "(empty)") + "; " + r["source"]
        lines.append(f"| {r['claim']} | {paper} | {_ours_cell(r)} | {_num(r['delta'])} | {_num(r['tolerance'])} | "
                     f"{r['status']} |")
    lines += ["", "delta = ours - paper for cells; for better_than_all claims, the margin over the closest "
              "competitor (positive: the claim holds); for `above`, the smallest margin over the threshold.", ""]
    return "\n".join(lines)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def write_audit(reported_path: Path, summary: dict, costs: dict, scope: dict, out: Path) -> dict:
    """<out>/audit.md and audit.json (written atomically)."""
    reported = load_reported(reported_path)
    setting = scope["setting"]
    values = audit_values(reported, summary, costs, setting)
    claims = audit_claims(reported, summary, costs)
    with atomic_directory(out) as tmp:
        (tmp / "audit.md").write_text(markdown(values, claims, scope))
        (tmp / "audit.json").write_text(json_text(_jsonable({"scope": scope, "values": values, "claims": claims})))
    return {"values": values, "claims": claims}
