"""Built-in datasets."""

from convsvd.data.digits import DigitsData, load_digits

__all__ = ["DigitsData", "load_digits"]

# Datasets for profiling: one protocol (batches of ids, inputs, labels) and its sources.
from convsvd.data.protocol import Batch, DataSource, ExpectedInput  # noqa: E402
from convsvd.data.arrays import ArrayData, load_arrays  # noqa: E402
from convsvd.data.folder import ImageFolder  # noqa: E402
from convsvd.data.loader import LoaderData  # noqa: E402
from convsvd.data.sources import as_source  # noqa: E402

__all__ += ["ArrayData", "Batch", "DataSource", "ExpectedInput", "ImageFolder", "LoaderData", "as_source", "load_arrays"]
