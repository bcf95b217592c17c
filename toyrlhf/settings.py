"""Typed settings for the config dataclasses (`toyrlhf/config.py`): from/to dicts, TOML files and `--set key=value`
overrides, with one-line errors."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import typing
from pathlib import Path

from .errors import UserError
from .library_names import TRL_ALIASES, resolve_aliases

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def _field_types(cls) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value, typ, key: str):
    """Convert `value` (from TOML, JSON or a --set string) to `typ`, or raise a one-line UserError."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin is typing.Union or (origin is not None and type(None) in args):  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, key)
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer() or not -2**63 < value < 2**63:
                    raise ValueError
                return int(value)
            text = str(value).strip().replace("_", "") if isinstance(value, str) else str(value)
            if len(text.lstrip("+-")) > 19:   # beyond int64 (19 digits), and before Python's 4,300-digit int limit
                raise ValueError
            out = int(str(value), 10)
            if not -2**63 < out < 2**63:   # beyond int64: numpy could not hold it
                raise ValueError
            return out
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
            if not math.isfinite(out):
                raise ValueError
            return out
        if typ is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            return str(value)
    except (ValueError, TypeError, OverflowError):
        raise UserError(f"{key}: expected {getattr(typ, '__name__', typ)}, got {_short(value)}") from None
    raise UserError(f"{key}: unsupported type {typ}")


def _short(value, n: int = 60) -> str:
    """repr of a value, cut to n characters (a 5,000-digit --set value is not echoed whole); never raises."""
    try:
        text = repr(value)
    except ValueError:   # an int beyond Python's int-to-str digit limit
        text = f"<an integer of more than {sys.get_int_max_str_digits() if hasattr(sys, 'get_int_max_str_digits') else 4300} digits>"
    return text if len(text) <= n else text[:n - 3] + "..."


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass `cls` from a (possibly nested) dict; unknown keys are errors."""
    if not isinstance(data, dict):
        raise UserError(f"{prefix.rstrip('.') or 'config'}: expected a table of settings, got {_short(data, 40)}")
    types = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in types:
            raise UserError(f"unknown setting {_short(full)}; known: {', '.join(sorted(prefix + k for k in types))}")
        typ = types[key]
        if dataclasses.is_dataclass(typ):
            kwargs[key] = from_dict(typ, value, prefix=f"{full}.")
        else:
            kwargs[key] = _coerce(value, typ, full)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise UserError(str(e).splitlines()[0]) from None


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def with_overrides(cfg, overrides: dict[str, object]):
    """A copy of `cfg` with dotted-key overrides applied (values coerced and validated like from_dict). TRL's
    GRPOConfig option names are accepted as aliases (`library_names.resolve_aliases`)."""
    data = to_dict(cfg)
    if set(overrides) & set(TRL_ALIASES) and "group_size" in data:       # an RLConfig
        overrides = resolve_aliases(overrides)
    for key, value in overrides.items():
        parts = key.split(".")
        node = data
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise UserError(f"unknown setting {key!r}")
            node = node[p]
        if parts[-1] not in node or isinstance(node[parts[-1]], dict):
            known = ", ".join(sorted(_flat_keys(data)))
            raise UserError(f"unknown setting {key!r}; known: {known}")
        node[parts[-1]] = value
    return from_dict(type(cfg), data)


def _flat_keys(data: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in data.items():
        out += _flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [prefix + k]
    return out


def parse_set_options(items) -> dict[str, str]:
    """['a.b=1', 'c=x'] -> {'a.b': '1', 'c': 'x'}."""
    out = {}
    for item in items or ():
        if "=" not in item:
            raise UserError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        if not k.strip():
            raise UserError(f"--set expects key=value, got {item!r}")
        out[k.strip()] = v.strip()
    return out


def load_config_file(path) -> dict:
    """A TOML (or the JSON a run folder's config.json holds) settings table."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such config file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(f"{path}: {path.stat().st_size:,} bytes, too large for a config file "
                        f"(at most {MAX_CONFIG_BYTES:,})")
    text = path.read_bytes()
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text.decode())
    except RecursionError:
        raise UserError(f"{path}: malformed config (nested too deeply)") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
        # ValueError: an integer beyond Python's int-str digit limit (json and tomllib raise it bare)
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise UserError(f"{path}: malformed config ({_short(msg, 100)})") from None
    _check_depth(data, path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a table of settings")
    return data


MAX_CONFIG_BYTES = 1 << 20
"""A config file larger than 1 MiB is refused unread."""
MAX_DEPTH = 8
"""Settings nest at most two tables deep (rm.lr); deeper data is refused before anything walks it recursively."""


def _check_depth(data, path) -> None:
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UserError(f"{path}: settings nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def config_hash(*parts) -> str:
    """Stable short hash of JSON-able parts (the stage-cache key)."""
    blob = json.dumps([p if isinstance(p, dict) else to_dict(p) for p in parts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ the settings, listed
def field_docs(cls) -> dict[str, str]:
    """Field name -> its docstring (the string literal under the field in toyrlhf/config.py, read with ast from the
    class's source), whitespace collapsed to one line; '' for a field without one."""
    import ast
    import inspect
    import textwrap
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    out: dict[str, str] = {}
    for node, after in zip(body, body[1:] + [None]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            doc = ""
            if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and \
                    isinstance(after.value.value, str):
                doc = " ".join(after.value.value.split())
            out[node.target.id] = doc
    return out


def type_name(typ) -> str:
    """'int', 'float', 'str', 'bool', or 'float or none' for Optional[float]."""
    args = typing.get_args(typ)
    if type(None) in args:
        return " or ".join(type_name(a) for a in args if a is not type(None)) + " or none"
    return getattr(typ, "__name__", str(typ))


def setting_rows(cls, prefix: str = "", defaults: dict | None = None) -> list[dict]:
    """Every `--set` key of config dataclass `cls` (RLConfig for `toyrlhf run`), nested dataclasses as dotted keys
    (pretrain.lr, rm.head, ...): dicts with key, type, default (the value in `cls()`, resolved) and description (the
    field's docstring)."""
    defaults = to_dict(cls()) if defaults is None else defaults
    docs = field_docs(cls)
    rows = []
    for name, typ in _field_types(cls).items():
        if dataclasses.is_dataclass(typ):
            rows += setting_rows(typ, f"{prefix}{name}.", defaults[name])
        else:
            rows.append({"key": prefix + name, "type": type_name(typ), "default": defaults[name],
                         "description": docs.get(name, "")})
    return rows
