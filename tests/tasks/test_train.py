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
