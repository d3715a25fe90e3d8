"""URLs of the OpenAI-compatible API."""

from __future__ import annotations

from django.urls import path, register_converter

from gateway import views


class AnyText:
    """Any non-empty text, line breaks included (`path` stops at one): every id gets the API's own 404."""

    regex = "[\\s\\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AnyText, "anytext")

urlpatterns = [
    path("v1/chat/completions", views.chat_completions, name="chat-completions"),
    path("v1/completions", views.completions, name="completions"),
    path("v1/embeddings", views.embeddings, name="embeddings"),
    path("v1/responses", views.responses, name="responses"),
    path("v1/responses/input_tokens", views.responses_input_tokens, name="responses-input-tokens"),
    path("v1/messages", views.messages, name="messages"),
    path("v1/messages/count_tokens", views.messages_count_tokens, name="messages-count-tokens"),
    path("v1/rerank", views.rerank, name="rerank"),
    path("v1/audio/transcriptions", views.audio_transcriptions, name="audio-transcriptions"),
    path("v1/models", views.models, name="models"),
    path("v1/models/<anytext:model_id>", views.model_detail, name="model-detail"),
]
