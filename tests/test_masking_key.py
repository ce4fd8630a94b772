"""The hash masking strategy's key is the deployment's configured secret, so hashed values
join across proxies and restarts; it is a secret like the upstream credentials (resolved
only where a proxy starts, never needed to read evidence)."""

from __future__ import annotations

import pytest

from portcullis.config import ConfigError, parse_config, resolve_secrets
from portcullis.masking import Masker
from portcullis.verdict import MaskRule
from proxies.postgres.proxy import masking_key

RAW = {
    "identity": {"dev": True},
    "masking": {"hash_key": "${MASK_KEY}"},
    "connections": [],
}


def test_hash_masked_values_join_across_proxies_and_restarts() -> None:
    rule = MaskRule(field="email", strategy="hash")
    first = Masker([rule], masking_key("a deployment secret", "orders-db"))
    again = Masker([rule], masking_key("a deployment secret", "billing-db"))
    other = Masker([rule], masking_key("another deployment!", "orders-db"))
    value = "ada@example.com"
    assert first.mask_field(rule, value) == again.mask_field(rule, value)
    assert first.mask_field(rule, value) != other.mask_field(rule, value)
    assert value not in first.mask_field(rule, value)


def test_the_key_is_resolved_only_where_a_proxy_starts() -> None:
    config = parse_config(RAW, env={})  # reading the file needs no secret
    with pytest.raises(ConfigError) as err:
        resolve_secrets(config, [], env={})
    assert "masking.hash_key" in str(err.value)
    served, _ = resolve_secrets(config, [], env={"MASK_KEY": "k" * 32})
    assert served.masking_hash_key == "k" * 32


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"identity": {"dev": True}, "masking": {"hash_key": "short"}}, env={})
    assert "masking.hash_key" in str(err.value)
