import asyncio
import os
import time

from redis.asyncio import Redis


async def ping():
    client = Redis.from_url(os.environ["REDIS_URL"], decode_responses=True, socket_connect_timeout=5)
    try:
        return await client.ping()
    finally:
        await client.aclose()


while True:
    try:
        if asyncio.run(ping()) is True:
            break
        reason = "no PONG"
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
    print(f"waiting for Redis to answer the backend's authenticated PING: {reason}", flush=True)
    time.sleep(2)
