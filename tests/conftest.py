
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


#: The modules that take longest (minutes on two cores), longest first: they start first, so that with
#: ``make test``'s fine-grained dispatch (``--maxschedchunk 2``) the two workers finish together instead
#: of one running a long test alone at the end. Whole modules move, in their own order, so a module's
#: fixtures are still set up once per worker.
LONGEST_FIRST = ("tests/test_readme.py", "tests/test_report.py", "tests/faults/test_outputs.py",
                 "tests/test_report_browser.py", "tests/faults/test_env.py", "tests/test_zoo.py",
                 "tests/test_onnx_runner.py", "tests/test_profile_run.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.DoctestItem) and item.name in SLOW_DOCTESTS:
            item.add_marker(pytest.mark.slow)
    rank = {m: i for i, m in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda it: rank.get(it.nodeid.split("::")[0], len(rank)))  # stable: the rest as collected
