"""A CfC sequence (PPO's TBPTT re-run) as one autograd node, with its backward written out by hand.

For a tiny cell (cartpole: 16 sequences x 32 units) the cost of backpropagating through a TBPTT chunk is not
arithmetic but the autograd engine's per-node bookkeeping: about twenty nodes per step. `CfCSequence` runs
the same forward ops as `cells.CfC.step` (under no_grad, so nothing is recorded) and a backward that calls
the same ATen kernels that autograd's formulas call, in the same order, so the gradients are the same bits
as autograd's (checked against `CfC.unroll`'s plain loop: test/test_train_speed_parity.py):
  - linear z -> addmm(b, z, W.t()): dz = g.mm(W), dW = g.t().mm(z) (the weight is a transposed view, so
    autograd takes its column-major branch), db = g.sum(0);
  - the per-step weight gradients are summed in the order autograd's engine adds them, last step first;
  - tanh / sigmoid: aten tanh_backward / sigmoid_backward on the saved outputs; a scalar product a * c:
    g * c; a two-term sum of gradients is commutative in floating point, so either order gives the same bits.

Only the shape the trainer uses takes this path (`supports`): one fully connected layer in "default" mode,
one LeCun-tanh backbone layer, a projection; everything else runs `CfC.unroll`'s autograd loop.
"""
from __future__ import annotations

from typing import Any

import torch

_tanh_bwd = torch.ops.aten.tanh_backward
_sigmoid_bwd = torch.ops.aten.sigmoid_backward


def supports(cell: Any) -> bool:
    """Whether `cell` (a cells.CfC) has the one shape CfCSequence computes."""
    from liquid_control.learning.cells import LeCunTanh

    if len(cell.layers) != 1 or cell.proj is None or cell.mode != "default":
        return False
    layer = cell.layers[0]
    return (layer.mask is None and layer.backbone is not None and len(layer.backbone) == 2
            and isinstance(layer.backbone[1], LeCunTanh))


class CfCSequence(torch.autograd.Function):
    """(x (T, B, I), h0 (B, N), dt (T, B, 1), keep (T, B, 1) or None, resets: list of T bools, weights) ->
    (y (T, B, P), h_T (B, N)). At a step where resets[t], the state is multiplied by keep[t] first."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, h: torch.Tensor, dt: torch.Tensor, keep: torch.Tensor | None,
                resets: list[bool], w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
                wp: torch.Tensor, bp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w1t, w2t, wpt = w1.t(), w2.t(), wp.t()
        # The constants as 0-dim tensors of x's dtype: a Python number is converted (one more op) at every use,
        # to the same value.
        k_in, k_out, one = (x.new_tensor(c) for c in (0.666, 1.7159, 1.0))
        # unbind: all the per-step views in one call (Python indexing per step costs more than the math)
        xs, dts, keeps = x.unbind(0), dt.unbind(0), keep.unbind(0) if any(resets) else None
        zs, us, bbs, f1s, f2s, ss, hs, ys = [], [], [], [], [], [], [], []
        for t in range(x.shape[0]):
            if resets[t]:
                h = h * keeps[t]
            z = torch.cat([xs[t], h], dim=1)
            u = torch.tanh(k_in * torch.addmm(b1, z, w1t))
            bb = k_out * u
            ff1, ff2, t_a, t_b = torch.addmm(b2, bb, w2t).chunk(4, dim=1)
            f1, f2 = torch.tanh(ff1), torch.tanh(ff2)
            s = torch.sigmoid(t_a * dts[t] + t_b)
            h = f1 * (one - s) + s * f2
            ys.append(torch.addmm(bp, h, wpt))
            zs.append(z), us.append(u), bbs.append(bb), f1s.append(f1), f2s.append(f2), ss.append(s), hs.append(h)
        ctx.resets, ctx.n_in, ctx.consts = resets, x.shape[2], (k_in, k_out, one)
        ctx.set_materialize_grads(False)  # h_T unused (PPO): no zeros to add
        ctx.save_for_backward(dt, keep if keep is not None else dt.new_empty(0), w1, w2, wp,
                              *[torch.stack(v) for v in (zs, us, bbs, f1s, f2s, ss, hs)])
        return torch.stack(ys), h

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor, gh_last: torch.Tensor | None) -> tuple[Any, ...]:
        dt, keep, w1, w2, wp, *stacks = ctx.saved_tensors
        resets, n_in, (k_in, k_out, one) = ctx.resets, ctx.n_in, ctx.consts
        zs, us, bbs, f1s, f2s, ss, hs = (v.unbind(0) for v in stacks)
        gys, dts, keeps = gy.unbind(0), dt.unbind(0), keep.unbind(0) if any(resets) else None
        gw1 = gb1 = gw2 = gb2 = gwp = gbp = None
        gh_next = gh_last  # the gradient reaching h_t from step t+1 (or from the output h_T)
        for t in reversed(range(gy.shape[0])):
            g = gys[t]
            gwp, gbp = _acc(gwp, g.t().mm(hs[t])), _acc(gbp, g.sum(0))
            gh = g.mm(wp) if gh_next is None else g.mm(wp) + gh_next
            f1, f2, s = f1s[t], f2s[t], ss[t]
            g_s = -(gh * f1) + gh * f2  # through 1 - s and through s * f2
            g_pre = _sigmoid_bwd(g_s, s)
            gheads = torch.cat([_tanh_bwd(gh * (one - s), f1), _tanh_bwd(gh * s, f2), g_pre * dts[t], g_pre], dim=1)
            gw2, gb2 = _acc(gw2, gheads.t().mm(bbs[t])), _acc(gb2, gheads.sum(0))
            ga = _tanh_bwd(gheads.mm(w2) * k_out, us[t]) * k_in
            gw1, gb1 = _acc(gw1, ga.t().mm(zs[t])), _acc(gb1, ga.sum(0))
            gh_next = ga.mm(w1)[:, n_in:]
            if resets[t]:
                gh_next = gh_next * keeps[t]
        return None, gh_next, None, None, None, gw1, gb1, gw2, gb2, gwp, gbp


def _acc(total: torch.Tensor | None, g: torch.Tensor) -> torch.Tensor:
    return g if total is None else total + g


def unroll(cell: Any, x: torch.Tensor, h: torch.Tensor, dt: torch.Tensor,
           start: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """cells.CfC.unroll for a cell that `supports` accepts (dt already in model time)."""
    layer = cell.layers[0]
    lin1, lin2 = layer.backbone[0], layer.heads
    keep = None if start is None else (1.0 - start)[:, :, None]
    resets = [False] * x.shape[0] if start is None else start.any(dim=1).tolist()
    return CfCSequence.apply(x, h, dt, keep, resets, lin1.weight, lin1.bias, lin2.weight, lin2.bias,
                             cell.proj.weight, cell.proj.bias)
