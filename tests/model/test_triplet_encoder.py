"""TripletEncoder: span order survives pooling, padding and hashing rules, age buckets, finiteness."""
import torch

from model.gpt import GPTConfig
from model.memory import Memory
from model.triplet_encoder import TripletEncoder, age_bucket, id_bucket

C = 32


def encoder(mode: str = "tokens", **overrides) -> tuple[TripletEncoder, torch.nn.Embedding]:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=50, n_layer=1, n_head=1, n_embd=C, memory_slots=4,
                    attn_backend="sdpa", triplet_encoder=mode, **overrides)
    enc = TripletEncoder(cfg)
    enc.init_weights()
    with torch.no_grad():
        enc.c_proj.weight.normal_(0, 0.1)  # zero at init would make every slot look alike
    wte = torch.nn.Embedding(64, C)
    return enc, wte


def memory(subject, relation=None, obj=None, ids=None, negated=False, age=0) -> Memory:
    subject = torch.tensor([[subject]])
    relation = torch.tensor([[relation or [1]]])
    obj = torch.tensor([[obj or [2]]])
    return Memory(subject=subject, relation=relation, object=obj,
                  ids=torch.tensor([[ids or [0, 0, 0]]]), negated=torch.tensor([[negated]]),
                  age=torch.tensor([[age]]), mask=torch.tensor([[True]]))


def vector(enc, wte, mem) -> torch.Tensor:
    with torch.no_grad():
        return enc(mem, wte)[0, 0]


def test_token_order_of_a_name_survives_pooling():
    enc, wte = encoder()
    assert not torch.allclose(vector(enc, wte, memory([5, 9])), vector(enc, wte, memory([9, 5])))


def test_padding_is_ignored_and_long_names_are_truncated():
    enc, wte = encoder(max_surface_len=3)
    torch.testing.assert_close(vector(enc, wte, memory([5, 9, -1, -1])), vector(enc, wte, memory([5, 9])))
    torch.testing.assert_close(vector(enc, wte, memory([5, 9, 7, 8, 3])), vector(enc, wte, memory([5, 9, 7])))


def test_every_part_and_polarity_and_age_matter():
    enc, wte = encoder()
    base = vector(enc, wte, memory([5]))
    for other in (memory([6]), memory([5], relation=[3]), memory([5], obj=[4]),
                  memory([5], negated=True), memory([5], age=100)):
        assert not torch.allclose(vector(enc, wte, other), base)


def test_tokens_mode_shares_the_token_embedding():
    enc, wte = encoder()
    enc(memory([5, 9]), wte).sum().backward()
    touched = wte.weight.grad.abs().sum(dim=1).nonzero().flatten().tolist()
    assert touched == [1, 2, 5, 9]  # relation [1], object [2], subject [5, 9]


def test_vocab_mode_hashes_ids_and_has_an_unknown_row():
    enc, wte = encoder("vocab", id_buckets=10)
    assert id_bucket(torch.tensor([-1, 0, 3, 13]), 10).tolist() == [10, 0, 3, 3]
    torch.testing.assert_close(vector(enc, wte, memory([0], ids=[3, 1, 4])),
                               vector(enc, wte, memory([0], ids=[13, 11, 24])))
    unknown = vector(enc, wte, memory([0], ids=[-1, 1, 4]))
    assert not torch.allclose(unknown, vector(enc, wte, memory([0], ids=[0, 1, 4])))


def test_age_buckets_are_log_spaced_and_capped():
    ages = torch.tensor([-3, 0, 1, 2, 3, 6, 7, 8, 1023, 1024, 10 ** 9])
    assert age_bucket(ages, 16).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 10, 10, 15]


def test_invalid_slots_are_finite():
    for mode in ("tokens", "vocab"):
        enc, wte = encoder(mode)
        empty = Memory(subject=torch.full((2, 3, 4), -1), relation=torch.full((2, 3, 0), -1),
                       object=torch.full((2, 3, 4), -1), ids=torch.full((2, 3, 3), -1),
                       negated=torch.zeros(2, 3, dtype=torch.bool), age=torch.zeros(2, 3, dtype=torch.long),
                       mask=torch.zeros(2, 3, dtype=torch.bool))
        out = enc(empty, wte)
        assert out.shape == (2, 3, C) and torch.isfinite(out).all()
