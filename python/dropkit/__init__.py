"""dropkit: fast CPU training of regularized multilayer perceptrons."""
from . import _core

__version__ = "0.1.0"
