"""An asyncio TCP fault proxy that speaks the Toxiproxy 2.x REST API.

No Toxiproxy server can be installed on the sandbox machines, so the chaos suites drive this
proxy in the sandbox and a real Toxiproxy in staging through the same API. Run it with
``python -m spark_sandbox.chaosproxy --host 127.0.0.1 --port P``.
"""
