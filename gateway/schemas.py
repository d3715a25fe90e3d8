"""Request validation with DRF serializers: OpenAI's request shapes, errors naming the offending field."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from gateway import errors


class StringOrListField(serializers.Field):
    """`stop`: a string or a list of up to 4 strings; always returned as a list."""

    def to_internal_value(self, data: Any) -> list[str]:
        if isinstance(data, str):
            return [data]
        if isinstance(data, list) and len(data) <= 4 and all(isinstance(s, str) for s in data):
            return data
        raise serializers.ValidationError("must be a string or a list of at most 4 strings")


class AnyJSONField(serializers.Field):
    """A value passed on as it is, checked only for its JSON type."""

    def __init__(self, types: tuple[type, ...], **kwargs: Any) -> None:
        self.types = types
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, self.types) or (isinstance(data, bool) and bool not in self.types):
            names = " or ".join(t.__name__.replace("dict", "object").replace("list", "array") for t in self.types)
            raise serializers.ValidationError(f"must be {names.replace('str', 'string')}")
        return data


class StrictCharField(serializers.CharField):
    """A string that must arrive as a JSON string: DRF would turn 7 into "7"."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a string")
        return super().to_internal_value(data)


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "developer", "user", "assistant", "tool"])
    content = AnyJSONField((str, list), allow_null=True, required=False)
    name = StrictCharField(required=False)
    tool_calls = AnyJSONField((list,), required=False)
    tool_call_id = serializers.CharField(required=False)

    def validate_content(self, content: Any) -> Any:
        if isinstance(content, list):
            for part in content:
                if not isinstance(part, dict) or part.get("type") not in ("text", "image_url"):
                    raise serializers.ValidationError('each content part must be {"type": "text"|"image_url", …}')
                if part["type"] == "text" and not isinstance(part.get("text"), str):
                    raise serializers.ValidationError("a text part needs a string `text`")
                if part["type"] == "image_url":
                    image = part.get("image_url")
                    url = image.get("url") if isinstance(image, dict) else image
                    if not isinstance(url, str):
                        raise serializers.ValidationError("an image_url part needs `image_url.url`")
        return content

    def validate(self, attrs: dict) -> dict:
        if attrs.get("content") is None and not attrs.get("tool_calls"):
            raise serializers.ValidationError({"content": "is required"})
        return attrs


class SamplingSerializer(serializers.Serializer):
    """Fields shared by chat and legacy completions."""

    model = StrictCharField()
    stream = serializers.BooleanField(required=False, default=False)
    stream_options = AnyJSONField((dict,), required=False, allow_null=True)
    max_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    temperature = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=2)
    top_p = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
    n = serializers.IntegerField(required=False, min_value=1, max_value=1)
    stop = StringOrListField(required=False, allow_null=True)
    seed = serializers.IntegerField(required=False, allow_null=True)
    presence_penalty = serializers.FloatField(required=False, allow_null=True, min_value=-2, max_value=2)
    frequency_penalty = serializers.FloatField(required=False, allow_null=True, min_value=-2, max_value=2)
    logit_bias = AnyJSONField((dict,), required=False, allow_null=True)
    user = StrictCharField(required=False, allow_blank=True)


class ChatRequestSerializer(SamplingSerializer):
    messages = MessageSerializer(many=True, allow_empty=False)
    max_completion_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    response_format = AnyJSONField((dict,), required=False, allow_null=True)
    tools = AnyJSONField((list,), required=False, allow_null=True)
    tool_choice = AnyJSONField((str, dict), required=False, allow_null=True)
    parallel_tool_calls = serializers.BooleanField(required=False)
    logprobs = serializers.BooleanField(required=False)
    top_logprobs = serializers.IntegerField(required=False, min_value=0, max_value=20)


class CompletionRequestSerializer(SamplingSerializer):
    prompt = AnyJSONField((str, list))
    echo = serializers.BooleanField(required=False, default=False)
    logprobs = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=5)
    suffix = serializers.CharField(required=False, allow_null=True)

    def validate_echo(self, echo: bool) -> bool:
        if echo:
            raise serializers.ValidationError("echo is not supported")
        return echo


class EmbeddingRequestSerializer(serializers.Serializer):
    model = StrictCharField()
    input = AnyJSONField((str, list))
    encoding_format = serializers.ChoiceField(choices=["float", "base64"], required=False, default="float")
    dimensions = serializers.IntegerField(required=False, min_value=1)
    user = StrictCharField(required=False, allow_blank=True)

    def validate_input(self, value: Any) -> Any:
        if isinstance(value, str):
            return value
        if not value:
            raise serializers.ValidationError("must not be empty")
        flat_tokens = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        texts = all(isinstance(v, str) for v in value)
        token_lists = all(isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value)
        if not (flat_tokens or texts or token_lists):
            raise serializers.ValidationError("must be a string, a list of strings, or token arrays")
        return value


_validators: dict[type[serializers.Serializer], serializers.Serializer] = {}


def _validator(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    # One instance per class: DRF deep-copies every declared field each time a serializer is created, which
    # cost more than the rest of a request. run_validation keeps no state on the instance, and it runs without
    # an await, so requests on the event loop cannot interleave inside it.
    if serializer_class not in _validators:
        _validators[serializer_class] = serializer_class()
    return _validators[serializer_class]


def validate(serializer_class: type[serializers.Serializer], body: Any, extra_allowed: bool) -> tuple[dict, dict]:
    """(known fields validated, unknown fields) or APIError 400 naming the field."""
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
