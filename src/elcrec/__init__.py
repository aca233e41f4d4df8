"""elcrec: sequential recommendation with intent learning (ELCRec and its baselines).

The top-level import stays light (no torch); import from the subpackages for the real work:
`elcrec.data`, `elcrec.models`, `elcrec.training`, `elcrec.evaluation`.
"""

from .config import Config, ConfigError

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "__version__"]
