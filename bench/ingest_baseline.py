"""The ceiling of `audsync serve`'s HTTP stack, for bench/ingest.py: the same Starlette routing on
the same uvicorn setup (httptools, asyncio loop, one process, no access log) answering
{"success": true} to POST /v1/{endpoint} after reading the body and parsing its JSON with orjson,
and doing nothing else (no validation, no storage, no forwarding).

    python bench/ingest_baseline.py --port 8089
"""

from __future__ import annotations

import argparse
import asyncio

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

OK = orjson.dumps({"success": True})


async def post(request: Request) -> Response:
    body = await request.body()
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return Response(b'{"success": false}', status_code=400, media_type="application/json")
    return Response(OK, media_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = Starlette(routes=[Route("/v1/{endpoint}", post, methods=["POST"])])
    # as audsync.ingest.server.serve configures uvicorn
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=args.port, http="httptools", loop="asyncio",
                                           lifespan="off", log_config=None, access_log=False, server_header=False))
    print(f"baseline on http://127.0.0.1:{args.port}", flush=True)
    asyncio.run(server.serve())


if __name__ == "__main__":
    main()
