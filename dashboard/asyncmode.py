"""The one place that knows the dashboard runs on eventlet.

Flask-SocketIO serves many long-lived connections from one process with green threads, and the
user asked for eventlet. Eventlet is deprecated upstream (bug fixes only, and its maintainers
recommend migrating), so everything eventlet-specific lives here: moving to gevent means setting
``ASYNC_MODE = "gevent"`` and giving the functions below their gevent equivalents
(``gevent.monkey.patch_all()`` and ``gevent.spawn``).
Nothing else in the dashboard names eventlet.

``patch()`` must run before kafka-python (or anything importing ``socket``/``selectors``/``threading``)
is imported: a kafka-python imported earlier keeps the unpatched selector and its blocking
``select()`` freezes every green thread. ``dashboard/__main__.py`` calls it first thing.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable

ASYNC_MODE = "eventlet"


def patch() -> None:
    """Make the standard library cooperative; call before importing anything else."""
    with warnings.catch_warnings():
        # The deprecation banner is printed at import; the module docstring above is our answer to it.
        warnings.simplefilter("ignore")
        import eventlet

    eventlet.monkey_patch()


def serve(run: Callable[[], None], stop: threading.Event, before_stop: Callable[[], None], grace_s: float) -> None:
    """Run the web server in a green thread until ``stop`` is set or the server ends, then stop it.

    A signal handler must not raise into whatever green thread happens to run (it may be a
    Socket.IO handler that swallows the exception), so the handler only sets ``stop`` and this
    function, in the main green thread, ends the server. ``before_stop`` runs first: eventlet's
    server waits for open connections, so the Socket.IO clients are closed. The server then has
    ``grace_s`` to finish. An exception of the server (a port already in use) is raised here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import eventlet

    server = eventlet.spawn(run)
    server.link(lambda _server: stop.set())
    stop.wait()
    if not server.dead:
        before_stop()
        server.kill(SystemExit)  # eventlet's server leaves its accept loop on SystemExit, then waits for requests
    with eventlet.Timeout(grace_s, False):
        server.wait()
