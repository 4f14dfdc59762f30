"""The trainer's fast paths compute what their plain references compute.

`CfC.unroll` against `_Recurrent.unroll`, the plain loop over `CfC.step`: for every cell shape but the
trainer's, an autograd loop with the weights transposed once, equal bit for bit (outputs, final state, every
gradient); for the trainer's shape, CfCSequence's hand-written forward and backward, which sum in another
order, equal to float32 rounding. And one PPO update of the real trainer with the fast unroll against the
same update with the plain one: the same statistics and weights afterwards, to float32 rounding.
"""
from __future__ import annotations

import pytest
import torch

from liquid_control.learning import cfc_sequence
from liquid_control.learning.cells import CfC, _Recurrent
from liquid_control.learning.ppo import PPOConfig, Trainer

T, B, I = 12, 5, 4


def _inputs(seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, I, generator=g)
    dt = 0.02 + 0.03 * torch.rand(T, B, 1, generator=g)
    start = (torch.rand(T, B, generator=g) < 0.15).float()
    start[3] = 0.0  # steps with and without resets
    start[4, 0] = 1.0
    return x, dt, start


def _run(cell: CfC, unroll, x, h0, dt, start) -> tuple[torch.Tensor, ...]:
    cell.zero_grad()
    h0 = h0.clone().requires_grad_(True)
    y, h = unroll(x, h0, dt, start)
    # Both outputs and the initial state carry gradients (PPO uses y only; the others must be right too).
    (y.square().sum() + (h * torch.linspace(-1, 1, h.shape[1])).sum()).backward()
    return (y.detach(), h.detach(), h0.grad, *[p.grad.clone() for p in cell.parameters()])


CELLS = {
    "trainer shape (CfCSequence)": lambda: CfC(I, 8, proj_size=2, backbone_units=16),
    "two backbone layers": lambda: CfC(I, 8, proj_size=2, backbone_units=16, backbone_layers=2),
    "no backbone": lambda: CfC(I, 8, proj_size=1, backbone_layers=0),
    "no projection": lambda: CfC(I, 8, backbone_units=16),
    "no_gate": lambda: CfC(I, 8, proj_size=2, mode="no_gate", backbone_units=16),
    "pure": lambda: CfC(I, 8, proj_size=2, mode="pure", backbone_units=16),
    "tanh backbone": lambda: CfC(I, 8, proj_size=2, activation="tanh", backbone_units=16),
}


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("resets", [True, False])
def test_cfc_unroll_equals_the_plain_step_loop(name, resets):
    torch.manual_seed(0)
    cell = CELLS[name]()
    assert cfc_sequence.supports(cell) == (name == "trainer shape (CfCSequence)")
    cell.dt_scale = 2.0 if resets else 1.0
    x, dt, start = _inputs(1)
    h0 = torch.randn(B, cell.state_size)
    start = start if resets else None
    fast = _run(cell, cell.unroll, x, h0, dt, start)
    plain = _run(cell, lambda *a: _Recurrent.unroll(cell, *a), x, h0, dt, start)
    for a, b in zip(fast, plain, strict=True):
        if cfc_sequence.supports(cell):
            _assert_float32_close(a, b)
        else:
            assert torch.equal(a, b)


def _assert_float32_close(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal up to float32 rounding in sums of a few dozen terms: 2e-6 of the tensor's largest value."""
    assert a.shape == b.shape
    scale = b.abs().max().item()
    assert (a - b).abs().max().item() <= 2e-6 * scale, ((a - b).abs().max().item(), scale)


def test_wired_cfc_unroll_equals_the_plain_step_loop():
    wirings = pytest.importorskip("ncps.wirings")
    torch.manual_seed(0)
    cell = CfC(I, wirings.AutoNCP(10, 2, seed=0))
    x, dt, start = _inputs(2)
    h0 = torch.randn(B, cell.state_size)
    fast = _run(cell, cell.unroll, x, h0, dt, start)
    plain = _run(cell, lambda *a: _Recurrent.unroll(cell, *a), x, h0, dt, start)
    for a, b in zip(fast, plain, strict=True):
        assert torch.equal(a, b)


def test_ppo_update_with_the_fast_unroll_equals_the_plain_one(tmp_path):
    cfg = dict(robot="cartpole", steps=10**6, seed=4, n_envs=2, n_steps=64, tbptt=16, epochs=2, minibatches=2,
               target_kl=None)
    results = []
    for name in ("fast", "plain"):
        tr = Trainer(PPOConfig(**cfg), tmp_path / name, progress=False)
        if name == "plain":
            tr.agent.actor.unroll = lambda *a, cell=tr.agent.actor: _Recurrent.unroll(cell, *a)
        tr.rollouts.start(cfg["seed"])
        stats = []
        for _ in range(2):
            got = tr.rollouts.collect()
            adv, ret = tr._advantages(got)
            stats.append(tr._update(got.buf, adv, ret))
        tr.rollouts.close()
        results.append((stats, tr.agent.state_dict()))
    (stats_fast, sd_fast), (stats_plain, sd_plain) = results
    for fast, plain in zip(stats_fast, stats_plain, strict=True):
        assert fast.keys() == plain.keys()
        for k in fast:
            assert fast[k] == pytest.approx(plain[k], rel=1e-4, abs=1e-6), k
    assert sd_fast.keys() == sd_plain.keys()
    for k in sd_fast:
        _assert_float32_close(sd_fast[k], sd_plain[k])
