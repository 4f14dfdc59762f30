"""Errors that carry a one-line message meant for the user; the CLI prints them without a traceback."""


class LiquidControlError(Exception):
    """Base class: `str(exc)` is a complete, one-line explanation."""


class SpecError(LiquidControlError):
    """A robot interface spec is malformed or does not fit what it is used with."""


class ArtifactError(LiquidControlError):
    """A policy artifact is missing, corrupt, foreign, of an unknown version, or mismatched."""


class StepError(LiquidControlError, ValueError):
    """A bad observation or dt was given to Policy.step; the hidden state is unchanged."""


def one_line(exc: BaseException) -> str:
    """An exception as one line: a LiquidControlError's own message, anything else prefixed with its type."""
    text = " ".join(str(exc).split())
    if isinstance(exc, LiquidControlError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
