
import os

import pytest
import torch

os.environ.setdefault("CONVSVD_PROGRESS_INTERVAL", "86400")  # no progress log lines in the tests' stderr

torch.set_num_threads(1)  # pytest-xdist runs two workers on two cores


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
