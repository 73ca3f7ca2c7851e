"""`POST /v1/embeddings` against a real `streamlit run app.py`: LangChain's `OpenAIEmbeddings` (its default sends
token arrays and gets a 400 saying what to set; with check_embedding_ctx_length=False it gets vectors), the
official `openai` client, and `dimensions` (only the model's own 384)."""

from __future__ import annotations

import openai
import pytest
import tiktoken

from tests.browser import start_streamlit
from tests.test_api import stop, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.model]
MODEL = "all-MiniLM-L6-v2"
TEXTS = ["The cat sat on the mat.", "A feline rested on a rug."]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    proc, url = start_streamlit("app.py", tmp_path_factory.mktemp("data"), {"CONTEXT_LENGTH": "1024"})
    wait_healthy(url)
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


def langchain(url, **extra):
    from langchain_openai import OpenAIEmbeddings

    return OpenAIEmbeddings(model=MODEL, base_url=f"{url}/v1", api_key="unused", max_retries=0, **extra)


@pytest.fixture
def offline_tiktoken(monkeypatch):
    """tiktoken fetches its cl100k_base table from the internet, which tests cannot reach: a byte-level encoding
    stands in for it, so LangChain's default path runs as it does anywhere and sends token arrays (byte ids
    here, cl100k ids there: either way not the embedding model's)."""
    ranks = {bytes([i]): i for i in range(256)}
    encoding = tiktoken.Encoding(name="cl100k_base", pat_str=r"\S+|\s+", mergeable_ranks=ranks, special_tokens={})
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: encoding)


def test_langchains_default_token_arrays_get_a_400_saying_what_to_set(url, offline_tiktoken):
    with pytest.raises(openai.BadRequestError) as refused:
        langchain(url).embed_documents(TEXTS)
    assert refused.value.param == "input" and "check_embedding_ctx_length=False" in refused.value.message


def test_langchain_with_text_inputs_gets_the_models_vectors(url, client):
    embedder = langchain(url, check_embedding_ctx_length=False)
    vectors = embedder.embed_documents(TEXTS)
    assert [len(v) for v in vectors] == [384, 384]
    expected = [d.embedding for d in client.embeddings.create(model=MODEL, input=TEXTS).data]
    for got, want in zip(vectors, expected):
        assert max(abs(a - b) for a, b in zip(got, want)) < 1e-4
    assert len(embedder.embed_query("a query")) == 384
    assert len(langchain(url, check_embedding_ctx_length=False, dimensions=384).embed_query("x")) == 384
    with pytest.raises(openai.BadRequestError) as refused:
        langchain(url, check_embedding_ctx_length=False, dimensions=256).embed_query("x")
    assert refused.value.param == "dimensions"


def test_dimensions_must_be_the_models_own_size(client):
    assert len(client.embeddings.create(model=MODEL, input="x", dimensions=384).data[0].embedding) == 384
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=MODEL, input="x", dimensions=7)
    assert refused.value.param == "dimensions" and "384" in refused.value.message


@pytest.mark.parametrize(
    "extra, param, words",
    [
        ({"input": [1, 2, 3]}, "input", "check_embedding_ctx_length=False"),
        ({"input": [[1, 2], [3]]}, "input", "token arrays"),
        ({"input": "x", "dimensions": 7}, "dimensions", "leave dimensions out or send 384"),
        ({"input": "x", "dimensions": 0}, "dimensions", "greater than"),
        ({"input": "x", "extra_body": {"dimensions": True}}, "dimensions", "integer"),
        ({"input": ["a", ""]}, "input", "non-empty"),
    ],
)
def test_bad_embedding_requests_are_refused_naming_the_field(client, extra, param, words):
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=MODEL, **extra)
    assert refused.value.param == param and words in refused.value.message
