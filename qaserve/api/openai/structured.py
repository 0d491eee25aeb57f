"""Structured outputs on /v1: OpenAI's ``response_format`` and vLLM's two spellings of the same
constraint (the ``guided_*`` fields its 0.10 server took, the ``structured_outputs`` object
current releases take), read into the one engine-facing ``OutputConstraint``."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from qaserve.engine import OutputConstraint


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("is blank")
    return text


def _no_nul(pattern: str) -> str:
    # vLLM 0.10 hands a regex to xgrammar's converter unchecked; a NUL byte is never a useful
    # pattern there (current vLLM refuses it too).
    if "\x00" in pattern:
        raise ValueError("contains a NUL character")
    return _not_blank(pattern)


# vLLM 0.10 compiles a grammar in its engine process, unchecked: an empty one kills the engine
# (current vLLM refuses it up front). Both are refused here, naming the field.
Grammar = Annotated[StrictStr, AfterValidator(_not_blank)]
Regex = Annotated[StrictStr, AfterValidator(_no_nul)]
Choices = Annotated[list[Annotated[StrictStr, Field(min_length=1)]], Field(min_length=1)]


def _schema_object(schema: dict | str) -> dict:
    """A JSON schema given as an object or as JSON text, as an object."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        if not isinstance(schema, dict):
            raise ValueError("a JSON schema is an object")
    return schema


# A JSON schema (the engine compiles it when the request reaches it).
JsonSchema = Annotated[dict | StrictStr, AfterValidator(_schema_object)]


def _schema_text(schema: dict) -> str:
    # As text: the engine-facing params must stay hashable.
    return json.dumps(schema, ensure_ascii=False)


class TextFormat(BaseModel):
    type: Literal["text"]


class JsonObjectFormat(BaseModel):
    type: Literal["json_object"]


class JsonSchemaSpec(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: StrictStr | None = None
    description: StrictStr | None = None
    # "schema" shadows a BaseModel method: the wire name is an alias.
    json_schema: dict = Field(default_factory=dict, alias="schema")
    # Constrained either way: the engine enforces the schema token by token.
    strict: bool | None = None


class JsonSchemaFormat(BaseModel):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")
]


class StructuredOutputs(BaseModel):
    """vLLM's ``structured_outputs`` object: one of json, regex, choice, grammar, json_object."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    json_schema: JsonSchema | None = Field(default=None, alias="json")
    regex: Regex | None = None
    choice: Choices | None = None
    grammar: Grammar | None = None
    json_object: bool | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> StructuredOutputs:
        kinds = [self.json_schema, self.regex, self.choice, self.grammar, self.json_object]
        if sum(kind is not None and kind is not False for kind in kinds) != 1:
            raise ValueError("give exactly one of json, regex, choice, grammar, json_object")
        return self

    def constraint(self) -> OutputConstraint:
        schema = self.json_schema
        return OutputConstraint(
            json_schema=None if schema is None else _schema_text(schema),
            json_object=bool(self.json_object),
            regex=self.regex,
            choice=tuple(self.choice) if self.choice else None,
            grammar=self.grammar,
        )


# The fields that constrain an answer, in the order they validate: OpenAI's, current vLLM's,
# then vLLM 0.10's spellings, each a field of its own.
CONSTRAINT_FIELDS = (
    "response_format",
    "structured_outputs",
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
)


def _constrains(value: Any) -> bool:
    return value is not None and not isinstance(value, TextFormat)


def constraint_fields(values: dict) -> list[str]:
    """Which of a request's (validated) fields constrain its answer."""
    return [name for name in CONSTRAINT_FIELDS if _constrains(values.get(name))]


class StructuredRequest(BaseModel):
    """The request fields that constrain the answer; at most one of them may."""

    response_format: ResponseFormat | None = None
    structured_outputs: StructuredOutputs | None = None
    guided_json: JsonSchema | None = None
    guided_regex: Regex | None = None
    guided_choice: Choices | None = None
    guided_grammar: Grammar | None = None
    # Neither is honoured by vLLM's xgrammar backend (COMPACT_JSON sets the whitespace of
    # every JSON answer), and the backend is the server's choice: refused, not ignored.
    guided_whitespace_pattern: None = None
    guided_decoding_backend: None = None

    @field_validator("guided_whitespace_pattern", "guided_decoding_backend", mode="before")
    @classmethod
    def _engine_wide(cls, value: Any) -> None:
        if value is not None:
            raise ValueError("not chosen per request: see COMPACT_JSON in the README")
        return value

    @field_validator(*CONSTRAINT_FIELDS)
    @classmethod
    def _one_constraint(cls, value: Any, info: ValidationInfo) -> Any:
        # Fields validate in order: this one is refused if an earlier one constrains already.
        if _constrains(value):
            earlier = constraint_fields(info.data)
            if earlier:
                raise ValueError(f"{earlier[0]} and {info.field_name} each constrain the answer")
        return value

    def constraint_fields(self) -> list[str]:
        """The fields of this request that constrain its answer."""
        return constraint_fields(self.__dict__)

    def requested_constraint(self) -> OutputConstraint | None:
        """What this request's answer must match; None: anything."""
        if self.structured_outputs is not None:
            return self.structured_outputs.constraint()
        if self.guided_json is not None:
            return OutputConstraint(json_schema=_schema_text(self.guided_json))
        if self.guided_regex is not None:
            return OutputConstraint(regex=self.guided_regex)
        if self.guided_choice is not None:
            return OutputConstraint(choice=tuple(self.guided_choice))
        if self.guided_grammar is not None:
            return OutputConstraint(grammar=self.guided_grammar)
        if isinstance(self.response_format, JsonObjectFormat):
            return OutputConstraint(json_object=True)
        if isinstance(self.response_format, JsonSchemaFormat):
            schema = self.response_format.json_schema.json_schema
            return OutputConstraint(json_schema=_schema_text(schema))
        return None
