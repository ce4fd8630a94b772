"""The PDP's plumbing: small utilities its other parts share.

- keys.py: signing keys on disk; timestamps.py the one time form (RFC 3339 UTC);
  rendering.py text made inert for terminals; protogen.py the gRPC stubs generated;
  downloads.py bodies fetched over HTTP, read whole under a cap.
"""
