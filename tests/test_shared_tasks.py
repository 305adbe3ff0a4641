"""Shared train jobs (shared_tasks.py): which jobs share, that a shared job is bit-identical to training it,
and that a copy refuses a source it was not told to share."""

import json

import pytest

from continual_diffusion.stages.shared_tasks import sharing_key, source_method
from continual_diffusion.stages.train import copy_task, run_task
from continual_diffusion.utils import config
from continual_diffusion.utils.errors import PipelineError
from tests.helpers import run, tree_bytes, workflow_copy
from tests.model_fixtures import smoke_workspace

SEQ, MERGE, OFFLINE = "custom_diffusion_seq", "custom_diffusion_merge", "custom_diffusion_offline"


def sources(cfg, benchmark="faces", tasks=range(1, 4)):
    return {m: [source_method(cfg, benchmark, m, t) for t in tasks] for m in cfg["train"]["methods"]}


def test_default_methods_share_custom_diffusion_task_1_and_every_merge_task_with_offline():
    found = sources(config.load())
    assert found == {
        "clora": [None] * 3, "lora_sequential": [None] * 3, "textual_inversion": [None] * 3, "dreambooth": [None] * 3,
        SEQ: [None] * 3, MERGE: [SEQ, None, None], "custom_diffusion_ewc": [None] * 3,
        "generative_replay": [SEQ, None, None], OFFLINE: [SEQ, MERGE, MERGE],
    }


def test_sharing_follows_the_settings():
    off = sources(config.load(overrides=["train.share_identical_tasks=false"]))
    assert all(s == [None] * 3 for s in off.values())
    joint = sources(config.load(overrides=[f"methods.{OFFLINE}.mode=joint"]))
    assert joint[OFFLINE] == [SEQ, None, None]  # joint trains on earlier concepts from task 2 on
    other_lr = sources(config.load(overrides=[f"methods.{MERGE}.lr=1.0e-4"]))
    assert other_lr[MERGE] == [None] * 3 and other_lr[OFFLINE] == [SEQ, None, None]
    other_steps = config.load(overrides=["train.steps.landmarks=7"])
    assert sharing_key(other_steps, "faces", MERGE, 2) == sharing_key(config.load(), "faces", MERGE, 2)
    assert sharing_key(other_steps, "landmarks", MERGE, 2) != sharing_key(config.load(), "landmarks", MERGE, 2)
    first = sources(config.load(overrides=[f"train.methods=[{OFFLINE},{MERGE}]"]))
    assert first == {OFFLINE: [None] * 3, MERGE: [OFFLINE] * 3}  # the first method of the list trains


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Chains trained job by job, sharing nothing: task 1 of four methods, task 2 of merge and offline."""
    root = tmp_path_factory.mktemp("shared")
    base = smoke_workspace(root)
    cfg = config.load(overrides=["profile=smoke", "train.steps.faces=4", "train.checkpoint_every=2",
                                 f"train.methods=[{SEQ},{MERGE},generative_replay,{OFFLINE}]"])
    for method, tasks in ((SEQ, (1,)), ("generative_replay", (1,)), (MERGE, (1, 2)), (OFFLINE, (1, 2))):
        for task in tasks:
            run_task(cfg, "faces", method, 0, task, root / "data", base, root / method, root / "ckpt" / method)
    return cfg, root, base


def without_config(tree):
    return {k: v for k, v in tree.items() if not k.endswith("config.json")}


def test_jobs_that_share_a_recipe_train_bit_identical_folders(trained):
    _, root, _ = trained
    seq_task_1 = without_config(tree_bytes(root / SEQ / "task_01"))
    for method in (MERGE, "generative_replay", OFFLINE):
        assert without_config(tree_bytes(root / method / "task_01")) == seq_task_1, method
    assert without_config(tree_bytes(root / OFFLINE / "task_02")) == without_config(tree_bytes(root / MERGE / "task_02"))


def test_a_copied_task_is_the_trained_task_byte_for_byte(trained, tmp_path):
    cfg, root, base = trained
    copy_task(cfg, "faces", OFFLINE, 0, 2, base, tmp_path / "copy", root / MERGE)
    assert tree_bytes(tmp_path / "copy" / "task_02") == tree_bytes(root / OFFLINE / "task_02")
    assert json.loads((tmp_path / "copy" / "task_02" / "config.json").read_text())["method"] == OFFLINE


def test_a_copy_refuses_a_source_it_does_not_share(trained, tmp_path):
    cfg, root, base = trained
    with pytest.raises(PipelineError, match=f"expected {SEQ}, found '{MERGE}'"):
        copy_task(cfg, "faces", OFFLINE, 0, 1, base, tmp_path / "a", root / MERGE)
    assert not (tmp_path / "a").exists()


def test_a_copy_refuses_a_missing_or_differently_trained_source(trained, tmp_path):
    cfg, root, base = trained
    with pytest.raises(PipelineError, match="the shared task to copy is missing"):
        copy_task(cfg, "faces", OFFLINE, 0, 2, base, tmp_path / "a", root / SEQ)
    with pytest.raises(PipelineError, match="expected none: the task trains itself"):
        copy_task(cfg, "faces", MERGE, 0, 2, base, tmp_path / "a", root / OFFLINE)
    edited = tmp_path / "edited"
    (edited / "task_02").mkdir(parents=True)
    source_config = json.loads((root / MERGE / "task_02" / "config.json").read_text())
    source_config["train"]["steps"] = 5
    (edited / "task_02" / "config.json").write_text(json.dumps(source_config))
    with pytest.raises(PipelineError, match=r"config.json: written with other settings \(train\)"):
        copy_task(cfg, "faces", OFFLINE, 0, 2, base, tmp_path / "a", edited)
    assert not (tmp_path / "a").exists()


def test_the_train_rule_copies_shared_jobs_and_trains_the_rest(tmp_path):
    workdir = workflow_copy(tmp_path / "wf")
    methods = f"train={{methods: [{SEQ}, {MERGE}, {OFFLINE}]}}"
    text = run(["snakemake", "-n", "-p", "--config", methods, "benchmarks=[faces]"], workdir).stdout
    commands = [line for line in text.splitlines() if "continual_diffusion train-task" in line]
    copied = sorted((c.split("--method ")[1].split()[0], c.split("--task ")[1].split()[0], c.split("--same-as ")[1].split()[0])
                    for c in commands if "--same-as" in c)
    assert copied == [(MERGE, "01", f"runs/smoke/faces/{SEQ}/seed_0"), (OFFLINE, "01", f"runs/smoke/faces/{SEQ}/seed_0"),
                      (OFFLINE, "02", f"runs/smoke/faces/{MERGE}/seed_0")]
    assert len(commands) == 6
