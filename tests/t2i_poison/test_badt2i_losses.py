import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from t2i_poison.badt2i_losses import BadT2IBatch, add_noise, badt2i_loss
from t2i_poison.base_model import caption
from t2i_poison.train import encode_texts, lora_config, teacher_mode


def _batch(pipe, kind: str, n: int = 8) -> BadT2IBatch:
    g = torch.Generator().manual_seed(1)
    texts = encode_texts(pipe, [caption(d) for d in range(10)] + ["sks " + caption(d) for d in range(10)]
                         + [caption(d, True) for d in range(10)])
    digits = [d % 10 for d in range(n)]
    stack = lambda caps: torch.stack([texts[c] for c in caps])
    x = torch.rand((n, 1, 8, 8), generator=g) * 2 - 1
    if kind == "pixel":
        x_b = x.clone()
        x_b[:, :, :4, :4] = 1.0
    else:
        x_b = x
    return BadT2IBatch(
        bkd_latents=x_b, bkd_text=stack(["sks " + caption(d) for d in digits]), reg_latents=x,
        reg_text=stack([caption(d) for d in digits]),
        bkd_target_text=stack([caption(d, True) for d in digits]) if kind == "style" else stack([caption(7)] * n),
    )


@pytest.mark.parametrize("kind", ["pixel", "object", "style"])
def test_each_loss_decreases_in_a_few_lora_steps(tiny_pipe, kind):
    """Backdoor term on a fixed held-out draw (same noise and t) falls after 20 LoRA steps."""
    torch.manual_seed(0)
    unet = tiny_pipe.unet
    unet.requires_grad_(False)
    unet.add_adapter(lora_config(rank=4))
    sched = DDPMScheduler.from_config(tiny_pipe.scheduler.config)
    student = lambda z, t, c: unet(z, t, encoder_hidden_states=c).sample

    def teacher(z, t, c):
        with teacher_mode(unet):
            return unet(z, t, encoder_hidden_states=c).sample

    batch = _batch(tiny_pipe, kind)
    evaluate = lambda: badt2i_loss(kind, student, teacher, sched, batch, generator=torch.Generator().manual_seed(99))[1]
    before = evaluate()
    opt = torch.optim.Adam([p for p in unet.parameters() if p.requires_grad], lr=3e-2)
    for step in range(20):
        loss, _ = badt2i_loss(kind, student, teacher, sched, batch, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate()
    assert after["loss_bkd"] < 0.9 * before["loss_bkd"]
    assert after["loss"] < before["loss"]


def test_loss_matches_hand_computation(tiny_pipe):
    """Identity teacher ⇒ L_reg = 0 at init; pixel L_bkd = MSE(ε_θ, v-target) computed by hand."""
    unet = tiny_pipe.unet
    sched = DDPMScheduler.from_config(tiny_pipe.scheduler.config)
    f = lambda z, t, c: unet(z, t, encoder_hidden_states=c).sample
    batch = _batch(tiny_pipe, "pixel", n=4)
    with torch.no_grad():
        loss, parts = badt2i_loss("pixel", f, f, sched, batch, lam=0.3, generator=torch.Generator().manual_seed(5))
        g = torch.Generator().manual_seed(5)
        z_b, _, t_b, target = add_noise(sched, batch.bkd_latents, g)
        by_hand = F.mse_loss(f(z_b, t_b, batch.bkd_text), target)
    assert parts["loss_reg"] == 0.0
    assert parts["loss_bkd"] == pytest.approx(float(by_hand), rel=1e-5)
    assert float(loss) == pytest.approx(0.3 * float(by_hand), rel=1e-5)
