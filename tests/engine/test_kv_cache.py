"""The cached forward equals the uncached one (prefill, then one token at a time), for every way
the model places memory (positions with either rotary placement, and `kv` keys in some or all
layers) and with the short convolution; explain weights are the attention mass on memory that the
uncached forward's own attention gives, averaged over the layers that read memory."""
import pytest
import torch

from engine.kv_cache import WindowCache
from model.gpt import GPT, GPTConfig
from model.memory import Slot, collate_memory

SLOTS = [Slot((1, 2), (3,), (4, 5, 6), (1, 2, 3), False, 10),
         Slot((7,), (8,), (9,), (4, 5, 6), True, 3),
         Slot((11, 12), (3,), (13,), (1, 2, 7), False, 40)]


def random_model(**config) -> GPT:
    """A GPT whose every weight is random (a fresh one has zero output projections: a no-op)."""
    torch.manual_seed(0)
    cfg = GPTConfig(**{"vocab_size": 97, "n_layer": 2, "n_head": 2, "n_embd": 32, "sequence_len": 16,
                       "memory_slots": 4, "max_surface_len": 4, "attn_backend": "sdpa", **config})
    model = GPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


# every way the model places memory: slots as positions (two rotary placements), or as the keys /
# values of layer 0 of 2 (the other layer attends over tokens only) or of every layer
PLACEMENTS = {"unrotated": {"memory_rope": "unrotated"}, "fixed": {"memory_rope": "fixed"},
              "kv_layer_0": {"memory_injection": "kv", "kv_layer_stride": 2},
              "kv_every_layer": {"memory_injection": "kv", "kv_layer_stride": 1}}


def cached_logits(model: GPT, memory, idx: torch.Tensor, prefill: int) -> torch.Tensor:
    cache = WindowCache(model, memory, capacity=idx.shape[1])
    out = [cache.forward(idx[:, :prefill])[0]]
    out += [cache.forward(idx[:, i:i + 1])[0] for i in range(prefill, idx.shape[1])]
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("short_conv", [0, 3])
@pytest.mark.parametrize("tie_embeddings", [False, True])
def test_cached_forward_equals_the_uncached_one(placement, short_conv, tie_embeddings):
    model = random_model(**PLACEMENTS[placement], short_conv=short_conv, tie_embeddings=tie_embeddings)
    idx = torch.randint(0, 97, (1, 14), generator=torch.Generator().manual_seed(1))
    padded = collate_memory([SLOTS], 4, 4)  # one invalid slot: the cache takes valid ones only
    reference = model(idx, memory=padded)
    for prefill in (1, 6, 14):
        got = cached_logits(model, collate_memory([SLOTS], 3, 4), idx, prefill)
        torch.testing.assert_close(got, reference, atol=2e-5, rtol=1e-5)
    # no valid slot at all: the tokens see nothing extra, as in the uncached forward
    torch.testing.assert_close(cached_logits(model, None, idx, 5),
                               model(idx, memory=collate_memory([[]], 4, 4)), atol=2e-5, rtol=1e-5)


def test_a_plain_gpt_caches_too():
    model = random_model(memory_slots=0, short_conv=2)
    idx = torch.randint(0, 97, (1, 12), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(cached_logits(model, None, idx, 4), model(idx), atol=2e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="memory_slots=0"):
        WindowCache(model, collate_memory([SLOTS], 3, 4), 8)


def test_the_cache_refuses_more_tokens_than_it_holds_and_invalid_slots():
    model = random_model()
    cache = WindowCache(model, None, capacity=4)
    cache.forward(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="slide the window"):
        cache.forward(torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="valid memory slots"):
        WindowCache(model, collate_memory([SLOTS], 4, 4), 4)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_explain_weights_sum_to_the_attention_mass_on_memory(memory_mass, placement):
    model = random_model(**PLACEMENTS[placement], short_conv=3)
    idx = torch.randint(0, 97, (1, 10), generator=torch.Generator().manual_seed(3))
    reference, mass = memory_mass(model, idx, collate_memory([SLOTS], 4, 4))

    cache = WindowCache(model, collate_memory([SLOTS], 3, 4), capacity=10)
    logits, weights = cache.forward(idx[:, :4], explain=True)
    steps = [weights[0]] + [cache.forward(idx[:, i:i + 1], explain=True)[1][0] for i in range(4, 10)]
    weights = torch.cat(steps)  # [tokens, slots]
    assert weights.shape == (10, 3) and (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), mass, atol=1e-5, rtol=1e-5)
    assert 0 < float(weights.sum(-1).min()) and float(weights.sum(-1).max()) < 1
    torch.testing.assert_close(logits, reference[:, :4], atol=2e-5, rtol=1e-5)
