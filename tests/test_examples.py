"""`examples/experts_agent.py`, the tutorial's multi-agent script, run as a user runs it: a LangGraph agent
(the standards coordinator) whose tools are the expert personas, against a real `streamlit run app.py`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.browser import serving
from tests.conftest import ROOT, free_port

pytestmark = [pytest.mark.slow, pytest.mark.model]
KEY = "examples-key-5a0c"
SCRIPT = ROOT / "examples/experts_agent.py"


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("data"), {"API_KEY": KEY, "CONTEXT_LENGTH": "2048"}) as url:
        yield url


def run_script(*args: str, key: str = KEY) -> subprocess.CompletedProcess:
    env = {**os.environ, "STUDIO_API_KEY": key}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_coordinator_consults_each_expert_persona_and_answers(url):
    done = run_script("--base-url", f"{url}/v1", "--consult-each", "--max-tokens", "40", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    transcript = json.loads(done.stdout)
    assert transcript["task"].startswith("Draft AI compliance standards")
    steps = transcript["consultations"]
    assert [step["expert"] for step in steps] == ["computer-scientist", "legal-expert"]
    assert all(step["question"].strip() and step["answer"].strip() for step in steps)
    assert transcript["answer"].strip()
    assert KEY not in done.stdout + done.stderr


def test_the_plain_transcript_shows_who_was_asked(url):
    done = run_script("--base-url", f"{url}/v1", "--consult-each", "--max-tokens", "16", "--task", "Name one risk.")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1. computer-scientist was asked:" in done.stdout and "2. legal-expert was asked:" in done.stdout
    assert "Answer:" in done.stdout


def test_a_wrong_key_and_a_dead_server_say_what_to_do(url):
    refused = run_script("--base-url", f"{url}/v1", key="wrong-key")
    assert refused.returncode == 2 and "API key" in refused.stdout and "Traceback" not in refused.stderr
    dead = run_script("--base-url", f"http://127.0.0.1:{free_port()}/v1")
    assert dead.returncode == 2 and "streamlit run app.py" in dead.stdout and "Traceback" not in dead.stderr
