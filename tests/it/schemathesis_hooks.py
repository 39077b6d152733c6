"""Hooks for the schemathesis run of tests/it/openapi.rs: how to write a JSON Lines body."""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    """One JSON value per line; a generated list becomes one line per item."""
    items = value if isinstance(value, list) else [value]
    return "".join(json.dumps(item) + "\n" for item in items).encode()
