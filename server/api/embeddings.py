"""`/v1/embeddings`: vectors from the bundled sentence-transformers model (the reranker's, or `RERANK_MODEL`).

Text only: token arrays (what LangChain's `OpenAIEmbeddings` sends by default, tiktoken's ids) would be read with
another tokenizer, so they are refused saying what to send (`schemas.EmbeddingBody`). `dimensions` may only be
the model's own size: its vectors cannot be shortened (it was not trained for that, as OpenAI's v3 models were)."""

from __future__ import annotations

import base64

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.errors import StudioError
from core.settings import get_settings
from server.api.body import read_json
from server.api.errors import ApiError
from server.api.schemas import EmbeddingBody
from server.api.streaming import in_thread


def embedding_id() -> str:
    """The embedding model's id in /v1/models."""
    name = get_settings().rerank_model
    return "all-MiniLM-L6-v2" if name == "bundled" else name


async def embeddings(request: Request) -> Response:
    body = await read_json(request, EmbeddingBody)
    if body.model != embedding_id():
        raise ApiError(
            404,
            f"The embedding model {body.model!r} does not exist; use {embedding_id()!r}.",
            param="model",
            code="model_not_found",
        )
    if body.dimensions is not None and body.dimensions != (size := await in_thread(native_size)):
        raise ApiError(
            400,
            f"dimensions: {embedding_id()} gives {size}-dimensional vectors and cannot shorten them; leave "
            f"dimensions out or send {size}.",
            param="dimensions",
            code="invalid_value",
        )
    vectors, tokens = await in_thread(embed, body.texts())
    data = [
        {"object": "embedding", "index": i, "embedding": encode_vector(v, body.encoding_format)}
        for i, v in enumerate(vectors)
    ]
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def encoder():
    """The shared embedding model (loaded on first use; blocking), or 503 saying why it cannot load."""
    from runtime import get_reranker

    try:
        return get_reranker(get_settings().rerank_model)
    except StudioError as exc:
        raise ApiError(503, str(exc), code="model_unavailable", kind="server_error") from None


def native_size() -> int:
    return encoder().model.get_sentence_embedding_dimension()


def embed(texts: list[str]):
    return encoder().embed(texts)


def encode_vector(vector, encoding: str):
    if encoding == "base64":  # little-endian float32, as OpenAI sends it
        import numpy as np

        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return [float(x) for x in vector]
