"""One walk over parsed JSON (dicts, lists and scalars, as `json.loads` gives them): a copy with
a function applied to every leaf, and optionally to every key.

Every pass of the server that rewrites a tree is this walk with its own leaf: Infinity clamped
(client.py), data URLs replaced and strings shortened (results.py), secrets masked
(redaction.py). Some run on every result, so the walk is plain recursion that allocates nothing
per leaf: a leaf is told its key (or index) and where its parent stands, from which `path_text`
builds a path only for the rare leaf that needs one. It imports nothing from the package.
"""

from collections.abc import Callable
from typing import Any, Final

# Where a container stands: (where its parent stands, its key or index there, the container
# itself); the root is (None, None, root).
Location = tuple["Location | None", str | int | None, dict[str, Any] | list[Any]]
# A leaf's replacement, from the leaf (any JSON scalar), its key or index (None at the root) and
# where its parent stands (None at the root).
Leaf = Callable[[Any, str | int | None, Location | None], Any]

_CONTAINERS: Final = (dict, list)


def map_json(value: Any, leaf: Leaf, key: Callable[[str], str] | None = None) -> Any:
    """A copy of `value` with `leaf(scalar, key, parent)` in place of every scalar, and `key(k)`
    in place of every object key when `key` is given. Containers are always copied, never shared."""
    if isinstance(value, _CONTAINERS):
        return _copy(value, leaf, key, (None, None, value))
    return leaf(value, None, None)


def _copy(value: dict[str, Any] | list[Any], leaf: Leaf, key: Callable[[str], str] | None, here: Location) -> Any:
    if isinstance(value, list):
        return [
            _copy(item, leaf, key, (here, i, item)) if isinstance(item, _CONTAINERS) else leaf(item, i, here)
            for i, item in enumerate(value)
        ]
    if key is None:
        return {
            k: _copy(item, leaf, key, (here, k, item)) if isinstance(item, _CONTAINERS) else leaf(item, k, here)
            for k, item in value.items()
        }
    return {
        key(k): _copy(item, leaf, key, (here, k, item)) if isinstance(item, _CONTAINERS) else leaf(item, k, here)
        for k, item in value.items()
    }


def path_text(parent: Location | None, name: str | int | None) -> str:
    """The path of the item `name` of `parent`, as `a.b[0].c` (the empty string at the root)."""
    names: list[str | int] = []
    where = parent
    if name is not None:
        names.append(name)
    while where is not None:
        where, step, _ = where
        if step is not None:
            names.append(step)
    path = ""
    for step in reversed(names):
        path = f"{path}[{step}]" if isinstance(step, int) else f"{path}.{step}" if path else step
    return path
