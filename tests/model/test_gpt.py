"""GPTConfig validation and the depth dial, nanochat's init, losses, parameter groups, FLOPs."""
import math

import pytest
import torch
import torch.nn.functional as F

from configs.schema import ModelConfig
from model import attention
from model.gpt import GPT, GPTConfig, GPTConfigError
from model.memory import Memory


def tiny(**overrides) -> GPTConfig:
    base = dict(vocab_size=100, n_layer=2, n_head=2, n_embd=32, sequence_len=16, memory_slots=4,
                attn_backend="sdpa")
    return GPTConfig(**{**base, **overrides})


@pytest.mark.parametrize("overrides, message", [
    (dict(n_embd=30, n_head=4), r"divisible by n_head \(4\): set n_head .* e\.g\. 3"),
    (dict(n_embd=36, n_head=4), "must be even for rotary"),
    (dict(attn_backend="xformers"), "attn_backend is 'xformers': choose one of auto, sdpa"),
    (dict(memory_rope="middle"), "memory_rope is 'middle'"),
    (dict(triplet_encoder="bag"), "triplet_encoder is 'bag'"),
    (dict(memory_slots=-1), "memory_slots must be >= 0"),
    (dict(short_conv=-1), "short_conv must be >= 0"),
])
def test_config_errors_say_the_fix(overrides, message):
    with pytest.raises(GPTConfigError, match=message):
        tiny(**overrides)


def test_flash_without_flash_attn_names_the_pip_extra():
    assert not attention.flash_kernel_installed()  # this CPU machine has no flash-attn
    with pytest.raises(GPTConfigError, match=r"pip install -e '\.\[gpu\]'"):
        tiny(attn_backend="flash")


def test_flash_head_dim_limit(monkeypatch):
    monkeypatch.setattr(attention, "flash_kernel_installed", lambda: True)
    with pytest.raises(GPTConfigError, match="flash-attn's limit is 256"):
        tiny(n_embd=512, n_head=2, attn_backend="flash", memory_rope="unrotated")
    tiny(n_embd=512, n_head=2, attn_backend="flash", memory_rope="fixed")


@pytest.mark.parametrize("depth, n_embd, n_head", [(12, 768, 6), (20, 1280, 10), (3, 256, 2)])
def test_depth_dial(depth, n_embd, n_head):
    cfg = GPTConfig.from_model_config(ModelConfig(depth=depth), vocab_size=4096)
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.head_dim) == (depth, n_embd, n_head, 128)


def test_explicit_width_overrides_and_schema_fields_carry_over():
    model_cfg = ModelConfig(depth=2, n_embd=96, sequence_len=32, memory_slots=8,
                            attn_backend="sdpa", triplet_encoder="vocab", memory_rope="fixed",
                            id_buckets=77, short_conv=4, tie_embeddings=True)
    cfg = GPTConfig.from_model_config(model_cfg, vocab_size=300)
    assert (cfg.n_embd, cfg.n_head, cfg.sequence_len, cfg.memory_slots) == (96, 1, 32, 8)
    assert (cfg.triplet_encoder, cfg.memory_rope, cfg.id_buckets, cfg.short_conv,
            cfg.tie_embeddings) == ("vocab", "fixed", 77, 4, True)
    assert GPTConfig.from_model_config(ModelConfig(n_embd=128, n_head=4), 300).head_dim == 32


def test_init_and_shapes():
    torch.manual_seed(0)
    model = GPT(tiny(vocab_size=100))
    assert model.wte.weight.shape[0] == model.lm_head.weight.shape[0] == 128  # padded to 64s
    for block in model.blocks:
        assert block.attn.c_proj.weight.abs().sum() == 0 and block.mlp.c_proj.weight.abs().sum() == 0
    assert model.lm_head.weight.std().item() == pytest.approx(0.001, rel=0.1)
    idx = torch.randint(0, 100, (2, 16))
    logits = model(idx)
    assert logits.shape == (2, 16, 100) and logits.dtype == torch.float32
    # zero-init outputs + a tiny head: near-uniform predictions at step 0
    loss = model(idx, idx)
    assert loss.item() == pytest.approx(math.log(100), abs=0.05)


def test_tied_embeddings_share_one_matrix():
    torch.manual_seed(0)
    model = GPT(tiny(vocab_size=100, tie_embeddings=True))
    assert model.lm_head.weight is model.wte.weight
    assert model.wte.weight.std().item() == pytest.approx(1.0, rel=0.1)  # not the head's 0.001
    groups = model.param_groups()
    assert groups["head"] == [] and groups["embedding"] == [model.wte.weight]
    idx = torch.randint(0, 100, (2, 16))
    # at step 0 (zero-init outputs) a position scores its own token ~sqrt(n_embd) above the rest,
    # logits scaled by 1/sqrt(n_embd) keep that O(1), not O(n_embd)
    logits = model(idx)
    assert logits.abs().max().item() < 2 * math.sqrt(32)
    # an input embedding read straight out scores its own token highest (the copy tied heads give)
    x = F.rms_norm(model.wte.weight[:100], (32,))
    assert (model.lm_head(x)[:, :100].argmax(-1) == torch.arange(100)).all()
    before = model.wte.weight.detach().clone()
    model(idx, idx).backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert torch.equal(model.lm_head.weight, model.wte.weight)
    assert not torch.equal(model.wte.weight, before)
    # the head's matmul still counts, shared or not
    assert model.estimate_flops_per_token() == GPT(tiny(vocab_size=100)).estimate_flops_per_token()


def test_softcap_and_windows_longer_than_sequence_len():
    torch.manual_seed(0)
    model = GPT(tiny())
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 10.0)
    logits = model(torch.randint(0, 100, (1, 40)))  # raw/full variants prepend earlier tokens
    assert logits.shape == (1, 40, 100)
    assert logits.abs().max() <= 15.0 and logits.abs().max() > 14.0


def test_loss_reductions():
    torch.manual_seed(0)
    model = GPT(tiny())
    idx = torch.randint(0, 100, (2, 16))
    targets = torch.randint(0, 100, (2, 16))
    targets[:, :5] = -1
    per_token = model(idx, targets, loss_reduction="none")
    assert per_token.shape == (2, 16)
    assert (per_token[:, :5] == 0).all() and (per_token[:, 5:] > 0).all()
    torch.testing.assert_close(model(idx, targets), per_token[:, 5:].mean())
    torch.testing.assert_close(model(idx, targets, loss_reduction="sum"), per_token.sum())


def test_param_groups_cover_every_parameter_once():
    for encoder in ("tokens", "vocab"):
        model = GPT(tiny(triplet_encoder=encoder))
        groups = model.param_groups()
        ids = [id(p) for g in groups.values() for p in g]
        assert len(ids) == len(set(ids)) == len(list(model.parameters()))
        assert all(p.dim() == 2 for p in groups["matrix"])
        assert groups["embedding"][0] is model.wte.weight and groups["head"][0] is model.lm_head.weight
        assert any(p is model.triplet_encoder.c_fc.weight for p in groups["matrix"])
        assert any(p is model.triplet_encoder.age_emb.weight for p in groups["memory"])
    plain = GPT(tiny(memory_slots=0))
    assert plain.triplet_encoder is None and plain.param_groups()["memory"] == []
    assert plain.param_groups()["scalar"] == []
    conv = GPT(tiny(short_conv=4))
    assert [tuple(p.shape) for p in conv.param_groups()["scalar"]] == [(32, 1, 4)] * 2
    assert len([p for g in conv.param_groups().values() for p in g]) == len(list(conv.parameters()))


def test_short_conv_starts_as_the_plain_gpt_and_sees_only_earlier_tokens():
    idx = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    plain = GPT(tiny(memory_slots=0))
    torch.manual_seed(0)
    conv = GPT(tiny(memory_slots=0, short_conv=3))
    torch.testing.assert_close(conv(idx), plain(idx))  # zero-init kernels: identical at step 0
    block = conv.blocks[0]
    with torch.no_grad():
        block.conv.weight.normal_()
    x = torch.randn(1, 10, 32)
    y = block.conv(x)
    x2 = x.clone()
    x2[:, 6] += 1.0
    y2 = block.conv(x2)
    assert torch.equal(y2[:, :6], y[:, :6])  # causal
    assert (y2[:, 6:9] != y[:, 6:9]).all(dim=-1).all() and torch.equal(y2[:, 9:], y[:, 9:])  # kernel 3


def test_flops_per_token():
    model = GPT(tiny())
    C, layers = 32, 2
    block_params = layers * (4 * C * C + 8 * C * C)
    head = 128 * C
    assert model.estimate_flops_per_token() == 6 * (block_params + head) + 12 * layers * C * (16 + 4)
    assert model.estimate_flops_per_token(context_len=16) == 6 * (block_params + head) + 12 * layers * C * 16


def test_memory_on_a_model_without_slots_is_an_error():
    model = GPT(tiny(memory_slots=0))
    memory = Memory(subject=torch.zeros(1, 2, 1, dtype=torch.long),
                    relation=torch.zeros(1, 2, 1, dtype=torch.long),
                    object=torch.zeros(1, 2, 1, dtype=torch.long),
                    ids=torch.zeros(1, 2, 3, dtype=torch.long), negated=torch.zeros(1, 2, dtype=torch.bool),
                    age=torch.zeros(1, 2, dtype=torch.long), mask=torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="memory_slots=0"):
        model(torch.zeros(1, 4, dtype=torch.long), memory=memory)
