"""The shapes of the worker's commands and this session's events, checked.

They are declared once, in src/protocol/blender-session.ts; session_protocol.json beside
this file is the JSON Schema generated from there (scripts/session-protocol.ts), so the
worker and the session check the same shapes. This is a validator for the part of JSON
Schema that document uses (type, const, enum, minLength, minimum, maximum, properties,
required, additionalProperties, anyOf, oneOf); Blender's Python has no jsonschema package.
"""

import json
import os

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "session_protocol.json"),
          encoding="utf-8") as _stream:
    _DOCUMENT = json.load(_stream)

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    # JSON true/false arrive as bool, which Python counts as int.
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


class ProtocolError(ValueError):
    """A command or event that does not have its declared shape; the message names the field."""


def check_command(value):
    """A command from the worker, checked; raises ProtocolError."""
    _check(value, _DOCUMENT["commands"], "command")
    return value


def check_overrides(value):
    """The --overrides of a cold start, checked like an open command's."""
    _check(value, _DOCUMENT["overrides"], "overrides")
    return value


def check_project_layout(value):
    """The --project of a cold start (or null), checked like an open command's."""
    if value is not None:
        _check(value, _DOCUMENT["project"], "project")
    return value


def check_device(value):
    """The --device of a cold start (or null), checked like an open command's."""
    if value is not None:
        _check(value, _DOCUMENT["device"], "device")
    return value


def check_event(value):
    """An event this session is about to send: a mismatch is a bug here, not the scene's."""
    _check(value, _DOCUMENT["events"], "event")
    return value


def _check(value, schema, where):
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            _check_alternatives(value, schema[keyword], where)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[name](value) for name in types):
            raise ProtocolError(f"{where} must be {' or '.join(map(_article, types))}, got {_shown(value)}")
    if "const" in schema and value != schema["const"]:
        raise ProtocolError(f"{where} must be {json.dumps(schema['const'])}, got {_shown(value)}")
    if "enum" in schema and value not in schema["enum"]:
        raise ProtocolError(f"{where} must be one of {', '.join(map(json.dumps, schema['enum']))}, got {_shown(value)}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        raise ProtocolError(f"{where} must not be empty" if schema["minLength"] == 1 else f"{where} is too short")
    if "minimum" in schema and value < schema["minimum"]:
        raise ProtocolError(f"{where} must be at least {schema['minimum']}, got {value}")
    if "maximum" in schema and value > schema["maximum"]:
        raise ProtocolError(f"{where} must be at most {schema['maximum']}, got {value}")
    if isinstance(value, dict):
        _check_object(value, schema, where)


def _check_object(value, schema, where):
    for key in schema.get("required", []):
        if key not in value:
            raise ProtocolError(f"{where}.{key} is missing")
    properties = schema.get("properties", {})
    for key, item in value.items():
        if key in properties:
            _check(item, properties[key], f"{where}.{key}")
        elif schema.get("additionalProperties") is False:
            raise ProtocolError(f"{where}.{key} is not expected")


def _check_alternatives(value, alternatives, where):
    # A tagged union (commands by "cmd", events by "event"): name the alternative by its tag.
    for tag in ("cmd", "event"):
        tags = [alt.get("properties", {}).get(tag, {}).get("const") for alt in alternatives]
        if all(tags):
            if not isinstance(value, dict):
                raise ProtocolError(f"{where} must be an object, got {_shown(value)}")
            if value.get(tag) not in tags:
                raise ProtocolError(f"{where}.{tag} must be one of {', '.join(tags)}, got {_shown(value.get(tag))}")
            return _check(value, alternatives[tags.index(value[tag])], where)
    # "X or null" (a nullable field): only X's complaint says something.
    if value is not None:
        alternatives = [alt for alt in alternatives if alt.get("type") != "null"] or alternatives
    errors = []
    for alternative in alternatives:
        try:
            return _check(value, alternative, where)
        except ProtocolError as error:
            errors.append(str(error))
    raise ProtocolError(" or ".join(errors))


def _article(type_name):
    return {"object": "an object", "array": "an array", "integer": "an integer", "null": "null"}.get(type_name, f"a {type_name}")


def _shown(value):
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
