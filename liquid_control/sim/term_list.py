"""A task's term lists as the spec writes them: parsed and checked without a model (TermSpec), then bound
to a model's names (bind). The terms themselves, their arguments and documentation are in sim/terms.py."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from liquid_control.core import checks
from liquid_control.core.errors import SpecError
from liquid_control.sim.terms import REQUIRED, TERMS, Term

KINDS = ("reset", "reward", "termination")
_COMMON = {"reward": ("term", "name", "weight"), "termination": ("term", "name"), "reset": ("term", "name")}


@dataclass(frozen=True)
class TermSpec:
    """One parsed item of a term list."""

    kind: str  # reset | reward | termination
    term: str
    name: str
    weight: float
    args: dict[str, Any]
    where: str

    def describe(self) -> str:
        args = ", ".join(f"{k}={_show(v)}" for k, v in self.args.items())
        weight = f"{self.weight:+g} x " if self.kind == "reward" else ""
        label = f" ({self.name})" if self.name != self.term else ""
        return f"{weight}{self.term}({args}){label}"


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _near(word: str, known) -> str:
    near = difflib.get_close_matches(word, list(known), n=1)
    return f"; did you mean {near[0]!r}?" if near else f"; known: {', '.join(sorted(known))}"


def parse_terms(kind: str, raw: Any, where: str) -> tuple[TermSpec, ...]:
    """A term list from YAML: each term known, each argument known, typed and present if required."""
    if not isinstance(raw, list):
        raise SpecError(f"{where}: expected a list of terms, got {raw!r}")
    known = TERMS[kind]
    out, names = [], set()
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(item, dict) or "term" not in item:
            raise SpecError(f"{at}: expected a mapping with a 'term' key, got {item!r}")
        term = item["term"]
        if term not in known:
            raise SpecError(f"{at}: unknown {kind} term {term!r}{_near(str(term), known)}")
        at = f"{at} ({term})"
        spec_args = known[term].ARGS
        checks.mapping(item, at, (*_COMMON[kind], *spec_args))
        args = {}
        for key, arg in spec_args.items():
            if key in item:
                args[key] = arg.check(item[key], f"{at}.{key}")
            elif arg.default is REQUIRED:
                raise SpecError(f"{at}: missing argument {key!r} ({arg.doc})")
        name = checks.name(item.get("name", term), f"{at}.name")
        if name in names:
            raise SpecError(f"{at}: two {kind} terms named {name!r}; give one a 'name'")
        names.add(name)
        weight = checks.number(item.get("weight", 1.0), f"{at}.weight") if kind == "reward" else 1.0
        out.append(TermSpec(kind, term, name, weight, args, at))
    return tuple(out)


def parse_task(sim: dict[str, Any]) -> dict[str, tuple[TermSpec, ...]] | None:
    """The term lists of a spec's sim section, or None when it names no terms."""
    if not any(k in sim for k in KINDS):
        return None
    return {k: parse_terms(k, sim.get(k, []), f"sim.{k}") for k in KINDS}


def bind(spec: TermSpec, model, data) -> Term:
    return TERMS[spec.kind][spec.term](model, data, spec.where, **spec.args)
