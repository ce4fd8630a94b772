"""The Postgres protocol proxy: sans-IO codec, response tracker, enforcer, asyncio glue.

Declared to Portcullis in protocol.py (entry point `postgres`); served by proxy.py.
"""
