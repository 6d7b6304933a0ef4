"""genzoo's process set-up: the first multi-threaded MKL vector-math call of a fresh process is accurate."""

import subprocess
import sys

import pytest

FIRST_CALL = """
import genzoo, torch
torch.set_num_threads(2)
torch.manual_seed(0)
x = torch.randn(9, 3, 28, 28) * 3  # small enough to run serially: the tanh is the process's first threaded op
print(float((torch.tanh(x).double() - torch.tanh(x.double())).abs().max() / torch.finfo(torch.float32).eps))
"""


@pytest.mark.slow
def test_the_first_threaded_tanh_of_a_fresh_process_is_accurate():
    """Without genzoo.mkl_warmup's warm-up, 2 fresh processes in 30 (9 in 30 without importing genzoo) on the 2-core
    test machine ran this tanh with a low-accuracy kernel on one thread's half (errors of hundreds of epsilons),
    so 40 processes catch a regression in about 9 tries of 10; the race needs a fresh process each time."""
    errors = [
        float(subprocess.run([sys.executable, "-c", FIRST_CALL], capture_output=True, text=True, check=True).stdout)
        for _ in range(40)
    ]
    assert max(errors) <= 1.0, sorted(errors)[-3:]
