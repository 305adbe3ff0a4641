"""utils/layout.py: the output layout, path by path, as the stages and the Snakemake rules write it."""

from pathlib import Path

from continual_diffusion.utils import layout


def test_chain_and_task_folders():
    runs = layout.profile_root("runs", "tiny")
    chain = layout.chain_dir(runs, "faces", "clora", 0)
    assert chain == Path("runs/tiny/faces/clora/seed_0")
    assert layout.task_dir(chain, 3) == Path("runs/tiny/faces/clora/seed_0/task_03")
    assert layout.task_dir(chain, 10) / layout.TASK_FILE == Path("runs/tiny/faces/clora/seed_0/task_10/task.safetensors")
    assert layout.chain_dir("results/paper", "landmarks", "dreambooth", 12) == Path(
        "results/paper/landmarks/dreambooth/seed_12")


def test_data_model_and_report_folders():
    data = layout.profile_root("data", "smoke")
    assert layout.tasks_dir(data, "faces") == Path("data/smoke/tasks/faces")
    assert layout.concept_task_dir(data, "faces", 1) == Path("data/smoke/tasks/faces/task_01")
    assert layout.pool_dir(data, "landmarks") == Path("data/smoke/pool/landmarks")
    assert layout.base_dir("tiny") == Path("models/tiny/base")
    assert layout.evaluator_dir("tiny", "faces") == Path("models/tiny/evaluator/faces")
    assert layout.reports_dir("tiny", "summary", "summary.json") == Path("reports/tiny/summary/summary.json")
    assert layout.reports_dir("tiny") == Path("reports/tiny")


def test_snakemake_patterns_are_the_same_layout():
    pattern = str(layout.chain_dir(layout.profile_root("runs", "tiny"), "{benchmark}", "{method}", "{seed}"))
    assert pattern == "runs/tiny/" + layout.CHAIN_PATTERN == "runs/tiny/{benchmark}/{method}/seed_{seed}"
    folder = f"{pattern}/{layout.TASK_PATTERN}".format(benchmark="faces", method="clora", seed=0, task="07")
    assert Path(folder) == layout.task_dir(layout.chain_dir("runs/tiny", "faces", "clora", 0), 7)


def test_globs_find_the_chains(tmp_path):
    for method, seed in (("clora", 0), ("dreambooth", 1)):
        layout.task_dir(layout.chain_dir(tmp_path, "faces", method, seed), 1).mkdir(parents=True)
    chains = sorted(p.relative_to(tmp_path) for p in tmp_path.glob(layout.CHAIN_GLOB))
    assert chains == [Path("faces/clora/seed_0"), Path("faces/dreambooth/seed_1")]
    assert [p.name for p in (tmp_path / chains[0]).glob(layout.TASK_GLOB)] == ["task_01"]


def test_logs_and_rebuilt_base_folders():
    assert layout.logs_dir("tiny") == Path("logs/tiny")
    assert layout.logs_dir("tiny", "timings", "train") == Path("logs/tiny/timings/train")
    assert layout.rebuilt_base_dir("tiny") == Path("models/tiny/rebuilt_base")


def test_no_path_formula_outside_the_layout_module():
    """Every ``seed_<s>`` / ``task_XX`` folder name and profile root comes from utils/layout.py."""
    root = Path(__file__).resolve().parents[2]
    formulas = ('f"seed_{', 'f"task_{', 'Path("data") /', 'Path("runs") /', 'Path("results") /',
                'Path("models") /', 'f"logs/{PROFILE}', 'f"models/{PROFILE}')
    files = [*(root / "src").rglob("*.py"), *(root / "workflow").rglob("*.smk"), root / "Snakefile"]
    offenders = [f"{path.relative_to(root)}: {formula}" for path in files if path.name != "layout.py"
                 for formula in formulas if formula in path.read_text()]
    assert offenders == []
