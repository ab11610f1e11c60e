"""``codex-appserver serve``: a WebSocket bridge that relays each TCP client to its own app-server connection.

Sans-I/O rules (no trio, no OS): :mod:`.auth` (token check, bearer and subprotocol parsing, rate limiter),
:mod:`.rules` (bind policy, Origin rule, request routing), :mod:`.http` (the server side of the opening
handshake on h11). Moving bytes: :mod:`.client` (the WebSocket server endpoint, a :class:`~proxy.relay.Downstream`)
and :mod:`.server` (admission, per-client relay, shutdown) with :mod:`.listen` (sockets). :mod:`.command` is the
click command.
"""
