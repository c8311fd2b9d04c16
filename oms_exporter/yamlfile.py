"""Read a YAML configuration file with bounded cost: depth, size and alias expansion.

PyYAML's composer recurses once per nesting level and its constructor expands aliases
and merge keys, so a 400-byte "billion laughs" file costs seconds and hundreds of MB
downstream, and a deeply nested one raises RecursionError. Both are refused here, before
construction, with one line that says why.
"""

from __future__ import annotations

from typing import Any, Final

import yaml

MAX_BYTES: Final = 4 * 1024 * 1024
MAX_DEPTH: Final = 32
# Nodes after aliases are expanded: generous for thousands of project IDs, tiny for a bomb.
MAX_NODES: Final = 1_000_000
# libyaml's loader where PyYAML was built with it (the wheels are): the pure-Python one
# spends about 0.6 s on a file of 10,000 project IDs, before the first poll can start.
_LOADER: Final[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlRefused(ValueError):
    """The text is not YAML this program will read; the message says why in a few words."""


def _check_depth(text: str, loader: Any) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlRefused(f"is nested more than {MAX_DEPTH} levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _expanded_size(root: yaml.Node) -> int:
    """Count nodes as the constructor would see them, each shared node counted per use."""
    sizes: dict[int, int] = {}
    # Iterative post-order walk; depth is bounded already, but keep the stack explicit.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        if children_done or not children:
            total = 1 + sum(sizes.get(id(child), 1) for child in children)
            sizes[id(node)] = min(total, MAX_NODES + 1)
        else:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def load_yaml(text: str) -> Any:
    """Parse ``text`` safely; raise YamlRefused (bounds) or yaml.YAMLError (syntax)."""
    if len(text) > MAX_BYTES:
        raise YamlRefused(f"is larger than {MAX_BYTES} bytes")
    try:
        return _load(text, _LOADER)
    except yaml.YAMLError:
        if _LOADER is yaml.SafeLoader:
            raise
    # libyaml refuses some files PyYAML reads (a lone surrogate escape, for one) and marks
    # others differently: whatever is wrong, say it as the pure-Python loader does.
    return _load(text, yaml.SafeLoader)


def _load(text: str, loader_class: Any) -> Any:
    _check_depth(text, loader_class)
    loader = loader_class(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        if _expanded_size(root) > MAX_NODES:
            raise YamlRefused("expands to too many values (YAML aliases)")
        return loader.construct_document(root)  # from the nodes composed: no second parse
    finally:
        loader.dispose()
