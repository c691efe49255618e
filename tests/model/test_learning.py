"""A learning test: on the toy task the recalled value is predictable only from the memory slot,
so after a short CPU run the trained triplet model beats the same model with memory removed."""
import torch

from configs.schema import load_config
from model.evaluate import evaluate_variant
from model.train import main


def test_memory_carries_the_recalled_value(toy_run):
    config, runs = toy_run(num_docs=300, steps=150, device_batch_size=64, checkpoint_every=1000,
                           warmup_steps=5, embedding_lr=0.05)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only contend on a shared machine
    try:
        main(["--config", str(config), "--runs-dir", str(runs), "--variant", "triplet"])
        cfg = load_config(config)
        with_memory = evaluate_variant(cfg, runs / "toy", "triplet")
        without = evaluate_variant(cfg, runs / "toy", "triplet", memory="none")
    finally:
        torch.set_num_threads(threads)
    assert with_memory["recall_spans"] == without["recall_spans"] == 60
    # chance is 1/32 per value (5 bits): memory must take recall well below it, removal near it
    assert with_memory["recall_bpb"] < 0.2 * without["recall_bpb"]
    assert with_memory["recall_bpb"] < 1.0 < 4.0 < without["recall_bpb"]
    assert with_memory["recall_acc"] >= 0.8 and without["recall_acc"] <= 0.25
