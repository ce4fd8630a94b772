"""Portcullis Policy Decision Point: identity, policy engines, decisions and evidence."""

__version__ = "0.1.0"
