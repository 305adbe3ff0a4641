"""dvc-record never records runs/results directories holding chains that params.yaml does not ask for."""

from pathlib import Path

from continual_diffusion.orchestration.dvc_record import recordable, stray_chains
from continual_diffusion.orchestration.pipeline import STAGES

CFG = {"profile": "tiny", "benchmarks": ["faces"], "seeds": [0], "train": {"methods": ["clora"]}}


def make(tmp_path, *folders):
    for folder in folders:
        (tmp_path / folder).mkdir(parents=True)


def test_stray_chains_names_extra_seeds_methods_and_benchmarks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make(tmp_path, "runs/tiny/faces/clora/seed_0", "results/tiny/faces/clora/seed_0")
    assert stray_chains(CFG) == []
    make(tmp_path, "runs/tiny/faces/clora/seed_1", "results/tiny/landmarks/clora/seed_0",
         "results/tiny/faces/lora_sequential/seed_0")
    assert stray_chains(CFG) == [Path("runs/tiny/faces/clora/seed_1"),
                                 Path("results/tiny/faces/lora_sequential/seed_0"),
                                 Path("results/tiny/landmarks/clora/seed_0")]


def test_stages_from_the_first_tainted_output_on_are_not_recorded():
    names = [s.name for s in STAGES]
    assert names.index("train") < names.index("evaluate") < names.index("report")
    kept = recordable(list(STAGES), [Path("results/tiny/faces/clora/seed_1")], "tiny")
    assert [s.name for s in kept] == names[:names.index("evaluate")]
    kept = recordable(list(STAGES), [Path("runs/tiny/faces/clora/seed_1")], "tiny")
    assert [s.name for s in kept] == names[:names.index("train")]
    assert recordable(list(STAGES), [], "tiny") == list(STAGES)
