"""`audsync serve`: a Segment-compatible tracking API (DESIGN.md section 6).

`validate` turns request bodies into normalised messages and rejections (pure), `app` is the
ASGI app, `server` runs it on uvicorn until SIGTERM/SIGINT.
"""
