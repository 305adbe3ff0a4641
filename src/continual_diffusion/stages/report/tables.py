"""The paper-style results tables: per benchmark, one row per method with N_param (%) and the final
average A and forgetting F of every metric, as mean +- std over seeds, in Markdown, CSV and LaTeX.

Columns (R[t, i] = metric of concept i's samples after task t, T tasks; see metrics/continual.py):
  N_param   = 100 * (U-Net parameters trained per task) / (all U-Net parameters)
  A_<key>   = (1/T) sum_i R[T, i]
  F_<key>   = (1/(T-1)) sum_{i<T} s (R[i, i] - R[T, i]),  s = +1 if higher is better, -1 otherwise
so F > 0 is forgetting for every metric. Mean +- sample standard deviation over the seeds that ran
(std 0 with one seed). Inputs: the continual summary (summary.json) and the parameter costs
(parameter_cost.json); nothing is recomputed from models.
A value the summary has as missing (it reads a cell undefined for its concept, see summary.py) is
"n/a", with the reason in the notes; an empty cell means the method was not scored with the metric.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from continual_diffusion.stages.report import method_name
from continual_diffusion.stages.report.summary import NA
from continual_diffusion.utils.io import atomic_directory

SKIPPED = ("p_true",)  # a diagnostic (mean probability of the true class), kept in the summary only


def metric_columns(summary: dict, benchmark: str) -> list[str]:
    keys: list[str] = []
    for entry in summary[benchmark].values():
        keys += [k for k in entry if k != "seeds" and k not in SKIPPED and k not in keys]
    return keys


def table_rows(summary: dict, costs: dict, benchmark: str) -> list[dict]:
    """One dict per method: method, name, seeds, n_param and (mean, std) of A and F of each metric."""
    rows = []
    for method, entry in summary[benchmark].items():
        row = {"method": method, "name": method_name(method), "seeds": entry["seeds"],
               "n_param": costs.get("base", {}).get(benchmark, {}).get(method, {}).get("n_param_percent")}
        for key in metric_columns(summary, benchmark):
            if key in entry:
                row[f"A_{key}"] = (entry[key]["final"]["mean"], entry[key]["final"]["std"])
                row[f"F_{key}"] = (entry[key]["forgetting"]["mean"], entry[key]["forgetting"]["std"])
        rows.append(row)
    return rows


def _meta(summary: dict, benchmark: str, key: str) -> dict:
    return next(e[key]["meta"] for e in summary[benchmark].values() if key in e)


def _decimals(values) -> int:
    """Decimals that show 3 significant digits of the column's largest magnitude (at least 3)."""
    import math

    biggest = max((abs(v[0]) for v in values if v is not None and not _missing(v)), default=0.0)
    if biggest == 0.0 or not math.isfinite(biggest):
        return 3
    return max(3, 2 - math.floor(math.log10(biggest)))


def _missing(value) -> bool:
    """A (mean, std) the summary has as missing: None once read from summary.json, NaN in memory."""
    return value is not None and (value[0] is None or value[0] != value[0])


def _cell(value, digits: int = 3, sep: str = " +- ") -> str:
    if value is None:
        return ""
    if _missing(value):
        return NA
    mean, std = value
    return f"{mean:.{digits}f}{sep}{std:.{digits}f}"


def _column_decimals(rows: list[dict], keys: list[str]) -> dict:
    return {c: _decimals([r.get(c) for r in rows]) for k in keys for c in (f"A_{k}", f"F_{k}")}


def _n_param(value) -> str:
    return "" if value is None else f"{value:.4g}"


def _headers(keys: list[str], summary: dict, benchmark: str) -> list[str]:
    heads = ["method", "N_param (%)"]
    for key in keys:
        arrow = "up" if _meta(summary, benchmark, key)["higher_is_better"] else "down"
        heads += [f"A_{key} ({arrow})", f"F_{key} (down)"]
    return heads


def notes(summary: dict, benchmark: str, seeds: list[int]) -> list[str]:
    lines = [f"Mean +- sample std over seeds {', '.join(map(str, seeds))} (std 0 with one seed). T = number of tasks; "
             "R[t, i] = metric of concept i after task t.",
             "N_param = 100 * U-Net parameters trained per task / all U-Net parameters (this profile's U-Net).",
             "A = (1/T) sum_i R[T, i]; F = (1/(T-1)) sum_{i<T} s (R[i, i] - R[T, i]), s = +1 if higher is better, "
             "-1 if lower is better (F > 0 is forgetting)."]
    for key in metric_columns(summary, benchmark):
        meta = _meta(summary, benchmark, key)
        lines.append(f"{key}: R[t, i] = {meta['formula']}; features: {meta['features']}.")
    for key in metric_columns(summary, benchmark):
        lines += [f"{key}, {method_name(m)}: {entry[key]['missing']}; a value that reads those cells is {NA}."
                  for m, entry in summary[benchmark].items() if "missing" in entry.get(key, {})]
    return lines


def markdown(summary: dict, costs: dict, benchmark: str) -> str:
    keys = metric_columns(summary, benchmark)
    rows = table_rows(summary, costs, benchmark)
    heads = _headers(keys, summary, benchmark)
    lines = [f"### {benchmark}", "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    digits = _column_decimals(rows, keys)
    for row in rows:
        cells = [row["name"], _n_param(row["n_param"])]
        for key in keys:
            cells += [_cell(row.get(c), digits[c]) for c in (f"A_{key}", f"F_{key}")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"- {n}" for n in notes(summary, benchmark, rows[0]["seeds"])] + [""]
    return "\n".join(lines)


def csv_text(summary: dict, costs: dict, benchmark: str) -> str:
    keys = metric_columns(summary, benchmark)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    head = ["method", "name", "seeds", "n_param_percent"]
    for key in keys:
        head += [f"A_{key}_mean", f"A_{key}_std", f"F_{key}_mean", f"F_{key}_std"]
    writer.writerow(head)
    for row in table_rows(summary, costs, benchmark):
        cells = [row["method"], row["name"], " ".join(map(str, row["seeds"])),
                 "" if row["n_param"] is None else repr(row["n_param"])]
        for key in keys:
            for col in (f"A_{key}", f"F_{key}"):
                value = row.get(col)
                if value is None:
                    cells += ["", ""]
                else:
                    cells += [NA, NA] if _missing(value) else [repr(value[0]), repr(value[1])]
        writer.writerow(cells)
    return out.getvalue()


def _tex_escape(text: str) -> str:
    """Plain text -> LaTeX text mode (the formulas in the notes are kept readable, not typeset)."""
    out = []
    for ch in text:
        out.append({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "{": r"\{",
                    "}": r"\}", "^": r"\^{}", "~": r"\~{}", "<": r"$<$", ">": r"$>$", "$": r"\$"}.get(ch, ch))
    return "".join(out)


def latex(summary: dict, costs: dict, benchmark: str) -> str:
    keys = metric_columns(summary, benchmark)
    rows = table_rows(summary, costs, benchmark)
    heads = ["Method", r"$N_{param}$ (\%)"]
    for key in keys:
        arrow = r"$\uparrow$" if _meta(summary, benchmark, key)["higher_is_better"] else r"$\downarrow$"
        name = r"\mathrm{" + _tex_escape(key) + "}"
        heads += [f"$A_{{{name}}}$ ({arrow})", f"$F_{{{name}}}$ ($\\downarrow$)"]
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{l" + "r" * (len(heads) - 1) + "}", r"\toprule", " & ".join(heads) + r" \\",
             r"\midrule"]
    digits = _column_decimals(rows, keys)
    for row in rows:
        cells = [_tex_escape(row["name"]), _n_param(row["n_param"])]
        for key in keys:
            cells += [_cell(row.get(c), digits[c], sep=r" $\pm$ ") for c in (f"A_{key}", f"F_{key}")]
        lines.append(" & ".join(cells) + r" \\")
    caption = " ".join(_tex_escape(n) for n in notes(summary, benchmark, rows[0]["seeds"]))
    lines += [r"\bottomrule", r"\end{tabular}", f"\\caption{{{_tex_escape(benchmark)}: {caption}}}",
              f"\\label{{tab:{benchmark}}}", r"\end{table}", ""]
    return "\n".join(lines)


def write_tables(summary: dict, costs: dict, profile: str, out: Path) -> None:
    """<out>/<benchmark>.{md,csv,tex} and tables.md (every benchmark, the README's copy)."""
    with atomic_directory(out) as tmp:
        parts = [f"## Results ({profile} profile)", ""]
        for benchmark in summary:
            md = markdown(summary, costs, benchmark)
            (tmp / f"{benchmark}.md").write_text(md)
            (tmp / f"{benchmark}.csv").write_text(csv_text(summary, costs, benchmark))
            (tmp / f"{benchmark}.tex").write_text(latex(summary, costs, benchmark))
            parts.append(md)
        (tmp / "tables.md").write_text("\n".join(parts))
