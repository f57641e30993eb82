"""The sync agent: sends sealed segments to the hub over tus, most urgent first, within the link's
policy and the upload cap, and marks them acked only on the hub's durable commit.

* ``transport`` -- ``HubTransport`` and its aiohttp implementation (token, TLS, stall watchdog)
* ``uploader``  -- one segment: drives ``sync_protocol.sender.UploadSender``, backs off with ``sync_protocol.backoff``
* ``agent``     -- scheduling: priorities, pausing for urgent data, parking, concurrency
* ``link``      -- link measurement, link policy, upload cap
"""
