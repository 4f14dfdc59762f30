"""Loading the YAML files this project reads (robot specs, params, bag metadata), within bounds.

A YAML file is data from outside: it may be large, malformed, or an alias bomb (a few lines of anchors
that expand to billions of nodes). `load_yaml` refuses each with one line naming the file, before any
value is built: the file's size is capped, and the node graph is counted with every alias expanded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from liquid_control.core.errors import SpecError

MAX_BYTES = 1 << 20  # 1 MiB: a robot spec is a few KiB, a bag's metadata.yaml rarely 100 KiB
MAX_NODES = 100_000  # scalars, sequences and mappings after alias expansion


def expanded_size(node: yaml.Node, limit: int) -> int:
    """Nodes in the document with aliases expanded, counting up to just past `limit` (cycles count as over)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in active:  # a recursive anchor: infinite when expanded
            return limit + 1
        total = 1
        if isinstance(n, (yaml.SequenceNode, yaml.MappingNode)):
            active.add(key)
            children = n.value if isinstance(n, yaml.SequenceNode) else [c for pair in n.value for c in pair]
            for child in children:
                total += size(child)
                if total > limit:
                    break
            active.discard(key)
        sizes[key] = total
        return total

    return size(node)


def parse_yaml(text: str, where: str, max_nodes: int = MAX_NODES) -> Any:
    """The value of one YAML document; SpecError (one line, with `where` and the line) if it is not valid
    YAML or expands beyond `max_nodes` nodes."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}: not valid YAML{at}: {problem}") from None
    if node is None:
        return None
    if expanded_size(node, max_nodes) > max_nodes:
        raise SpecError(f"{where}: more than {max_nodes} YAML nodes once aliases are expanded (an alias bomb?)")
    try:
        return yaml.SafeLoader(text).construct_document(node)
    except yaml.YAMLError as exc:  # e.g. an unknown tag: compose accepts it, construction does not
        raise SpecError(f"{where}: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise SpecError(f"{where}: nested too deeply") from None


def load_yaml(path: str | Path, what: str, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES) -> Any:
    """parse_yaml of a regular file of at most `max_bytes`; `what` names it in errors ('robot spec')."""
    path = Path(path)
    try:
        if not path.is_file():
            raise SpecError(f"{what} {path}: " + ("is not a regular file" if path.exists() else "no such file"))
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise SpecError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise SpecError(f"{what} {path}: larger than {max_bytes} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{what} {path}: not UTF-8 text (byte {exc.start})") from None
    return parse_yaml(text, f"{what} {path}", max_nodes)
