"""Properties of memory attention on every backend (sdpa, flex, flash), both rotary placements
and both ways memory enters the model (slots as positions; KBLaM-style keys/values of layers).

flash-attn cannot be installed on this CPU-only machine: the `flash` backend's own code (packing
valid slots, the two varlen calls, bottom-right causal alignment, unpacking) runs against
`reference_varlen`, a pure-torch function with flash_attn_varlen_func's signature and rules
(same head dim for q/k/v, int32 cu_seqlens, causal aligned bottom-right). The real CUDA kernel is
NOT run here. FlexAttention has no CPU backward in torch 2.13, so flex is checked forward-only.
"""
import pytest
import torch
import torch.nn.functional as F

from model import attention
from model.attention import BackendUnavailable, allowed, attend_memory_keys, build_plan, rotate
from model.gpt import GPT, GPTConfig
from model.memory import Memory

B, T, M, L, VOCAB = 3, 12, 5, 3, 97
BACKENDS = ["sdpa", "flex", "flash"]
ROPES = ["unrotated", "fixed"]
INJECTIONS = ["positions", "kv"]


def reference_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                     dropout_p=0.0, softmax_scale=None, causal=False):
    """flash_attn_varlen_func in plain torch: packed [total, H, D] sequences, per-sequence SDPA."""
    assert q.shape[-1] == k.shape[-1] == v.shape[-1], "flash-attn needs one head dim for q, k, v"
    assert cu_seqlens_q.dtype == cu_seqlens_k.dtype == torch.int32
    outs = []
    for i in range(len(cu_seqlens_q) - 1):
        qs = q[cu_seqlens_q[i]:cu_seqlens_q[i + 1]].transpose(0, 1)
        ks = k[cu_seqlens_k[i]:cu_seqlens_k[i + 1]].transpose(0, 1)
        vs = v[cu_seqlens_k[i]:cu_seqlens_k[i + 1]].transpose(0, 1)
        lq, lk = qs.shape[1], ks.shape[1]
        assert lq <= max_seqlen_q and lk <= max_seqlen_k
        mask = None
        if causal:  # bottom-right: query i sees keys j <= i + (lk - lq)
            mask = torch.arange(lk)[None, :] <= torch.arange(lq)[:, None] + (lk - lq)
        outs.append(F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask,
                                                   scale=softmax_scale).transpose(0, 1))
    return torch.cat(outs)


@pytest.fixture
def flash_reference(monkeypatch):
    monkeypatch.setattr(attention, "flash_kernel_installed", lambda: True)
    monkeypatch.setattr(attention, "flash_kernel", lambda device: reference_varlen)


def random_model(backend: str, rope: str, seed: int = 0, short_conv: int = 0,
                 injection: str = "positions") -> GPT:
    """Two layers with every weight random (zero-init projections would hide all changes); with
    `kv` injection memory enters layer 0 only (stride 2), so layer 1 is a plain one."""
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, sequence_len=T,
                    memory_slots=M, attn_backend=backend, memory_rope=rope, short_conv=short_conv,
                    memory_injection=injection, kv_layer_stride=2)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, p.shape[-1] ** -0.5 * 2)
    return model


def make_memory(seed: int = 1) -> Memory:
    """Row 0 has no valid slot; rows 1 and 2 mix valid and padded slots."""
    g = torch.Generator().manual_seed(seed)
    spans = torch.randint(0, VOCAB, (3, B, M, L), generator=g)
    spans[..., -1] = -1  # a shorter surface form
    mask = torch.tensor([[False] * M, [True, False, True, True, False], [False, True] * 2 + [True]])
    return Memory(subject=spans[0], relation=spans[1], object=spans[2],
                  ids=torch.randint(-1, 50, (B, M, 3), generator=g),
                  negated=torch.rand(B, M, generator=g) < 0.5,
                  age=torch.randint(0, 1000, (B, M), generator=g), mask=mask)


def tokens(seed: int = 2) -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


def edited(memory: Memory, row: int, slot: int) -> Memory:
    fields = {k: v.clone() for k, v in memory.__dict__.items()}
    fields["subject"][row, slot] = (fields["subject"][row, slot] + 7) % VOCAB
    fields["ids"][row, slot] = fields["ids"][row, slot] + 3
    fields["negated"][row, slot] = ~fields["negated"][row, slot]
    fields["age"][row, slot] = fields["age"][row, slot] * 5 + 17
    return Memory(**fields)


def logits(model: GPT, idx, memory) -> torch.Tensor:
    with torch.no_grad():
        return model(idx, memory=memory)


@pytest.mark.parametrize("injection", INJECTIONS)
@pytest.mark.parametrize("short_conv", [0, 3])  # the token convolution must keep every rule
@pytest.mark.parametrize("rope", ROPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_attention_properties(backend, rope, short_conv, injection, flash_reference):
    model = random_model(backend, rope, short_conv=short_conv, injection=injection)
    memory, idx = make_memory(), tokens()
    base = logits(model, idx, memory)
    assert torch.isfinite(base).all()

    # a token never influences earlier positions (nor the memory rows that earlier tokens read)
    j = 6
    changed = idx.clone()
    changed[:, j] = (changed[:, j] + 1) % VOCAB
    after = logits(model, changed, memory)
    torch.testing.assert_close(after[:, :j], base[:, :j], atol=1e-6, rtol=0)
    assert (after[:, j:] - base[:, j:]).abs().amax() > 1e-3

    # a valid slot reaches every token of its own row, from the first one on
    after = logits(model, idx, edited(memory, row=1, slot=2))
    assert (after[1] - base[1]).abs().amax(dim=-1).min() > 1e-4
    torch.testing.assert_close(after[[0, 2]], base[[0, 2]], atol=1e-6, rtol=0)

    # a padded slot's contents change nothing, in a row with and without valid slots
    for row, slot in [(1, 1), (0, 3)]:
        torch.testing.assert_close(logits(model, idx, edited(memory, row, slot)), base,
                                   atol=1e-6, rtol=0)

    # all-invalid memory is no memory: exactly the plain GPT's logits
    torch.testing.assert_close(base[0], logits(model, idx, None)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("injection", INJECTIONS)
@pytest.mark.parametrize("rope", ROPES)
@pytest.mark.parametrize("backend", ["flex", "flash"])
def test_backends_agree_with_sdpa(backend, rope, injection, flash_reference):
    memory, idx = make_memory(), tokens()
    reference = random_model("sdpa", rope, injection=injection)
    other = random_model(backend, rope, injection=injection)
    other.load_state_dict(reference.state_dict())
    for mem in (memory, None):
        torch.testing.assert_close(logits(other, idx, mem), logits(reference, idx, mem),
                                   atol=1e-5, rtol=0)


@pytest.mark.parametrize("injection", INJECTIONS)
@pytest.mark.parametrize("rope", ROPES)
@pytest.mark.parametrize("backend", ["sdpa", "flash"])
def test_gradients_finite_and_equal_to_sdpa(backend, rope, injection, flash_reference):
    """Row 0 has no valid slot: no NaN anywhere in the backward pass; flash matches sdpa."""
    memory, idx = make_memory(), tokens()
    targets = tokens(seed=3)
    grads = {}
    for name in ("sdpa", backend):
        model = random_model(name, rope, injection=injection)
        model(idx, targets, memory).backward()
        grads[name] = {n: p.grad for n, p in model.named_parameters()}
        assert all(torch.isfinite(g).all() for g in grads[name].values())
    assert grads["sdpa"]["triplet_encoder.c_fc.weight"].abs().sum() > 0
    for n, g in grads["sdpa"].items():
        torch.testing.assert_close(grads[backend][n], g, atol=1e-5, rtol=1e-4, msg=n)


def test_mask_rule():
    """The rule itself on a small layout: M=2 (slot 1 padded), T=3."""
    valid = torch.tensor([[True, False]])
    S = 5
    pos = torch.arange(S)
    grid = allowed(torch.zeros(1, 1, 1, dtype=torch.long), pos[None, :, None], pos[None, None, :],
                   valid)[0]
    expected = torch.tensor([
        [1, 0, 0, 0, 0],   # valid slot: valid memory only
        [1, 1, 0, 0, 0],   # padded slot: valid memory + itself (never empty, never read)
        [1, 0, 1, 0, 0],   # t_1: valid memory + t_1
        [1, 0, 1, 1, 0],
        [1, 0, 1, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(grid, expected)


def test_flex_training_on_cpu_says_what_to_do():
    model = random_model("flex", "unrotated")
    with pytest.raises(BackendUnavailable, match="attn_backend: auto or sdpa"):
        model(tokens(), tokens(seed=3), make_memory())


def test_flash_needs_cuda_and_the_package():
    with pytest.raises(BackendUnavailable, match="CUDA only"):
        attention.flash_kernel(torch.device("cpu"))
    assert attention.resolve_backend("auto", torch.device("cpu")) == "sdpa"
    assert attention.resolve_backend("flex", torch.device("cpu")) == "flex"


def reference_memory_keys(q, k, v, q_memory, k_memory, v_memory, valid, cos, sin):
    """KBLaM's rule written out per token: one softmax over the valid slots, scored by the memory
    query against the unrotated slot keys, and the tokens j <= i, scored by the rotary q . k."""
    B, T_, H, D = q.shape
    rq, rk = rotate(q, cos, sin), rotate(k, cos, sin)
    out = torch.zeros_like(q)
    for b in range(B):
        slots = valid[b].nonzero().flatten()
        for h in range(H):
            for i in range(T_):
                scores = torch.cat([k_memory[b, slots, h] @ q_memory[b, i, h],
                                    rk[b, :i + 1, h] @ rq[b, i, h]]) / D ** 0.5
                values = torch.cat([v_memory[b, slots, h], v[b, :i + 1, h]])
                out[b, i, h] = scores.softmax(0) @ values
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_keys_follow_the_kblam_rule(backend, flash_reference):
    """Tokens see every valid slot (by the memory query) and earlier tokens (by the rotary
    query); padded slots are never seen; slots have no output. Forward only: flex has no CPU
    backward."""
    g = torch.Generator().manual_seed(5)
    H, D = 2, 8
    q, k, v, q_memory = (torch.randn(B, T, H, D, generator=g) for _ in range(4))
    k_memory, v_memory = (torch.randn(B, M, H, D, generator=g) for _ in range(2))
    valid = make_memory().mask
    angles = torch.outer(torch.arange(T, dtype=torch.float32), 1.0 / 100 ** (torch.arange(D // 2) / (D // 2)))
    cos, sin = angles.cos(), angles.sin()
    plan = build_plan(backend, "unrotated", valid, cos, sin, cos[:1], sin[:1], batch_size=B)
    with torch.no_grad():
        got = attend_memory_keys(q, k, v, q_memory, k_memory, v_memory, plan)
    expected = reference_memory_keys(q, k, v, q_memory, k_memory, v_memory, valid, cos, sin)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
