"""Command-line flags generated from a settings class: each field marked with a Flag is
also that flag, its environment variable giving the default (a flag beats the variable).

Only the standard library and pydantic here, like every module of ``prep`` at import time
(the heavy libraries are imported inside the functions that use them).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings


@dataclass(frozen=True)
class Flag:
    """Marks a setting that is also the command-line flag ``name``."""

    name: str
    help: str | None = None


def flagged(settings_class: type[BaseSettings]) -> list[tuple[str, FieldInfo, Flag]]:
    """(field name, field, its Flag) for each field marked with one."""
    marked = []
    for name, field in settings_class.model_fields.items():
        flag = next((item for item in field.metadata if isinstance(item, Flag)), None)
        if flag is not None:
            marked.append((name, field, flag))
    return marked


def add_flags(parser: argparse.ArgumentParser, settings_class: type[BaseSettings]) -> BaseSettings:
    """Add a flag per marked field, defaulting to the environment's value; the settings read."""
    try:
        env = settings_class()
    except ValidationError as exc:
        parser.error(f"invalid environment: {exc}")
    for name, field, flag in flagged(settings_class):
        text = f"{flag.help or ''} [env {name.upper()}]".strip()
        options = {"default": getattr(env, name), "help": text}
        if field.annotation is bool:
            options["action"] = "store_true"
        elif get_origin(field.annotation) is Literal:
            options["choices"] = get_args(field.annotation)
        else:
            options["type"] = field.annotation
        parser.add_argument(flag.name, **options)
    return env


def parsed_settings(args: argparse.Namespace, settings_class: type[BaseSettings]) -> BaseSettings:
    """The settings with every flag's parsed value (the environment's, unless given)."""
    values = {
        name: getattr(args, flag.name.lstrip("-").replace("-", "_"))
        for name, _, flag in flagged(settings_class)
    }
    return settings_class.model_validate(values)
