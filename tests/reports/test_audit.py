import copy
import json

import pytest
import yaml

from continual_diffusion.methods import METHODS
from continual_diffusion.stages.report import audit
from continual_diffusion.utils.errors import PipelineError
from tests.reports.helpers import COSTS, fake_summary, lower

REPO_REPORTED = "reports/reported/paper_numbers.yaml"
GOOD = lower([[1.0], [1.0, 1.0], [1.0, 0.9, 1.0]])
BAD = lower([[1.0], [0.5, 1.0], [0.2, 0.4, 1.0]])


def summary_with(clora, lora):
    return fake_summary({("faces", "clora", "accuracy_closed"): [clora],
                         ("faces", "lora_sequential", "accuracy_closed"): [lora],
                         ("faces", "clora", "mmd"): [1 - clora],
                         ("faces", "lora_sequential", "mmd"): [1 - lora]})


REPORTED = {
    "defaults": {"relative_tolerance": 0.1},
    "values": [
        {"id": "np", "quantity": "n_param_percent", "setting": "sd_v1", "benchmark": "any", "method": "clora",
         "table": "T1", "row": "C-LoRA", "column": "N_param", "value": 0.092, "tolerance": 0.0005, "source": "s"},
        {"id": "a", "quantity": "final", "metric": "mmd", "setting": "paper", "benchmark": "faces", "method": "clora",
         "table": "T1", "row": "C-LoRA", "column": "A_mmd", "value": 0.5, "tolerance": None, "source": "s"},
        {"id": "empty", "quantity": "n_param_percent", "setting": "sd_v1", "benchmark": "any",
         "method": "lora_sequential", "table": "T1", "row": "LoRA", "column": "N_param", "value": None,
         "tolerance": None, "source": "s"},
    ],
    "claims": [
        {"id": "lower_f", "statement": "C-LoRA forgets less", "relation": "better_than_all", "quantity": "forgetting",
         "metrics": ["accuracy_closed", "mmd"], "method": "clora", "others": ["lora_sequential"], "margin": 0.0,
         "source": "s"},
        {"id": "best_a", "statement": "C-LoRA ends better", "relation": "better_than_all", "quantity": "final",
         "metrics": ["mmd"], "method": "clora", "others": ["lora_sequential"], "margin": 0.0, "source": "s"},
        {"id": "forgets", "statement": "LoRA forgets", "relation": "above", "quantity": "forgetting",
         "metric": "accuracy_closed", "methods": ["lora_sequential"], "threshold": 0.1, "source": "s"},
    ],
}


def statuses(rows):
    return {(r["id"], r["claim"].split("[")[-1]): r["status"] for r in rows}


def test_claims_hold_when_clora_forgets_less_and_fail_when_it_does_not():
    rows = audit.audit_claims(REPORTED, summary_with(GOOD, BAD), COSTS)
    assert {r["status"] for r in rows} == {audit.REPRODUCED}
    lower_f = [r for r in rows if r["id"] == "lower_f"]
    assert lower_f[0]["delta"] == pytest.approx(((1 - 0.2) + (1 - 0.4)) / 2 - (0 + 0.1) / 2)
    swapped = audit.audit_claims(REPORTED, summary_with(BAD, GOOD), COSTS)
    by_id = {r["id"]: r for r in swapped}
    assert by_id["lower_f"]["status"] == audit.NOT_REPRODUCED and by_id["lower_f"]["failing"] == ["lora_sequential"]
    assert by_id["best_a"]["status"] == audit.NOT_REPRODUCED  # MMD: the lower final value wins
    assert by_id["forgets"]["status"] == audit.NOT_REPRODUCED  # GOOD as LoRA forgets 0.05 < 0.1


def test_a_claim_with_a_method_that_did_not_run_is_not_comparable():
    reported = copy.deepcopy(REPORTED)
    reported["claims"][0]["others"].append("dreambooth")
    rows = audit.audit_claims(reported, summary_with(GOOD, BAD), COSTS)
    assert rows[0]["status"] == "not comparable: methods not run (dreambooth)"


def test_a_claim_on_a_metric_the_profile_did_not_evaluate_says_so_not_that_methods_did_not_run():
    # a paper profile: every method ran, scored with mmd only (no miniature identity accuracy)
    only_mmd = fake_summary({("faces", "clora", "mmd"): [1 - GOOD], ("faces", "lora_sequential", "mmd"): [1 - BAD]})
    by_claim = statuses(audit.audit_claims(REPORTED, only_mmd, COSTS))
    expected = "not comparable: accuracy_closed not evaluated in this profile (evaluation.metrics)"
    assert by_claim[("lower_f", "faces, forgetting of accuracy_closed]")] == expected
    assert by_claim[("forgets", "faces, forgetting of accuracy_closed]")] == expected
    assert by_claim[("lower_f", "faces, forgetting of mmd]")] == audit.REPRODUCED


def test_values_compare_within_tolerance_and_respect_the_setting():
    rows = {r["id"]: r for r in audit.audit_values(REPORTED, summary_with(GOOD, BAD), COSTS, "miniature")}
    assert rows["np"]["status"] == audit.REPRODUCED and rows["np"]["delta"] == pytest.approx(0.09221 - 0.092)
    assert rows["a"]["status"] == audit.MINIATURE
    assert rows["empty"]["status"] == audit.NO_VALUE
    paper = {r["id"]: r for r in audit.audit_values(REPORTED, summary_with(GOOD, BAD), COSTS, "paper")}
    ours = 1 - GOOD[-1].mean()  # A_mmd of the fake summary
    assert paper["a"]["delta"] == pytest.approx(ours - 0.5)
    assert paper["a"]["status"] == (audit.REPRODUCED if abs(ours - 0.5) <= 0.05 else audit.NOT_REPRODUCED)
    reported = copy.deepcopy(REPORTED)
    reported["values"][0]["value"] = 0.2
    assert audit.audit_values(reported, summary_with(GOOD, BAD), COSTS, "paper")[0]["status"] == audit.NOT_REPRODUCED


def test_write_audit_summary_counts_the_statuses(tmp_path):
    path = tmp_path / "reported.yaml"
    path.write_text(yaml.safe_dump(REPORTED))
    scope = {"profile": "smoke", "setting": "miniature", "setting_text": "mini", "benchmarks": ["faces"],
             "methods": ["clora", "lora_sequential"], "seeds": [0]}
    audit.write_audit(path, summary_with(GOOD, BAD), COSTS, scope, tmp_path / "audit")
    md = (tmp_path / "audit" / "audit.md").read_text()
    assert "4 of 4 claim checks reproduced" in md
    assert "| claim | paper value and source | ours (mean +- std, seeds) | delta | tolerance | status |" in md
    assert (tmp_path / "audit" / "audit.json").exists()


def test_a_malformed_entry_names_itself(tmp_path):
    bad = copy.deepcopy(REPORTED)
    bad["claims"][1]["relation"] = "beats"
    path = tmp_path / "reported.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(PipelineError, match=r"claims\[1\] \(best_a\): relation must be one of"):
        audit.load_reported(path)
    del bad["values"][0]["source"]
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(PipelineError, match=r"values\[0\] \(np\): missing key source"):
        audit.load_reported(path)


def test_the_committed_reported_values_are_well_formed():
    data = audit.load_reported(REPO_REPORTED)
    known = set(METHODS)
    for entry in data["values"]:
        assert entry["method"] is None or entry["method"] in known, entry["id"]
    for claim in data["claims"]:
        for m in [claim.get("method")] + claim.get("others", []) + claim.get("methods", []):
            assert m is None or m in known, (claim["id"], m)
    # the values FACTS.md knows are filled in; the paper's table cells are empty, never guessed
    by_id = {e["id"]: e for e in data["values"]}
    assert by_id["n_param_clora"]["value"] == 0.092 and by_id["n_param_custom_diffusion"]["value"] == 2.23
    assert all(e["value"] is None for e in data["values"] if e["setting"] == "paper")


FACE_REPORTED = {
    "defaults": {"relative_tolerance": 0.1},
    "values": [
        {"id": "a_face", "quantity": "final", "metric": "face_similarity", "setting": "paper", "benchmark": "faces",
         "method": "clora", "table": "T2", "row": "C-LoRA", "column": "A_face", "value": 0.5, "tolerance": None,
         "source": "s"},
        {"id": "a_face_lora", "quantity": "final", "metric": "face_similarity", "setting": "paper",
         "benchmark": "faces", "method": "lora_sequential", "table": "T2", "row": "LoRA", "column": "A_face",
         "value": 0.8, "tolerance": None, "source": "s"},
    ],
    "claims": [
        {"id": "best_face", "statement": "C-LoRA ends with the most similar faces", "relation": "better_than_all",
         "quantity": "final", "metric": "face_similarity", "method": "clora", "others": ["lora_sequential"],
         "margin": 0.0, "source": "s"},
        {"id": "face_above", "statement": "faces stay", "relation": "above", "quantity": "final",
         "metric": "face_similarity", "methods": ["clora", "lora_sequential"], "threshold": 0.1, "source": "s"},
        {"id": "face_equals", "statement": "C-LoRA's face A", "relation": "equals", "quantity": "final",
         "metric": "face_similarity", "method": "clora", "value": 0.5, "tolerance": 0.1, "source": "s"},
        {"id": "acc", "statement": "C-LoRA keeps identities", "relation": "above", "quantity": "final",
         "metric": "accuracy_closed", "methods": ["clora"], "threshold": 0.5, "source": "s"},
    ],
}


def test_an_undefined_metric_is_not_comparable_with_its_reason_and_renders_n_a(tmp_path):
    from tests.reports.helpers import face_summary
    from tests.test_summary import NO_FACE

    summary = face_summary(tmp_path)
    why = f"clora: undefined for concepts 1, 2, 3: {NO_FACE}"
    values = {r["id"]: r for r in audit.audit_values(FACE_REPORTED, summary, COSTS, "paper")}
    assert values["a_face"]["status"] == f"not comparable: n/a ({why})" and values["a_face"]["delta"] is None
    assert values["a_face_lora"]["status"] == audit.REPRODUCED  # A = 0.8 for LoRA
    claims = {r["id"]: r for r in audit.audit_claims(FACE_REPORTED, summary, COSTS)}
    for claim in ("best_face", "face_above", "face_equals"):
        assert claims[claim]["status"] == f"not comparable: n/a ({why})", claim
    assert claims["acc"]["status"] == audit.REPRODUCED
    path = tmp_path / "reported.yaml"
    path.write_text(yaml.safe_dump(FACE_REPORTED))
    scope = {"profile": "paper_faces", "setting": "paper", "setting_text": "sd", "benchmarks": ["faces"],
             "methods": ["clora", "lora_sequential"], "seeds": [0]}
    audit.write_audit(path, summary, COSTS, scope, tmp_path / "audit")
    md = (tmp_path / "audit" / "audit.md").read_text()
    assert "1 of 4 claim checks reproduced (not comparable: n/a: 3; reproduced: 1)" in md
    assert "| C-LoRA's face A [faces, final of face_similarity] | 0.5; s | n/a |" in md
    assert "C-LoRA n/a; LoRA (sequential) 0.8 +- 0 (seeds 0)" in md
    stored = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert stored["values"][0]["ours"] == [None, None, [0]]
