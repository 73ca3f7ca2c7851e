"""`/v1/conversations`: OpenAI's Conversations API on the pages' store. A conversation is a chat-page conversation
(`core.api_store`): one made here shows in the chat page's sidebar, and one made in the browser opens here by its
`?c=` id (bare or as `conv_<id>`). Items are its messages (`server.api.items`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.api.body import read_json
from server.api.errors import ApiError
from server.api.items import page, read_items, to_items
from server.api.response_schemas import ConversationCreate, ConversationUpdate, ItemsCreate
from server.api.responses import api_store, conversation_key, list_query
from server.api.streaming import in_thread


def _shape(conversation) -> dict:
    return {
        "id": f"conv_{conversation.id}",
        "object": "conversation",
        "created_at": int(conversation.created),
        "metadata": conversation.metadata,
    }


def _found(request: Request):
    cid = conversation_key(request.path_params["conversation_id"])
    conversation = api_store().conversation(cid)
    if conversation is None:
        raise ApiError(
            404,
            f"No conversation {request.path_params['conversation_id'][:80]!r}.",
            param="conversation_id",
            code="not_found",
        )
    return conversation


def _items(cid: str) -> list[dict]:
    return [item for message in api_store().store.messages(cid) for item in to_items(message)]


async def create(request: Request) -> Response:
    body = await read_json(request, ConversationCreate)
    messages = read_items(body.items or [], "items")

    def made():
        store = api_store()
        return store.conversation(store.create_conversation(messages, body.metadata or {}))

    return JSONResponse(_shape(await in_thread(made)))


async def retrieve(request: Request) -> Response:
    return JSONResponse(_shape(await in_thread(_found, request)))


async def update(request: Request) -> Response:
    body = await read_json(request, ConversationUpdate)

    def updated():
        conversation = _found(request)
        api_store().set_metadata(conversation.id, body.metadata)
        return api_store().conversation(conversation.id)

    return JSONResponse(_shape(await in_thread(updated)))


async def delete(request: Request) -> Response:
    def deleted():
        conversation = _found(request)
        api_store().store.delete(conversation.id)
        return conversation

    conversation = await in_thread(deleted)
    return JSONResponse({"id": f"conv_{conversation.id}", "object": "conversation.deleted", "deleted": True})


async def list_items(request: Request) -> Response:
    def listed():
        return page(_items(_found(request).id), *list_query(request, default_order="desc"))

    return JSONResponse(await in_thread(listed))


async def add_items(request: Request) -> Response:
    body = await read_json(request, ItemsCreate)
    messages = read_items(body.items, "items")

    def added():
        conversation = _found(request)
        if not api_store().append(conversation.id, messages):
            raise ApiError(404, "The conversation was deleted meanwhile.", param="conversation_id", code="not_found")
        items = [item for message in messages for item in to_items(message)]
        return {
            "object": "list",
            "data": items,
            "first_id": items[0]["id"],
            "last_id": items[-1]["id"],
            "has_more": False,
        }

    return JSONResponse(await in_thread(added))


def _item(request: Request) -> tuple:
    conversation = _found(request)
    wanted = request.path_params["item_id"]
    for message in api_store().store.messages(conversation.id):
        for item in to_items(message):
            if item["id"] == wanted:
                return conversation, message, item
    raise ApiError(404, f"No item {wanted[:80]!r} in this conversation.", param="item_id", code="not_found")


async def retrieve_item(request: Request) -> Response:
    _, _, item = await in_thread(_item, request)
    return JSONResponse(item)


async def delete_item(request: Request) -> Response:
    def deleted():
        conversation, message, _ = _item(request)
        api_store().hide(conversation.id, message["id"])
        return api_store().conversation(conversation.id)

    return JSONResponse(_shape(await in_thread(deleted)))


ROUTES = [
    ("POST", "/v1/conversations", create),
    ("GET", "/v1/conversations/{conversation_id}", retrieve),
    ("POST", "/v1/conversations/{conversation_id}", update),
    ("DELETE", "/v1/conversations/{conversation_id}", delete),
    ("GET", "/v1/conversations/{conversation_id}/items", list_items),
    ("POST", "/v1/conversations/{conversation_id}/items", add_items),
    ("GET", "/v1/conversations/{conversation_id}/items/{item_id}", retrieve_item),
    ("DELETE", "/v1/conversations/{conversation_id}/items/{item_id}", delete_item),
]
