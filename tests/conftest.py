
import os

import pytest
import torch

os.environ.setdefault("CONVSVD_PROGRESS_INTERVAL", "86400")  # no progress log lines in the tests' stderr

torch.set_num_threads(1)  # pytest-xdist runs two workers on two cores


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


#: Doctests that train a model or fit a full-size example: like the end-to-end tests, marked slow, so
#: ``make test-fast`` leaves them out and ``make test`` runs them.
SLOW_DOCTESTS = {"convsvd.zoo.train.train", "convsvd.spectral.mp.fit_marchenko_pastur"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.DoctestItem) and item.name in SLOW_DOCTESTS:
            item.add_marker(pytest.mark.slow)
