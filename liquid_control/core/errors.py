"""Errors that carry a one-line message meant for the user; the CLI prints them without a traceback."""


class LiquidControlError(Exception):
    """Base class: `str(exc)` is a complete, one-line explanation."""


class SpecError(LiquidControlError):
    """A robot interface spec is malformed or does not fit what it is used with."""


class ArtifactError(LiquidControlError):
    """A policy artifact is missing, corrupt, foreign, of an unknown version, or mismatched."""


class StepError(LiquidControlError, ValueError):
    """A bad observation or dt was given to Policy.step; the hidden state is unchanged."""
