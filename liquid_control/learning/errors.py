"""The error every training command raises for a run that cannot start or go on."""
from __future__ import annotations

from liquid_control.core.errors import LiquidControlError


class TrainingError(LiquidControlError):
    """Training cannot start or cannot go on (bad hyperparameters, NaN loss, a checkpoint that does not fit)."""

