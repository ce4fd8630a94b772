"""Portcullis protocol proxies: one shared runtime, one thin package per protocol."""
