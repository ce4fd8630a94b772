"""A small server that speaks OPA's REST Data API over the embedded OPA evaluator.

No `opa` binary is installable on these machines, so the remote engine is tested
against this: `POST /v1/data/{path}` with `{"input": ...}` answers `{"result": ...}`
(no `result` key when undefined), `?provenance=true` adds
`{"provenance": {"version", "bundles": {"rego": {"revision"}}}}`, evaluation errors are
HTTP 500 with OPA's error shape. Run as its own process:

    python tests/opa_server.py --policies rego/ --port 8181 [--delay-ms N]

`--policies` may name an OPA bundle file (`portcullis policy build`): its manifest's
revision is reported in the provenance as written, as OPA reports a bundle's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pdp.engine.bundle import load_bundle
from pdp.engine.opa import evaluate, new_engine


def build_app(policies: Path, delay_ms: int = 0) -> web.Application:
    from opa_bindings import OpaError

    if policies.is_file():
        from pdp.engine import opa_bundle

        data = policies.read_bytes()
        bundle = opa_bundle.read(data)
        manifest = json.loads(opa_bundle.unpack(data).get(".manifest", b"{}"))
        revision = str(manifest.get("revision", ""))
    else:
        bundle = load_bundle(policies).without_tests()
        revision = bundle.revision
    engine = new_engine(bundle)

    async def data(request: web.Request) -> web.Response:
        path = request.match_info["path"].strip("/").replace("/", ".")
        try:
            body = await request.json()
        except ValueError:
            return web.json_response(
                {"code": "invalid_parameter", "message": "body must be JSON"}, status=400
            )
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        try:
            result = evaluate(engine, body.get("input"), path)
        except OpaError as exc:
            return web.json_response({"code": "internal_error", "message": exc.message}, status=500)
        answer: dict = {} if result is None else {"result": result}
        if request.query.get("provenance") in ("true", ""):
            answer["provenance"] = {
                "version": "test-data-api",
                "bundles": {"rego": {"revision": revision}},
            }
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/v1/data/{path:.*}", data)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policies", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=int, default=0)
    args = parser.parse_args()
    web.run_app(
        build_app(Path(args.policies), args.delay_ms), host="127.0.0.1", port=args.port, print=None
    )


if __name__ == "__main__":
    main()
