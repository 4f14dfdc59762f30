"""The options `replay` and `play` share for reading a bag whole and safely (bags/census.py, --max-gap)."""
from __future__ import annotations

import argparse


def add_read_checks(p: argparse.ArgumentParser, verb: str, max_gap_default: str) -> None:
    """--recover, --allow-partial and --max-gap; `verb` is what the command does with messages
    ('reading', 'publishing'), `max_gap_default` how its default --max-gap is chosen."""
    p.add_argument("--recover", action="store_true",
                   help="go on through a truncated or damaged bag up to the damage (the loss is reported; implies "
                        "--allow-partial)")
    p.add_argument("--allow-partial", action="store_true",
                   help=f"accept {verb} fewer messages than metadata.yaml or the storage says the bag holds "
                        "(reported per topic; without it that is an error)")
    p.add_argument("--max-gap", type=float, metavar="S",
                   help="stop at a gap of more than S seconds of bag time between consecutive messages (a damaged "
                        f"timestamp or clock jump would otherwise be run through; default: {max_gap_default}; "
                        "inf: no bound)")
