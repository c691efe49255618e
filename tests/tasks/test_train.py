"""The train stage's launcher: a failed training run ends on the reason it printed."""
import sys

import pytest

from tasks.train import run_streaming


def test_the_failure_reason_comes_first():
    script = ("import sys\nprint('step 1/9 | loss 3.0')\nprint('error: variant triplet: the loss "
              "is nan at step 2; lower train.matrix_lr', file=sys.stderr)\n"
              "print('Traceback of the launcher', file=sys.stderr)\nsys.exit(1)")
    lines = []
    with pytest.raises(RuntimeError) as err:
        run_streaming([sys.executable, "-c", script], lines.append)
    first = str(err.value).splitlines()[0]
    assert first == ("training failed: variant triplet: the loss is nan at step 2; lower "
                     "train.matrix_lr (exit status 1); last lines:")
    assert lines[0] == "step 1/9 | loss 3.0"


def test_a_failure_without_a_reason_says_the_status():
    with pytest.raises(RuntimeError, match=r"^training exited with status 3; last lines:"):
        run_streaming([sys.executable, "-c", "import sys; sys.exit(3)"], lambda line: None)


def test_one_process_trains_without_torchrun_and_several_with_it(tmp_path):
    from tasks.train import torchrun_command
    one = torchrun_command(tmp_path / "r", "triplet", 1, resume=False)
    assert one[1:3] == ["-m", "model.train"] and "torch.distributed.run" not in one
    two = torchrun_command(tmp_path / "r", "triplet", 2, resume=True)
    assert two[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert two[-1] == "--resume"


def test_checkpoints_of_other_training_code_are_not_resumed(tmp_path, monkeypatch):
    import json
    import tasks.train as train_stage
    from configs.schema import parse_config
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "manifest.json").write_text(json.dumps({"cache_key": "s"}))
    cfg = parse_config({"name": "x"})
    before = train_stage.checkpoint_key(cfg, tmp_path, "triplet")
    monkeypatch.setattr(train_stage, "code_version", lambda modules: "edited model/train.py")
    assert train_stage.checkpoint_key(cfg, tmp_path, "triplet") != before
