"""The PDP's adapters: what speaks to the outside, and nothing it decides.

- service.py: the gRPC DecisionService (OpenSession, Decide, CloseSession, recordings);
  approval_rpc.py its approval RPCs; decide_stream.py the DecideStream carriage.
- server.py: the gRPC server (TLS, mTLS, drain); proxy_auth.py who may speak for sessions.
- http_api.py: /healthz, /readyz, /metrics and the approvals HTTP API.
- webhooks.py: approval requests told to a chat webhook.
"""
