"""Which backend last read each conversation, so that its next turn goes back there: to the llama-server whose slot
still holds its start, or to the node that saved it to disk (gateway.lifecycle.promptcache). Kept per gateway
process, for the most recent conversations: a miss only costs reading the prompt again."""

from __future__ import annotations

from collections import OrderedDict

from gateway.prefix import Conversation

REMEMBERED = 10_000  # conversations

_last: OrderedDict[str, int] = OrderedDict()  # a conversation's longest prefix hash → the backend that read it


def remember(talk: Conversation, backend_id: int) -> None:
    if not talk.boundaries:
        return
    head = talk.boundaries[-1].hash
    _last[head] = backend_id
    _last.move_to_end(head)
    while len(_last) > REMEMBERED:
        _last.popitem(last=False)


def backend_for(talk: Conversation | None) -> int | None:
    """The backend that read the longest prefix of this conversation, if one is remembered."""
    if talk is None:
        return None
    for boundary in reversed(talk.boundaries):
        if (backend_id := _last.get(boundary.hash)) is not None:
            return backend_id
    return None
