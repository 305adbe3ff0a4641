import pytest
import yaml

from continual_diffusion.utils import config
from continual_diffusion.utils.errors import PipelineError
from tests.helpers import REPO

PROFILES = ["tiny", "smoke", "paper_faces", "paper_landmarks"]


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_resolves_and_validates(profile):
    cfg = config.load([REPO / "params.yaml"], [f"profile={profile}"])
    assert cfg["profile"] == profile
    for benchmark in cfg["benchmarks"]:
        bench = config.benchmark_config(cfg, benchmark)
        assert bench["data"]["n_tasks"] >= 1


def test_default_profile_is_tiny_with_the_paper_filter():
    cfg = config.load([REPO / "params.yaml"])
    assert cfg["profile"] == "tiny"
    assert cfg["data"]["faces"]["min_images"] == 15 and cfg["data"]["faces"]["n_tasks"] == 10


def test_paper_profiles_use_real_sources_at_512():
    faces = config.load([REPO / "params.yaml"], ["profile=paper_faces"])
    assert faces["benchmarks"] == ["faces"] and faces["data"]["faces"]["source"] == "celeba_hq"
    assert faces["data"]["faces"]["resolution"] == 512
    landmarks = config.load([REPO / "params.yaml"], ["profile=paper_landmarks"])
    assert landmarks["data"]["landmarks"]["source"] == "gldv2"


def write(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def edited(tmp_path, edit):
    """A copy of params.yaml with ``edit(params)`` applied to its parsed content (no dependence on its layout)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(params)
    return write(tmp_path, yaml.safe_dump(params, sort_keys=False))


def rename(mapping: dict, old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


def test_an_unedited_copy_resolves_as_the_original(tmp_path):
    path = edited(tmp_path, lambda params: None)
    for profile in PROFILES:
        overrides = [f"profile={profile}"]
        assert config.load([path], overrides) == config.load([REPO / "params.yaml"], overrides)


def test_unknown_key_is_one_line_error_naming_it(tmp_path):
    path = edited(tmp_path, lambda params: rename(params["data"]["faces"], "min_images", "min_imagez"))
    with pytest.raises(PipelineError) as err:
        config.load([path])
    message = str(err.value)
    assert "\n" not in message and "data.faces" in message and "min_imagez" in message


def test_wrong_type_names_the_key(tmp_path):
    path = edited(tmp_path, lambda params: params["data"]["faces"].update(n_tasks="ten"))
    with pytest.raises(PipelineError, match=r"data\.faces\.n_tasks: 'ten' is not of type 'integer'"):
        config.load([path])


def test_typo_in_another_profile_is_caught(tmp_path):
    path = edited(tmp_path, lambda params: rename(params["profiles"]["smoke"]["data"]["faces"], "n_tasks", "n_taskz"))
    with pytest.raises(PipelineError, match=r"profile smoke.*n_taskz"):
        config.load([path])


def test_unknown_profile(tmp_path):
    with pytest.raises(PipelineError, match=r"profile: 'nope' is not one of"):
        config.load([REPO / "params.yaml"], ["profile=nope"])


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "profile: tiny\nseed: [0\n")
    with pytest.raises(PipelineError, match=r"params\.yaml:\d+: invalid YAML"):
        config.load([path])


def test_missing_params_file(tmp_path):
    with pytest.raises(PipelineError, match="params file not found"):
        config.load([tmp_path / "absent.yaml"])


def test_override_beats_profile_overlay():
    cfg = config.load([REPO / "params.yaml"], ["profile=smoke", "data.faces.n_tasks=1"])
    assert cfg["data"]["faces"]["n_tasks"] == 1  # smoke says 2
    assert cfg["data"]["faces"]["resolution"] == 32  # from the smoke overlay


def test_bad_override_syntax():
    with pytest.raises(PipelineError, match="expected KEY=VALUE"):
        config.load([REPO / "params.yaml"], ["seed"])


def test_flatten_nest_roundtrip():
    tree = {"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}
    assert config.nest(config.flatten(tree)) == tree


def test_schema_file_is_the_workflow_one():
    assert config.SCHEMA_PATH == REPO / "workflow" / "schemas" / "params.schema.yaml"
    assert yaml.safe_load(config.SCHEMA_PATH.read_text())["additionalProperties"] is False


def test_chain_settings_hold_only_what_a_chain_depends_on():
    cfg = config.load([REPO / "params.yaml"])
    faces = config.chain_settings(cfg, "faces", "clora")
    unrelated = config.load([REPO / "params.yaml"], ["train.steps.landmarks=7", "train.checkpoint_every=3",
                                                     "train.methods=[clora]", "methods.lora_sequential.lr=0.5"])
    assert config.chain_settings(unrelated, "faces", "clora") == faces
    for override in ("train.steps.faces=7", "methods.clora.lr=0.5", "train.batch_size=3", "torch_threads=2"):
        changed = config.load([REPO / "params.yaml"], [override])
        assert config.chain_settings(changed, "faces", "clora") != faces, override
    with pytest.raises(PipelineError, match="methods.nope"):
        config.chain_settings(cfg, "faces", "nope")


def test_a_method_parameter_may_be_given_per_benchmark():
    cfg = config.load([REPO / "params.yaml"], ["methods.clora.penalty_weight={faces: 2.0, landmarks: 0.5}"])
    assert config.method_params(cfg, "faces", "clora")["penalty_weight"] == 2.0
    assert config.chain_settings(cfg, "landmarks", "clora")["method"]["penalty_weight"] == 0.5
    assert config.method_params(cfg, "landmarks", "clora")["lr"] == cfg["methods"]["clora"]["lr"]
    ranks = config.load([REPO / "params.yaml"], ["methods.lora_sequential.rank={faces: 2, landmarks: 8}"])
    assert config.chain_settings(ranks, "faces", "lora_sequential")["method"]["rank"] == 2
    assert config.chain_settings(ranks, "landmarks", "lora_sequential")["method"]["rank"] == 8
    with pytest.raises(PipelineError, match="methods.clora.rank"):
        config.load([REPO / "params.yaml"], ["methods.clora.rank={faces: 0, landmarks: 8}"])
    prompts = config.method_params(cfg, "landmarks", "dreambooth")["prior_prompt"]
    assert prompts == "a photo of a waterfall"
    partial = config.load([REPO / "params.yaml"], ["methods.lora_sequential.lr={faces: 2.0e-4}"])
    with pytest.raises(PipelineError, match="methods.lora_sequential.lr: no value for benchmark 'landmarks'"):
        config.method_params(partial, "landmarks", "lora_sequential")
    # an override of one benchmark's entry merges into a per-benchmark mapping of params.yaml
    merged = config.load([REPO / "params.yaml"], ["methods.clora.rank={faces: 2}"])
    assert config.method_params(merged, "faces", "clora")["rank"] == 2
    assert config.method_params(merged, "landmarks", "clora")["rank"] == config.method_params(
        config.load([REPO / "params.yaml"]), "landmarks", "clora")["rank"]


def test_the_token_learning_rate_is_set_per_method_and_profile():
    tiny = config.load([REPO / "params.yaml"])
    assert {config.token_lr(tiny, "faces", m) for m in tiny["methods"]} == {tiny["train"]["token_lr"]}
    paper = config.load([REPO / "params.yaml"], ["profile=paper_faces"])
    # the paper's one rate per method: 5e-4 for the LoRA methods, 5e-6 for the others; TI its own
    assert config.token_lr(paper, "faces", "clora") == config.method_params(paper, "faces", "clora")["lr"] == 5e-4
    assert config.token_lr(paper, "faces", "custom_diffusion_ewc") == 5e-6
    assert config.token_lr(paper, "faces", "textual_inversion") == 5e-3
    assert config.chain_settings(paper, "faces", "dreambooth")["train"]["token_lr"] == 5e-6
    own = config.load([REPO / "params.yaml"], ["methods.clora.token_lr=0.01"])
    assert config.token_lr(own, "faces", "clora") == 0.01 and config.token_lr(own, "faces", "lora_sequential") == 0.05
    no_lr = config.load([REPO / "params.yaml"], ["train.token_lr=method"])
    with pytest.raises(PipelineError, match="methods.textual_inversion.token_lr"):
        config.token_lr(no_lr, "faces", "textual_inversion")
    with pytest.raises(PipelineError, match="train.token_lr"):
        config.load([REPO / "params.yaml"], ["train.token_lr=fast"])
