"""Values that satisfy a JSON schema, chosen deterministically by a seeded RNG (for the simulator).

Covers what tool parameters and `response_format.json_schema` use in practice: type (or a list of
types), enum, const, objects (properties, required, additionalProperties), arrays (items, prefixItems,
minItems, maxItems, uniqueItems for enums), strings (minLength, maxLength, a few formats), numbers and
integers (minimum, maximum, exclusive bounds, multipleOf), booleans, null, anyOf / oneOf (first
usable branch), allOf (merged), and local `$ref`s (`#/$defs/…`, `#/definitions/…`). `pattern` is not
honoured. Recursion is cut at a fixed depth by preferring null or the shortest branch.
"""

from __future__ import annotations

import random
from typing import Any

WORDS = (
    "amber",
    "basil",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "garnet",
    "harbor",
    "indigo",
    "juniper",
    "kelp",
    "lumen",
    "maple",
    "nectar",
    "onyx",
    "pebble",
    "quartz",
    "river",
    "saffron",
    "tundra",
    "umber",
    "violet",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
)
MAX_DEPTH = 8


def value_for_schema(
    schema: Any, rng: random.Random, *, root: dict[str, Any] | None = None, depth: int = 0, name: str = ""
) -> Any:
    if schema is True or schema is None or schema == {}:
        return rng.choice(WORDS)
    if schema is False or not isinstance(schema, dict):
        return None
    root = root if root is not None else schema
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = _resolve(ref, root)
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return value_for_schema(merged, rng, root=root, depth=depth + 1, name=name)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            branch = _pick_branch(branches, root, depth)
            base = {k: v for k, v in schema.items() if k != key}
            return value_for_schema({**base, **branch}, rng, root=root, depth=depth + 1, name=name)
    if isinstance(schema.get("allOf"), list):
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part["$ref"], root) if isinstance(part, dict) and "$ref" in part else part
            if isinstance(part, dict):
                merged = _merge(merged, part)
        return value_for_schema(merged, rng, root=root, depth=depth + 1, name=name)

    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"] or ["null"]
        kind = "null" if depth >= MAX_DEPTH and "null" in kind else kinds[0]
    if kind is None:
        kind = _infer_type(schema)
    if kind == "object":
        return _object(schema, rng, root, depth)
    if kind == "array":
        return _array(schema, rng, root, depth, name)
    if kind == "string":
        return _string(schema, rng, name)
    if kind == "integer":
        return _integer(schema, rng)
    if kind == "number":
        return _number(schema, rng)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return rng.choice(WORDS)


def _infer_type(schema: dict[str, Any]) -> str:
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "multipleOf", "exclusiveMinimum", "exclusiveMaximum")):
        return "number"
    return "string"


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node if isinstance(node, dict) else {}


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {**a, **b}
    if "properties" in a or "properties" in b:
        out["properties"] = {**a.get("properties", {}), **b.get("properties", {})}
    if "required" in a or "required" in b:
        out["required"] = list(dict.fromkeys([*a.get("required", []), *b.get("required", [])]))
    return out


def _pick_branch(branches: list[Any], root: dict[str, Any], depth: int) -> dict[str, Any]:
    usable = [b for b in branches if isinstance(b, dict)]
    if not usable:
        return {}
    if depth >= MAX_DEPTH:  # deep in a recursive schema: end the recursion
        for branch in usable:
            if branch.get("type") == "null" or (branch.get("type") not in ("object", "array") and "$ref" not in branch):
                return branch
    return usable[0]


def _object(schema: dict[str, Any], rng: random.Random, root: dict[str, Any], depth: int) -> dict[str, Any]:
    properties = schema.get("properties") or {}
    required = [r for r in schema.get("required") or () if isinstance(r, str)]
    out: dict[str, Any] = {}
    for key, sub in properties.items():
        if depth >= MAX_DEPTH and key not in required:
            continue
        out[key] = value_for_schema(sub, rng, root=root, depth=depth + 1, name=key)
    for key in required:  # required but not described: anything goes
        if key not in out:
            extra = schema.get("additionalProperties")
            out[key] = value_for_schema(
                extra if isinstance(extra, dict) else {}, rng, root=root, depth=depth + 1, name=key
            )
    min_props = schema.get("minProperties") or 0
    extra = schema.get("additionalProperties", True)
    index = 0
    while len(out) < min_props and extra is not False:
        out[f"extra_{index}"] = value_for_schema(
            extra if isinstance(extra, dict) else {"type": "string"}, rng, root=root, depth=depth + 1
        )
        index += 1
    return out


def _array(schema: dict[str, Any], rng: random.Random, root: dict[str, Any], depth: int, name: str) -> list[Any]:
    prefix: list[Any] = schema["prefixItems"] if isinstance(schema.get("prefixItems"), list) else []
    items = schema.get("items", {})
    if isinstance(items, list):  # draft-04 tuple form
        prefix, items = items, schema.get("additionalItems", {})
    low = int(schema.get("minItems") or 0)
    high = schema.get("maxItems")
    high = int(high) if isinstance(high, int) else max(low, 3)
    count = low if depth >= MAX_DEPTH else rng.randint(max(low, min(1, high)), max(low, min(high, low + 3)))
    count = max(count, min(len(prefix), high))
    out = [value_for_schema(sub, rng, root=root, depth=depth + 1, name=name) for sub in prefix[:count]]
    if items is False:
        return out
    enum = items.get("enum") if isinstance(items, dict) else None
    if schema.get("uniqueItems") and isinstance(enum, list):
        pool = [v for v in enum if v not in out]
        rng.shuffle(pool)
        return out + pool[: max(0, count - len(out))]
    seen = set()
    attempts = 0
    while len(out) < count and attempts < count * 10:
        attempts += 1
        value = value_for_schema(items, rng, root=root, depth=depth + 1, name=name)
        if schema.get("uniqueItems"):
            marker = repr(value)
            if marker in seen or value in out:
                continue
            seen.add(marker)
        out.append(value)
    return out


def _string(schema: dict[str, Any], rng: random.Random, name: str) -> str:
    fmt = schema.get("format")
    n = rng.randrange(1 << 30)
    if fmt == "date-time":
        value = f"2025-{n % 12 + 1:02d}-{n % 28 + 1:02d}T{n % 24:02d}:{n % 60:02d}:00Z"
    elif fmt == "date":
        value = f"2025-{n % 12 + 1:02d}-{n % 28 + 1:02d}"
    elif fmt == "time":
        value = f"{n % 24:02d}:{n % 60:02d}:00"
    elif fmt == "email":
        value = f"{rng.choice(WORDS)}.{rng.choice(WORDS)}@example.com"
    elif fmt in ("uri", "url"):
        value = f"https://example.com/{rng.choice(WORDS)}"
    elif fmt == "uuid":
        h = f"{rng.getrandbits(128):032x}"
        value = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"
    elif fmt == "ipv4":
        value = f"192.0.2.{n % 254 + 1}"
    else:
        hint = name.lower()
        if "city" in hint or "location" in hint:
            value = rng.choice(("Paris", "Lisbon", "Nairobi", "Osaka", "Lima", "Oslo"))
        elif "name" in hint:
            value = rng.choice(("Ada", "Grace", "Alan", "Edsger", "Barbara", "Linus"))
        else:
            value = f"{rng.choice(WORDS)} {rng.choice(WORDS)}"
    low = int(schema.get("minLength") or 0)
    high = schema.get("maxLength")
    if len(value) < low:
        value = (value + " " + " ".join(rng.choice(WORDS) for _ in range(low)))[: max(low, len(value))]
        value = value.ljust(low, "x")
    if isinstance(high, int) and len(value) > high:
        value = value[:high]
    return value


def _bounds(schema: dict[str, Any], step: float) -> tuple[float, float]:
    low: float | None = schema.get("minimum")
    high: float | None = schema.get("maximum")
    ex_low = schema.get("exclusiveMinimum")
    ex_high = schema.get("exclusiveMaximum")
    if isinstance(ex_low, bool):  # draft-04: a flag on minimum
        ex_low = low if ex_low else None
    if isinstance(ex_high, bool):
        ex_high = high if ex_high else None
    if isinstance(ex_low, int | float):
        low = ex_low + step if low is None else max(low, ex_low + step)
    if isinstance(ex_high, int | float):
        high = ex_high - step if high is None else min(high, ex_high - step)
    if low is None and high is None:
        return 0, 100
    if low is None:
        assert high is not None
        return high - 100, high
    if high is None:
        return low, low + 100
    return low, high


def _integer(schema: dict[str, Any], rng: random.Random) -> int:
    low, high = _bounds(schema, 1)
    low_i, high_i = int(-(-low // 1)), int(high // 1)
    if high_i < low_i:
        return low_i
    multiple = schema.get("multipleOf")
    if isinstance(multiple, int) and multiple > 0:
        first = -(-low_i // multiple) * multiple
        if first > high_i:
            return first
        return first + multiple * rng.randint(0, (high_i - first) // multiple)
    return rng.randint(low_i, high_i)


def _number(schema: dict[str, Any], rng: random.Random) -> float | int:
    multiple = schema.get("multipleOf")
    if isinstance(multiple, int | float) and multiple > 0:
        low, high = _bounds(schema, 0)
        k_low, k_high = int(-(-low // multiple)), int(high // multiple)
        return multiple * rng.randint(k_low, max(k_low, k_high))
    low, high = _bounds(schema, 1e-6)
    value = round(low + (high - low) * rng.random(), 2)
    return value if low <= value <= high else low + (high - low) / 2
