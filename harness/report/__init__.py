"""`kharness report`: the model and its renderers (model.py, for now one module)."""

from .model import *
