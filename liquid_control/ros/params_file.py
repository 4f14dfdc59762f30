"""Checks of the `--params-file` YAMLs a node is started with, so that mistakes are one clear line.

rcl parses params files inside `rclpy.init`, and a YAML mistake there surfaces as an RCLError traceback;
a file whose sections name other nodes is applied to nobody, silently. `check_files` reads each file
first (missing file, directory, YAML syntax: one line with file and line), `explain_rcl_error` turns what
rcl still refuses into one line, and `unmatched_sections` says when no section of a file applies to the
node (the node then goes on with its defaults and the other parameters given, as rcl does: one file may
serve several nodes, but a file with nothing for this node is most likely a typo in the node's name).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import yaml

from liquid_control.core.errors import LiquidControlError
from liquid_control.core.outputs import regular_file

MAX_BYTES = 256 << 10  # a robot's params file is a few KiB


def params_files(argv: Iterable[str]) -> list[str]:
    """The files given as `--params-file F` after `--ros-args`."""
    argv, out, in_ros = list(argv), [], False
    for i, a in enumerate(argv):
        if a == "--ros-args":
            in_ros = True
        elif a == "--":
            in_ros = False
        elif in_ros and a == "--params-file" and i + 1 < len(argv):
            out.append(argv[i + 1])
    return out


def check_files(files: Iterable[str]) -> str | None:
    """None if every file is a readable YAML mapping, else one line naming the file (and line)."""
    for f in files:
        path = Path(f)
        try:
            regular_file(path, "params file")  # a FIFO or /dev/zero would be read forever
        except LiquidControlError as exc:
            return str(exc)
        try:
            if path.stat().st_size > MAX_BYTES:  # rcl's parser and ours would spend seconds to minutes on it
                return f"params file {f} is larger than {MAX_BYTES >> 10} KiB; not a params file"
            text = path.read_text()
        except FileNotFoundError:
            return f"params file {f} does not exist"
        except (OSError, UnicodeDecodeError) as exc:
            return f"cannot read params file {f}: {getattr(exc, 'strerror', None) or exc}"
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            where = f"{f}:{mark.line + 1}" if mark is not None else f
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            return f"params file {where}: YAML syntax error: {problem}"
        if not isinstance(root, yaml.MappingNode):
            return f"params file {f}: expected a mapping of node names to 'ros__parameters', got " + (
                "an empty file" if root is None else f"a {root.id}")
        problem = _check_nodes(root)
        if problem:
            line, text = problem
            return f"params file {f}:{line}: {text}"
    return None


_SCALAR_TYPES = {"tag:yaml.org,2002:int": "integer", "tag:yaml.org,2002:float": "double",
                 "tag:yaml.org,2002:bool": "bool", "tag:yaml.org,2002:str": "string"}


def _check_nodes(node: yaml.MappingNode) -> tuple[int, str] | None:
    """What rcl's params parser refuses, as (line, problem): above 'ros__parameters' only (namespace or
    node name) mappings; below it scalars, nested names, and lists of one scalar type."""
    for key, value in node.value:
        line = key.start_mark.line + 1
        if key.value == "ros__parameters":
            if not isinstance(value, yaml.MappingNode):
                return line, "'ros__parameters' must hold a mapping of parameter names to values"
            problem = _check_values(value)
        elif isinstance(value, yaml.MappingNode):
            problem = _check_nodes(value)
        else:
            return line, (f"'{key.value}' has a value but no 'ros__parameters' above it "
                          "(expected <node name>: ros__parameters: <name>: <value>)")
        if problem:
            return problem
    return None


def _check_values(node: yaml.MappingNode) -> tuple[int, str] | None:
    for key, value in node.value:
        line = key.start_mark.line + 1
        if isinstance(value, yaml.MappingNode):
            problem = _check_values(value)
            if problem:
                return problem
        elif isinstance(value, yaml.SequenceNode):
            kinds = {_SCALAR_TYPES.get(v.tag, "other") if isinstance(v, yaml.ScalarNode) else "other"
                     for v in value.value}
            if "other" in kinds or len(kinds) > 1:
                return line, (f"parameter '{key.value}': a list must hold values of one type (all integers, "
                              f"doubles, bools or strings), got {', '.join(sorted(kinds))}")
    return None


def explain_rcl_error(exc: BaseException) -> str:
    """rcl's 'failed to initialize rcl: Couldn't parse params file: ... at line_num N, at parse.c:..'
    as one line without the C source locations."""
    text = " ".join(str(exc).split())
    m = re.search(r"Couldn't parse params file: '--params-file ([^']*)'\. Error: (.*?)(?: at line_num (\d+))?(?:, at /.*)?$",
                  text)
    if m:
        where = m.group(1) + (f":{m.group(3)}" if m.group(3) else "")
        return f"params file {where}: {m.group(2).rstrip(', ')}"
    return re.sub(r",? at /\S+:\d+", "", text)


def _section_pattern(key: str) -> re.Pattern[str]:
    """rcl's node-name keys: absolute or relative, `*` one name token, `**` any number of them."""
    key = key if key.startswith("/") else "/" + key
    parts = []
    for token in key[1:].split("/"):
        parts.append({"**": "(?:[^/]+/?)*", "*": "[^/]+"}.get(token, re.escape(token)))
    return re.compile("^/" + "/".join(parts).replace("(?:[^/]+/?)*/", "(?:[^/]+/)*") + "$")


def _loaded(files: Iterable[str]) -> Iterable[tuple[str, object]]:
    """(file, its YAML value) for each file that reads and parses (check_files reported the others)."""
    for f in files:
        try:
            yield f, yaml.safe_load(Path(f).read_text())
        except (OSError, yaml.YAMLError):
            continue


def unmatched_sections(files: Iterable[str], fully_qualified_name: str) -> list[tuple[str, list[str]]]:
    """(file, its top-level keys) for each file with no section that applies to the node."""
    out = []
    for f, data in _loaded(files):
        keys = [str(k) for k in data] if isinstance(data, dict) else []
        if not any(_section_pattern(k).match(fully_qualified_name) for k in keys):
            out.append((f, keys))
    return out


# Parameters rclpy itself reads from any node's section.
_RCLPY_PARAMETERS = ("use_sim_time", "start_type_description_service", "start_parameter_services")


def unknown_parameters(files: Iterable[str], fully_qualified_name: str, known: Iterable[str]) -> list[str]:
    """One line per parameter that a section applying to the node sets but the node does not have
    (rclpy ignores those silently; a typo like `sensor_timout` would leave the default in force)."""
    import difflib

    known = list(known)
    lines = []
    for f, data in _loaded(files):
        for section, body in (data.items() if isinstance(data, dict) else ()):
            params = body.get("ros__parameters") if isinstance(body, dict) else None
            if not isinstance(params, dict) or not _section_pattern(str(section)).match(fully_qualified_name):
                continue
            for name in map(str, params):
                if name in known or name in _RCLPY_PARAMETERS or name.startswith("qos_overrides"):
                    continue
                near = difflib.get_close_matches(name, known, n=1)
                lines.append(f"params file {f}: section {section}: unknown parameter {name!r} is ignored"
                             + (f" (did you mean {near[0]!r}?)" if near else ""))
    return lines
