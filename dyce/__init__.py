"""dyce: Dynamic Configurable Exiting.

Attach small exit heads to a frozen backbone, record what every exit predicts, measure MACs,
search exit configurations for every accuracy/compute trade-off and run them with live budget
switching. Importing the package is cheap: submodules load their heavy dependencies themselves.
"""

from dyce.errors import DyceError

__version__ = "0.1.0"
__all__ = ["DyceError", "__version__"]
