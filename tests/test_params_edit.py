"""tests/helpers.edit_params: the end-to-end tests change params.yaml through YAML, not by text, and every value
they do not touch reads the same to Snakemake (PyYAML) and DVC (ruamel.yaml)."""

import shutil

import yaml
from ruamel.yaml import YAML

from tests.helpers import REPO, edit_params


def both_views(path):
    return yaml.safe_load(path.read_text()), YAML(typ="safe").load(path.read_text())


def test_a_round_trip_without_an_edit_keeps_every_value(tmp_path):
    copy = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", copy)
    edit_params(copy, lambda params: None)
    assert both_views(copy) == both_views(REPO / "params.yaml")


def test_an_edit_changes_only_its_key(tmp_path):
    copy = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", copy)
    edit_params(copy, lambda params: params["profiles"]["smoke"]["data"]["faces"].update(n_tasks=1))
    for before, after in zip(both_views(REPO / "params.yaml"), both_views(copy)):
        assert after["profiles"]["smoke"]["data"]["faces"]["n_tasks"] == 1
        after["profiles"]["smoke"]["data"]["faces"]["n_tasks"] = before["profiles"]["smoke"]["data"]["faces"]["n_tasks"]
        assert after == before
