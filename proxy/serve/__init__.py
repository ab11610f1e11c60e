"""``codex-appserver serve``: a WebSocket bridge that relays each TCP client to its own app-server connection.

Sans-I/O rules (no trio, no OS): :mod:`.auth` (token check, bearer and subprotocol parsing, rate limiter),
:mod:`.rules` (bind policy, Origin rule, request routing), :mod:`.http` (the server side of the opening
handshake on h11). Moving bytes: :mod:`.client` (the WebSocket server endpoint, a :class:`~proxy.relay.Downstream`)
and :mod:`.server` (admission, per-client relay, shutdown) with :mod:`.listen` (sockets). :mod:`.command` is the
click command.

Where later work plugs in: per-device tokens and roles replace the one :class:`~.auth.Token` of
:class:`~.rules.Gate` with a store that names the device, and a per-message rule goes into
:meth:`proxy.relay.Relay.forward` (a refused request is answered to the client with ``deliver``); resumable
sessions select their subprotocol through ``Gate.known_subprotocols`` and keep a relay's upstream while its
:class:`~.client.WebSocketEndpoint` is replaced; ``--reconnect`` wraps the relay's upstream
(:meth:`proxy.relay.Relay.upstream_ended`).
"""
