"""``codex-appserver serve``: a WebSocket bridge that relays each TCP client to its own app-server connection.

Sans-I/O rules (no trio, no OS): :mod:`.auth` (token check, bearer and subprotocol parsing, rate limiter),
:mod:`.rules` (bind policy, Origin rule, request routing), :mod:`.http` (the server side of the opening
handshake on h11). Moving bytes: :mod:`.client` (the WebSocket server endpoint, a :class:`~proxy.relay.Downstream`),
:mod:`.server` (listening, admission, shutdown), :mod:`.upgrade` (each admitted client relayed to its own
app-server connection) and :mod:`.listen` (sockets). :mod:`.command` is the click command and
:mod:`.configure` what its options build (log levels, TLS context, token, bind policy, the run's settings).

Devices (issue 13): :mod:`.roles` (the observer allowlist, sans-I/O) and :mod:`.guard` (the relay that applies
it), :mod:`.pairing` (pairing URI, join codes, sans-I/O), :mod:`.devices` (the hashed token store),
:mod:`.state` (what a running bridge announces), :mod:`.statedir` (our 0700 folder, files written 0600),
:mod:`.selfsigned` (``--tls-self-signed``); at run time :mod:`.devicehub` (identity, revocation, presence),
:mod:`.control` (the control socket) and :mod:`.pairdesk` (join codes, ``POST /pair``); :mod:`.devices_cli`
and :mod:`.joining` are the ``serve devices`` commands.

Resumable sessions (issue 12): :mod:`.resume` (the protocol's messages and the session table, sans-I/O),
:mod:`.replay` (the replay log), :mod:`.resumable` (one session), :mod:`.port` (one client connection of a
session) and :mod:`.sessions` (the registry and the resume handshake). A client endpoint (:mod:`.client`) writes
through :mod:`.frame_queue` and talks to a :mod:`.relay_port`.

Where later work plugs in: resumable sessions select their subprotocol through ``Gate.known_subprotocols``
and keep a relay's upstream while its :class:`~.client.WebSocketEndpoint` is replaced; ``--reconnect`` wraps
the relay's upstream (:meth:`proxy.relay.Relay.upstream_ended`).
"""
