"""PostgreSQL proxy: sans-IO wire codec (codec.py), SCRAM client (scram.py), asyncio glue."""
