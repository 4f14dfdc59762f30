"""A CfC sequence (PPO's TBPTT re-run) as one autograd node, with its backward written out by hand.

For a tiny cell (cartpole: 16 sequences x 32 units) the cost of backpropagating through a TBPTT chunk is not
arithmetic but the per-op overhead: autograd's per-node bookkeeping and the dispatch of many small kernels.
`CfCSequence` computes the same function as `cells.CfC.step` over the chunk with as few ops per step as the
recurrence allows, and everything that does not depend on the previous step outside the loop, as one large op:
  - forward: the input half of the backbone's linear layer (x W_x^T + b) for all steps at once, the
    LeCun-tanh constants folded into the weights, the gate's t_a * dt + t_b as one addcmul, the mix
    f1 (1 - s) + s f2 as one lerp, and the projection of every step's state in one addmm after the loop;
  - backward: the projection's gradient into every state in one mm before the loop, and every weight
    gradient as one mm over all steps after it (from the per-step gradients the loop keeps).
About 9 ops per step forward and 13 backward, against about 20 and 30 for the step loop. The sums run in
another order than the step loop's, so results agree with it to float32 rounding, not bit for bit
(test/test_train_speed_parity.py compares outputs and every gradient with `_Recurrent.unroll`'s plain loop).

Only the shape the trainer uses takes this path (`supports`): one fully connected layer in "default" mode,
one LeCun-tanh backbone layer, a projection; everything else runs `CfC.unroll`'s autograd loop.
"""
from __future__ import annotations

from typing import Any

import torch

_tanh_bwd = torch.ops.aten.tanh_backward
_sigmoid_bwd = torch.ops.aten.sigmoid_backward
K_IN, K_OUT = 0.666, 1.7159  # LeCun tanh: K_OUT * tanh(K_IN * x) (cells.LeCunTanh)


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
    (y (T, B, P), h_T (B, N)). At a step where resets[t], the state is multiplied by keep[t] first.

    Per step, with a = K_IN (W1 [x, h] + b1): u = tanh(a); heads = K_OUT W2 u + b2 = [ff1, ff2, t_a, t_b];
    f1, f2 = tanh(ff1), tanh(ff2); s = sigmoid(t_a dt + t_b); h' = f1 + s (f2 - f1); y = Wp h' + bp."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, h: torch.Tensor, dt: torch.Tensor, keep: torch.Tensor | None,
                resets: list[bool], w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
                wp: torch.Tensor, bp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n_steps, batch, n_in = x.shape
        n = h.shape[1]
        w1h = w1[:, n_in:] * K_IN  # (H, N): the recurrent half of the backbone, scaled
        w2k = w2 * K_OUT  # (4N, H): the heads, reading the backbone's tanh before its scale
        w1h_t, w2k_t = w1h.t(), w2k.t()
        a_in = (torch.addmm(b1, x.reshape(n_steps * batch, n_in), w1[:, :n_in].t()) * K_IN).view(n_steps, batch, -1)
        # unbind: all the per-step views in one call (Python indexing per step costs more than the math)
        a_ins, dts, keeps = a_in.unbind(0), dt.unbind(0), keep.unbind(0) if any(resets) else None
        h_ins, us, f1s, f2s, ss, hs = [], [], [], [], [], []
        for t in range(n_steps):
            if resets[t]:
                h = h * keeps[t]
            h_ins.append(h)
            u = torch.tanh(torch.addmm(a_ins[t], h, w1h_t))
            ff1, ff2, t_a, t_b = torch.addmm(b2, u, w2k_t).chunk(4, dim=1)
            f1, f2 = torch.tanh(ff1), torch.tanh(ff2)
            s = torch.sigmoid(torch.addcmul(t_b, t_a, dts[t]))
            h = torch.lerp(f1, f2, s)
            us.append(u), f1s.append(f1), f2s.append(f2), ss.append(s), hs.append(h)
        h_all = torch.stack(hs)
        y = torch.addmm(bp, h_all.view(n_steps * batch, n), wp.t()).view(n_steps, batch, -1)
        ctx.resets, ctx.n_in = resets, n_in
        ctx.set_materialize_grads(False)  # h_T unused (PPO): no zeros to add
        ctx.save_for_backward(x, dt, keep if keep is not None else dt.new_empty(0), w1h, w2k, wp, h_all,
                              *[torch.stack(v) for v in (h_ins, us, f1s, f2s, ss)])
        return y, h

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor, gh_last: torch.Tensor | None) -> tuple[Any, ...]:
        x, dt, keep, w1h, w2k, wp, h_all, h_in, u_all, f1_all, f2_all, s_all = ctx.saved_tensors
        resets, n_in = ctx.resets, ctx.n_in
        n_steps, batch, n = h_all.shape
        gy_flat = gy.reshape(n_steps * batch, -1)
        gh_out = gy_flat.mm(wp).view(n_steps, batch, n).unbind(0)  # through the projection, every step
        us, f1s, f2s, ss = u_all.unbind(0), f1_all.unbind(0), f2_all.unbind(0), s_all.unbind(0)
        dts, keeps = dt.unbind(0), keep.unbind(0) if any(resets) else None
        gheads_all, ga_all = [None] * n_steps, [None] * n_steps
        gh_next = gh_last  # the gradient reaching h_t from step t+1 (or from the output h_T)
        for t in reversed(range(n_steps)):
            gh = gh_out[t] if gh_next is None else gh_out[t] + gh_next
            f1, f2, s = f1s[t], f2s[t], ss[t]
            g_f2 = gh * s
            g_pre = _sigmoid_bwd(gh * (f2 - f1), s)
            gheads = torch.cat([_tanh_bwd(gh - g_f2, f1), _tanh_bwd(g_f2, f2), g_pre * dts[t], g_pre], dim=1)
            ga = _tanh_bwd(gheads.mm(w2k), us[t])
            gh_next = ga.mm(w1h)
            if resets[t]:
                gh_next = gh_next * keeps[t]
            gheads_all[t], ga_all[t] = gheads, ga
        gheads_flat = torch.stack(gheads_all).view(n_steps * batch, -1)
        ga_flat = torch.stack(ga_all).view(n_steps * batch, -1)
        z = torch.cat([x, h_in], dim=2).view(n_steps * batch, -1)
        gw1 = ga_flat.t().mm(z) * K_IN
        gb1 = ga_flat.sum(0) * K_IN
        gw2 = gheads_flat.t().mm(u_all.view(n_steps * batch, -1)) * K_OUT
        gb2 = gheads_flat.sum(0)
        gwp = gy_flat.t().mm(h_all.view(n_steps * batch, n))
        gbp = gy_flat.sum(0)
        return None, gh_next, None, None, None, gw1, gb1, gw2, gb2, gwp, gbp


def unroll(cell: Any, x: torch.Tensor, h: torch.Tensor, dt: torch.Tensor,
           start: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """cells.CfC.unroll for a cell that `supports` accepts (dt already in model time)."""
    layer = cell.layers[0]
    lin1, lin2 = layer.backbone[0], layer.heads
    keep = None if start is None else (1.0 - start)[:, :, None]
    resets = [False] * x.shape[0] if start is None else start.any(dim=1).tolist()
    return CfCSequence.apply(x, h, dt, keep, resets, lin1.weight, lin1.bias, lin2.weight, lin2.bias,
                             cell.proj.weight, cell.proj.bias)
