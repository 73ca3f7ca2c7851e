"""Nothing in ADAPTERS_DIR or TEAMS_FILE stops the base model from serving: a real `streamlit run app.py` with
the demo model, an adapters folder a stranger's zips and links made, and a teams file nested 100k deep, then
one with bad entries under bad names (the API reads the teams file on each request)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import requests

from tests.browser import start_streamlit
from tests.conftest import ROOT
from tests.test_api import BASE, stop, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.model]
SHIPPED_TEAMS = json.loads((ROOT / "teams.json").read_text(encoding="utf-8"))


def hostile_adapters(root) -> None:
    shutil.copytree(ROOT / "adapters/captain-quill", root / "captain-quill")
    os.mkdir(os.path.join(os.fsencode(str(root)), "欢欢".encode("gbk")))  # a Windows zip's folder name
    os.symlink(root / "loop", root / "loop")
    os.symlink("..", root / "up")
    shutil.copytree(ROOT / "adapters/captain-quill", root / "huanhuan/huanhuan")  # a zip extracted into its folder
    (root / "huanhuan/__MACOSX").mkdir()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app with the hostile adapters and a teams file nested 100k deep; yields (url, teams file)."""
    adapters = tmp_path_factory.mktemp("adapters")
    hostile_adapters(adapters)
    teams = tmp_path_factory.mktemp("teams") / "teams.json"
    teams.write_text("[" * 100_000 + "]" * 100_000)
    proc, url = start_streamlit(
        "app.py",
        tmp_path_factory.mktemp("data"),
        {"ADAPTERS_DIR": str(adapters), "TEAMS_FILE": str(teams), "CONTEXT_LENGTH": "1024"},
    )
    try:
        wait_healthy(url)
        yield url, teams
    finally:
        stop(proc)


def model_ids(url: str) -> set[str]:
    response = requests.get(f"{url}/v1/models", timeout=30)
    assert response.status_code == 200, response.text
    return {model["id"] for model in response.json()["data"]}


def base_answers(url: str) -> str:
    response = requests.post(
        f"{url}/v1/chat/completions",
        json={"model": BASE, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_hostile_adapters_and_a_deeply_nested_teams_file_leave_the_model_serving(server):
    url, _ = server
    assert requests.get(f"{url}/health", timeout=10).status_code == 200
    ids = model_ids(url)
    assert {BASE, "captain-quill"} <= ids
    assert not {"loop", "up", "huanhuan"} & ids and not any(i.startswith("team:") for i in ids)
    assert base_answers(url)


def test_bad_team_entries_under_bad_names_leave_the_good_teams_and_the_model_serving(server):
    url, teams = server
    good = SHIPPED_TEAMS["ai-standards"]
    hostile = {"bell\x07\u202e": good, "x" * 10_000: 5, "odd": {**good, "\u202e\x1b": 1}}
    teams.write_text(json.dumps({**hostile, **SHIPPED_TEAMS}), encoding="utf-8")
    ids = model_ids(url)
    assert {BASE, "captain-quill", "team:ai-standards", "team:harbour-council"} <= ids
    assert not any(i.startswith("team:") for i in ids - {"team:ai-standards", "team:harbour-council"})
    assert base_answers(url)
