"""The train and distill command lines are generated from their config dataclasses (cli/config_args.py):
every field is an option with the field's default and help, and parsing gives back the dataclass."""
from __future__ import annotations

import argparse
import dataclasses

import pytest

from liquid_control.cli import cmd_distill, cmd_train, cmd_train_bc
from liquid_control.cli.config_args import add_config_arguments, config_from_args
from liquid_control.learning.bc import BCConfig
from liquid_control.learning.distill import DistillConfig
from liquid_control.learning.ppo import PPOConfig


def _parser(cmd) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="x")
    cmd.add_arguments(p)
    return p


@pytest.mark.parametrize("cmd, cls", [(cmd_train, PPOConfig), (cmd_distill, DistillConfig), (cmd_train_bc, BCConfig)])
def test_every_field_is_an_option_with_its_help_and_default(cmd, cls):
    actions = {a.dest: a for a in _parser(cmd)._actions}
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli") is False:
            assert f.name not in actions
            continue
        a = actions[f.name]
        assert a.option_strings[0] == "--" + f.name.replace("_", "-")
        assert a.help.startswith(f.metadata["help"]) and "(default: " in a.help
        assert a.default == f.default


def test_parsing_the_defaults_gives_the_default_config():
    args = _parser(cmd_train).parse_args([])
    assert config_from_args(PPOConfig, args) == PPOConfig()


def test_typed_values_choices_booleans_and_off():
    p = _parser(cmd_train)
    cfg = config_from_args(PPOConfig, p.parse_args(
        ["--units", "12", "--lr", "0.01", "--vector", "async", "--no-anneal-lr", "--target-kl", "0"]))
    assert (cfg.units, cfg.lr, cfg.vector, cfg.anneal_lr, cfg.target_kl) == (12, 0.01, "async", False, None)
    assert config_from_args(PPOConfig, p.parse_args(["--target-kl", "0.1"])).target_kl == 0.1
    with pytest.raises(SystemExit):
        p.parse_args(["--vector", "threads"])


def test_a_field_with_no_command_line_type_is_refused():
    @dataclasses.dataclass
    class Bad:
        table: dict = dataclasses.field(default_factory=dict, metadata={"help": "a table"})

    with pytest.raises(TypeError, match="Bad.table"):
        add_config_arguments(argparse.ArgumentParser(), Bad)


def test_distill_default_teacher_is_the_shipped_policy():
    from liquid_control.core.resources import default_policy_path

    cfg = config_from_args(DistillConfig, _parser(cmd_distill).parse_args([]))
    assert cfg.teacher == str(default_policy_path("cartpole")) and cfg.teacher_robot is None
