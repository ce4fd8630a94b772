"""The Postgres protocol proxy: sans-IO codec, response tracker, enforcer, asyncio glue."""

from proxies.launcher import register_proxy


def _factory(connection, config, pdp_address):  # type: ignore[no-untyped-def]
    from proxies.postgres.proxy import PostgresProxy

    return PostgresProxy(connection, config, pdp_address)


register_proxy("postgres", _factory)
