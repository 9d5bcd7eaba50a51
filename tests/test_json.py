"""The one walk over parsed JSON: every leaf and key reached once, paths as the descriptors of
omitted data name them, and a copy that shares nothing with the original."""

from __future__ import annotations

from typing import Any

from retab_mcp._json import Location, map_json, path_text


def test_every_leaf_is_mapped_with_its_path_and_the_tree_is_copied() -> None:
    tree: dict[str, Any] = {"a": [1, {"b": "x", "c": [None, True]}], "d": 2.5, "": "e"}
    seen: list[tuple[Any, str]] = []

    def leaf(value: Any, key: str | int | None, parent: Location | None) -> Any:
        seen.append((value, path_text(parent, key)))
        return [value]

    copy = map_json(tree, leaf)
    assert copy == {"a": [[1], {"b": ["x"], "c": [[None], [True]]}], "d": [2.5], "": ["e"]}
    assert seen == [(1, "a[0]"), ("x", "a[1].b"), (None, "a[1].c[0]"), (True, "a[1].c[1]"), (2.5, "d"), ("e", "")]
    assert map_json(tree, lambda value, *_: value) == tree
    assert map_json(tree, lambda value, *_: value)["a"] is not tree["a"]


def test_keys_are_mapped_only_when_asked_and_a_bare_scalar_is_a_leaf_at_the_root() -> None:
    assert map_json({"k": {"j": 1}}, lambda value, *_: value, str.upper) == {"K": {"J": 1}}
    assert map_json([[{"k": 1}]], lambda value, key, parent: path_text(parent, key)) == [[{"k": "[0][0].k"}]]
    assert map_json("s", lambda value, key, parent: (value, key, parent)) == ("s", None, None)
