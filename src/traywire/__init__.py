"""traywire: one local endpoint for many LLM backends."""

__version__ = "0.1.0"
