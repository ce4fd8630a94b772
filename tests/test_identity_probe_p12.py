"""Identity probe 12 (helper auditsec9): an IdP in plain HTTP on a closed network, said out loud.

Since probe 10 an identity provider (issuer discovery or jwks_url) over plain HTTP to
another host stops the PDP, with no way round it: a closed network whose IdP serves only
HTTP could not run Portcullis at all, and the only workaround was to put the IdP behind a
loopback relay, which hides the same risk from every check. The refusal stays the
default and now names the way out: `identity.insecure_plain_http_to_remote_idp: true`,
logged as a warning at every start (the PDP's token verifier is made at each) and shown
by `portcullis status` and `config check` while it is set. With it, keys and the console's
sign-in endpoints are fetched from such a host; without it, nothing changed.

Real components: an aiohttp IdP on this host's non-loopback address, the PDP's
TokenVerifier, the console's OIDC provider and the `portcullis` CLI.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import yaml
from pdp_harness import pdp_raw
from test_identity_probe_p10 import _forged, _forger, _outward_address, _serving
from test_pdp_probe_p8 import _cli

from pdp.console.settings import ConsoleSettings
from pdp.console.signin import OIDCProvider
from pdp.domain.identity import TokenVerifier
from portcullis.config import ConfigError, IdentitySettings, load_config

OPT_OUT = "insecure_plain_http_to_remote_idp"


async def test_the_refusal_names_the_opt_out() -> None:
    async with _serving(_outward_address(), {}) as issuer:
        with pytest.raises(ConfigError) as refused:
            TokenVerifier(IdentitySettings(issuer=issuer))
    assert refused.value.key == "identity.issuer"
    assert f"identity.{OPT_OUT}: true" in refused.value.problem


async def test_with_the_opt_out_the_keys_come_in_clear_and_it_is_logged(caplog) -> None:
    key, jwks = _forger()
    discovery: dict[str, Any] = {}
    routes = {"/.well-known/openid-configuration": discovery, "/jwks": jwks}
    async with _serving(_outward_address(), routes) as issuer:
        discovery.update(issuer=issuer, jwks_uri=f"{issuer}/jwks")
        settings = IdentitySettings(issuer=issuer, insecure_plain_http_to_remote_idp=True)
        with caplog.at_level(logging.WARNING, logger="portcullis.identity"):
            verifier = TokenVerifier(settings)
        try:
            identity = await verifier.verify(_forged(key, issuer))
        finally:
            await verifier.close()
    assert identity.subject == "mallory@example.com"
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("INSECURE" in w and issuer in w and OPT_OUT in w for w in warned), warned


async def test_the_console_signs_in_at_endpoints_in_clear_only_with_the_opt_out() -> None:
    async with _serving(_outward_address(), {}) as remote:
        discovery: dict[str, Any] = {
            "authorization_endpoint": f"{remote}/authorize",
            "token_endpoint": f"{remote}/token",
        }
        async with _serving(remote.split("//")[1].split(":")[0], {
            "/.well-known/openid-configuration": discovery
        }) as idp:  # fmt: skip
            discovery["issuer"] = idp
            opted = ConsoleSettings(
                public_url="http://127.0.0.1:1", issuer=idp, insecure_plain_http_to_remote_idp=True
            )
            url = await OIDCProvider(opted).authorize_url({"state": "s"})
    assert url.startswith(f"{remote}/authorize?")


def test_a_bad_opt_out_value_stops_the_start(tmp_path) -> None:
    raw = pdp_raw(tmp_path)
    raw["identity"][OPT_OUT] = "yes"
    path = tmp_path / "portcullis.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert refused.value.key == f"identity.{OPT_OUT}"


async def test_status_and_config_check_show_the_opt_out(tmp_path) -> None:
    async with _serving(_outward_address(), {}) as issuer:
        raw = pdp_raw(tmp_path)
        raw["identity"] = {"issuer": issuer, OPT_OUT: True}
        path = tmp_path / "portcullis.yaml"
        path.write_text(yaml.safe_dump(raw))
        assert load_config(path).identity.insecure_plain_http_to_remote_idp
        status = await asyncio.to_thread(_cli, path, "status")
        checked = await asyncio.to_thread(_cli, path, "config", "check")
        plain = raw["identity"].pop(OPT_OUT)
        path.write_text(yaml.safe_dump(raw))
        refused = await asyncio.to_thread(_cli, path, "config", "check")
    assert plain is True
    for shown in (status.stdout, checked.stdout):
        assert f"WARNING: INSECURE identity.{OPT_OUT}" in shown and issuer in shown, shown
    assert refused.returncode != 0 and OPT_OUT in refused.stderr + refused.stdout
