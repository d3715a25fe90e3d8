"""Request validation with DRF serializers: OpenAI's request shapes, errors naming the offending field."""

from __future__ import annotations

from typing import Any, ClassVar

from rest_framework import serializers

from gateway import errors


class AnyJSONField(serializers.Field):
    """A value passed on as it is, checked only for its JSON type (and, as an array, for at least `min_items`)."""

    def __init__(self, types: tuple[type, ...], min_items: int = 0, **kwargs: Any) -> None:
        self.types = types
        self.min_items = min_items
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, self.types) or (isinstance(data, bool) and bool not in self.types):
            names = " or ".join(t.__name__.replace("dict", "object").replace("list", "array") for t in self.types)
            raise serializers.ValidationError(f"must be {names.replace('str', 'string')}")
        if isinstance(data, list) and len(data) < self.min_items:
            raise serializers.ValidationError(f"must hold at least {self.min_items} item(s)")
        return data


class AnyOfField(serializers.Field):
    """A value one of several fields accepts (tried in order), passed on as it is: a string or a list of parts."""

    def __init__(self, *alternatives: serializers.Field, message: str, **kwargs: Any) -> None:
        self.alternatives = alternatives
        self.message = message
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        for alternative in self.alternatives:
            try:
                alternative.run_validation(data)
            except serializers.ValidationError:
                continue
            return data
        raise serializers.ValidationError(self.message)


class StrictCharField(serializers.CharField):
    """A string that must arrive as a JSON string (DRF would turn 7 into "7"), taken as sent (not trimmed):
    a blank one is refused unless allow_blank, NUL characters always (DRF's own validator)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a string")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """true or false, as JSON says (DRF would also take "yes", 1 or "on"), of which only `supported` are."""

    def __init__(self, supported: tuple[bool, ...] = (True, False), **kwargs: Any) -> None:
        self.supported = supported
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        if data not in self.supported:
            raise serializers.ValidationError(f"{str(data).lower()} is not supported")
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer (DRF would also take "7" or 7.0)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return data


class StrictFloatField(serializers.FloatField):
    """A JSON number (DRF would also take "0.5")."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class FormFloatField(serializers.FloatField):
    """A number sent as a multipart form's text ("0.2"); finite (DRF's own check)."""


class AudioFileField(serializers.FileField):
    """The uploaded audio file of a multipart form (not empty; its size is checked against MAX_AUDIO_BYTES by the
    service, with a 413)."""


class StopField(AnyOfField):
    """`stop`: a string or a list of up to 4 strings; always returned as a list."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            AnyJSONField((str,)),
            serializers.ListField(child=AnyJSONField((str,)), max_length=4),
            message="must be a string or a list of at most 4 strings",
            **kwargs,
        )

    def to_internal_value(self, data: Any) -> list[str]:
        data = super().to_internal_value(data)
        return [data] if isinstance(data, str) else data


class TextPartSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["text"])
    text = AnyJSONField((str,))


class ImageURLField(StrictCharField):
    """An image's URL: checked with the model it is for (gateway.images), which also gives its pattern."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "A data: URI (base64 PNG, JPEG, GIF or WebP) or an allow-listed http(s) URL.")
        super().__init__(**kwargs)


class ImageURLSerializer(serializers.Serializer):
    url = ImageURLField()


class ImagePartSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["image_url"])
    image_url = AnyOfField(ImageURLField(), ImageURLSerializer(), message='must be a URL or {"url": …}')


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "developer", "user", "assistant", "tool"])
    content = AnyOfField(
        AnyJSONField((str,)),
        serializers.ListField(
            child=AnyOfField(TextPartSerializer(), ImagePartSerializer(), message="must be a text or image_url part")
        ),
        message='must be a string or a list of {"type": "text", "text": …} and {"type": "image_url", "image_url": …}',
        allow_null=True,
        required=False,
    )
    name = StrictCharField(required=False)
    tool_calls = AnyJSONField((list,), required=False)
    tool_call_id = StrictCharField(required=False)
    # A message needs one of these, not null and not an empty list: content, or the calls of an assistant's turn
    # that only calls tools. (The OpenAPI document reads the same tuple.)
    one_of_required = ("content", "tool_calls")

    def validate(self, attrs: dict) -> dict:
        if all(attrs.get(name) in (None, []) for name in self.one_of_required):
            raise serializers.ValidationError({"content": "is required"})
        return attrs


class SamplingSerializer(serializers.Serializer):
    """Fields shared by chat and legacy completions."""

    # Unknown fields go on to llama-server, so that llama.cpp's own top_k, min_p, ignore_eos, … work.
    passes_unknown_fields: ClassVar[bool] = True

    model = StrictCharField()
    stream = StrictBooleanField(required=False, default=False)
    stream_options = AnyJSONField((dict,), required=False, allow_null=True)
    max_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1)
    temperature = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=2)
    top_p = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=1)
    # Choices per prompt, each a task of its own on llama-server, which refuses more than its slots (a 400).
    n = StrictIntegerField(required=False, min_value=1, max_value=128)
    stop = StopField(required=False, allow_null=True)
    seed = StrictIntegerField(required=False, allow_null=True)
    presence_penalty = StrictFloatField(required=False, allow_null=True, min_value=-2, max_value=2)
    frequency_penalty = StrictFloatField(required=False, allow_null=True, min_value=-2, max_value=2)
    logit_bias = AnyJSONField((dict,), required=False, allow_null=True)
    user = StrictCharField(required=False, allow_blank=True)


class ChatRequestSerializer(SamplingSerializer):
    messages = MessageSerializer(many=True, allow_empty=False)
    max_completion_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1)
    response_format = AnyJSONField((dict,), required=False, allow_null=True)
    tools = AnyJSONField((list,), required=False, allow_null=True)
    tool_choice = AnyJSONField((str, dict), required=False, allow_null=True)
    parallel_tool_calls = StrictBooleanField(required=False)
    logprobs = StrictBooleanField(required=False)
    top_logprobs = StrictIntegerField(required=False, min_value=0, max_value=20)


class CompletionRequestSerializer(SamplingSerializer):
    prompt = AnyJSONField((str, list), min_items=1)  # an empty list is no prompt at all
    echo = StrictBooleanField(supported=(False,), required=False, default=False)
    logprobs = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=5)
    suffix = StrictCharField(required=False, allow_null=True)


class ResponsesRequestSerializer(serializers.Serializer):
    """OpenAI's Responses API: what the gateway reads of it; the rest (tools, instructions, reasoning, …) goes on to
    llama-server as it came."""

    passes_unknown_fields: ClassVar[bool] = True
    model = StrictCharField()
    input = AnyJSONField((str, list))
    stream = StrictBooleanField(required=False, default=False)
    max_output_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1)
    previous_response_id = StrictCharField(required=False, allow_null=True)
    store = StrictBooleanField(required=False, allow_null=True)


class ResponsesInputTokensSerializer(serializers.Serializer):
    passes_unknown_fields: ClassVar[bool] = True
    model = StrictCharField()
    input = AnyJSONField((str, list))


class AnthropicMessageSerializer(serializers.Serializer):
    """One message of a Messages request (its content, text or blocks, goes on as it came)."""

    role = serializers.ChoiceField(choices=["user", "assistant"])
    content = AnyJSONField((str, list))


class MessagesRequestSerializer(serializers.Serializer):
    """Anthropic's Messages API: what the gateway reads of it; the rest (system, tools, tool_choice, thinking, …)
    goes on to llama-server as it came."""

    passes_unknown_fields: ClassVar[bool] = True
    model = StrictCharField()
    messages = AnthropicMessageSerializer(many=True, allow_empty=False)
    max_tokens = StrictIntegerField(min_value=1)
    stream = StrictBooleanField(required=False, default=False)


class CountTokensSerializer(serializers.Serializer):
    passes_unknown_fields: ClassVar[bool] = True
    model = StrictCharField()
    messages = AnthropicMessageSerializer(many=True, allow_empty=False)


class EmbeddingRequestSerializer(serializers.Serializer):
    passes_unknown_fields: ClassVar[bool] = False
    model = StrictCharField()
    input = AnyOfField(
        AnyJSONField((str,)),
        serializers.ListField(child=AnyJSONField((str,)), min_length=1),
        serializers.ListField(child=StrictIntegerField(), min_length=1),
        serializers.ListField(child=serializers.ListField(child=StrictIntegerField()), min_length=1),
        message="must be a string, or a non-empty list of strings, of token ids or of token id lists",
    )
    encoding_format = serializers.ChoiceField(choices=["float", "base64"], required=False, default="float")
    dimensions = StrictIntegerField(required=False, min_value=1)
    user = StrictCharField(required=False, allow_blank=True)


class RerankRequestSerializer(serializers.Serializer):
    """llama-server's /v1/rerank (Jina's and Cohere's shape): the documents ranked by relevance to the query."""

    passes_unknown_fields: ClassVar[bool] = False
    model = StrictCharField()
    query = StrictCharField()
    documents = serializers.ListField(child=StrictCharField(allow_blank=True), min_length=1)
    top_n = StrictIntegerField(required=False, min_value=1)


class TranscriptionRequestSerializer(serializers.Serializer):
    """OpenAI's /v1/audio/transcriptions form (multipart/form-data: every field but the file arrives as text).
    llama-server answers JSON only: `text` is that answer's text, put in plain text by the gateway."""

    passes_unknown_fields: ClassVar[bool] = False
    form: ClassVar[bool] = True  # multipart/form-data (the OpenAPI document reads it)
    file = AudioFileField()
    model = StrictCharField()
    language = StrictCharField(required=False, allow_blank=True, help_text="The audio's language (ISO-639-1).")
    prompt = StrictCharField(required=False, allow_blank=True, help_text="Text to guide the transcription.")
    response_format = serializers.ChoiceField(
        choices=["json", "text"], required=False, default="json",
        error_messages={"invalid_choice": '"{input}" is not supported: json or text (llama-server gives no segments)'},
    )  # fmt: skip
    temperature = FormFloatField(required=False, min_value=0, max_value=1)


_validators: dict[type[serializers.Serializer], serializers.Serializer] = {}


def _validator(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    # One instance per class: DRF deep-copies every declared field each time a serializer is created, which
    # cost more than the rest of a request. run_validation keeps no state on the instance, and it runs without
    # an await, so requests on the event loop cannot interleave inside it.
    if serializer_class not in _validators:
        _validators[serializer_class] = serializer_class()
    return _validators[serializer_class]


def validate(
    serializer_class: type[serializers.Serializer], body: Any, extra_allowed: bool | None = None
) -> tuple[dict, dict]:
    """(known fields validated, unknown fields) or APIError 400 naming the field. Unknown fields are refused unless
    `extra_allowed` (by default: the serializer's `passes_unknown_fields`, which the OpenAPI document shows)."""
    if extra_allowed is None:
        extra_allowed = getattr(serializer_class, "passes_unknown_fields", False)
    if not isinstance(body, dict):
        raise errors.invalid("The request body must be a JSON object.")
    serializer = _validator(serializer_class)
    try:
        data = serializer.run_validation(body)
    except serializers.ValidationError as exc:
        param, message = errors.first_error(exc.detail)
        raise errors.invalid(f"Invalid value for '{param}': {message}", param=param) from None
    extra = {k: v for k, v in body.items() if k not in serializer.fields}
    if extra and not extra_allowed:
        name = sorted(extra)[0]
        raise errors.invalid(f"Unrecognized request argument supplied: {name}", param=name)
    return data, extra
