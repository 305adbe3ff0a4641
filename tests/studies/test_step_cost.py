"""studies/step_cost.py: the cost model's fit and the torch.compile summary line (no timing here)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "step_cost.py"


@pytest.fixture(scope="module")
def step_cost():
    spec = importlib.util.spec_from_file_location("step_cost", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fit_recovers_fixed_and_per_sample_cost(step_cost):
    batches = [1, 2, 4, 8]
    fixed, per_sample = step_cost.fit(batches, [0.012 + 0.0065 * b for b in batches])
    assert fixed == pytest.approx(0.012)
    assert per_sample == pytest.approx(0.0065)


def test_compile_sentence_reports_both_caches_and_the_speedup(step_cost):
    line = step_cost.compile_sentence({
        "batch": 4, "first_step_s": {"cold_cache": 111.8, "warm_cache": 7.8},
        "ms_per_step": {"compiled": 48.8, "eager": 56.1, "compiled_range": [39.1, 60.3], "eager_range": [48.9, 74.6]},
        "speedup": 56.1 / 48.8})
    assert "first step 111.8 s with a cold cache, 7.8 s with a warm one" in line
    assert "48.8 ms per step (39.1-60.3) against 56.1 ms eager (48.9-74.6)" in line
    assert line.endswith("1.15x.")


def test_help_names_the_compile_option():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    assert "--compile" in result.stdout


def test_one_batch_size_is_refused_before_any_timing():
    """The fit needs two batch sizes: a single one fails at once with a one-line error naming the option."""
    result = subprocess.run([sys.executable, str(SCRIPT), "--batches", "4", "4", "--out", "/nonexistent/x.json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--batches 4 4: the cost model" in result.stderr.strip().splitlines()[-1]


def test_the_table_names_the_cpu_generation_where_the_record_has_it(step_cost):
    import json

    record = json.loads((SCRIPT.parent / "results" / "step_cost_tiny.json").read_text())
    record.pop("cpu_generation", None)
    assert step_cost.markdown(record).splitlines()[3].startswith(f"{record['cpu']}, torch ")
    record["cpu_generation"] = "AuthenticAMD family 25 model 17 stepping 1"
    assert step_cost.markdown(record).splitlines()[3].startswith(
        f"{record['cpu']} (AuthenticAMD family 25 model 17 stepping 1), torch ")
