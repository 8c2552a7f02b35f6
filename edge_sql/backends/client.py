"""The HTTP client of an OpenAI-compatible model server (``backends/server.py``), on the standard library's
``urllib.request`` (no extra dependency).

Every way a call can fail becomes one :class:`ServerError` (a :class:`ModelError`: exit 4) whose message names the
server and what to do: a refused connection, a host name that does not resolve, a TLS failure, no answer within the
timeout, HTTP 401/403 (the API key), 404, 500, a body that is not JSON. HTTP 429 and 503 (busy, loading) are retried
with backoff, honouring ``Retry-After``, a bounded number of times. The API key travels in the ``Authorization``
header only: it is never part of a message.

One deadline bounds a whole call, its retries and their waits included: ``timeout`` seconds after it starts, a
:class:`Watchdog` shuts the connection's socket down, whatever it is waiting for (the connection, the status line,
the headers, the body), so a server that sends its answer a byte at a time cannot stretch a call past it. (A host
name that is slow to resolve is the one wait it cannot cut: name resolution holds no socket.)

>>> display_url("https://user:secret@example.com:8443/v1?preset=x")
'https://example.com:8443/v1'
>>> server_root("http://127.0.0.1:8000/v1")
'http://127.0.0.1:8000'
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit, urlunsplit

from edge_sql.errors import ModelError

#: HTTP statuses that mean "busy, ask again": retried with backoff.
RETRIED = (429, 503)


class ServerError(ModelError):
    """A call to a model server failed; ``status`` is its HTTP status (0 when no answer came)."""

    def __init__(self, message: str, status: int = 0, detail: str = ""):
        super().__init__(message)
        self.status = status
        self.detail = detail  # the server's own words, when it gave any
        self.retry_after: float | None = None  # seconds a busy server asked us to wait


def display_url(url: str) -> str:
    """``url`` as it may be shown: without user name, password, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def server_root(base: str) -> str:
    """The server's root from the API's base URL (``…/v1`` dropped): where llama.cpp servers keep their extras."""
    base = base.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def is_loopback(host: str | None) -> bool:
    return host in ("localhost", "::1") or (host or "").startswith("127.")


class Client:
    """Calls to one server: ``base`` is the API's URL (``http://host:port/v1``), ``timeout`` the seconds an answer
    may take, ``tries`` how often a busy server (429, 503) is asked in all, ``backoff`` the first wait (doubled after
    each try, at most ``max_wait``; a ``Retry-After`` header is honoured up to ``max_wait``)."""

    def __init__(self, base: str, *, api_key: str | None = None, timeout: float = 300.0, tries: int = 4,
                 backoff: float = 0.5, max_wait: float = 8.0):
        self.base = base.rstrip("/")
        self.shown = display_url(base)
        self.api_key = api_key or None
        self.timeout, self.tries, self.backoff, self.max_wait = timeout, max(1, tries), backoff, max_wait
        handlers = [WatchedHTTPHandler, WatchedHTTPSHandler, WatchedRedirectHandler]
        if is_loopback(urlsplit(base).hostname):  # a proxy set for the internet must not take local calls
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def get(self, path: str, *, root: bool = False):
        return self.call("GET", path, None, root=root)

    def post(self, path: str, body: dict, *, root: bool = False):
        return self.call("POST", path, body, root=root)

    def call(self, method: str, path: str, body: dict | None, *, root: bool = False):
        """The parsed JSON answer of ``method path`` (relative to the base URL, or to the server's root), within
        ``timeout`` seconds in all: a busy server is asked again only while a wait leaves time for the next try."""
        url = (server_root(self.base) if root else self.base) + path
        deadline = time.monotonic() + self.timeout
        wait = self.backoff
        for attempt in range(1, self.tries + 1):
            try:
                return self.once(method, url, path, body, deadline)
            except ServerError as error:
                if error.status not in RETRIED:
                    raise
                pause = min(wait if error.retry_after is None else error.retry_after, self.max_wait)
                if attempt == self.tries:
                    raise ServerError(f"{error} after {self.tries} tries; try again later, or with fewer "
                                      "--candidates", error.status, error.detail) from None
                if time.monotonic() + pause >= deadline:
                    tries = "1 try" if attempt == 1 else f"{attempt} tries"
                    raise ServerError(f"{error} after {tries} within {self.timeout:g} s (--model-timeout); try "
                                      "again later, or with fewer --candidates", error.status, error.detail) from None
                time.sleep(pause)
                wait *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def once(self, method: str, url: str, path: str, body: dict | None, deadline: float):
        """One try of a call, cut off at ``deadline`` (``time.monotonic()``)."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        left = deadline - time.monotonic()
        if left <= 0:
            raise self.late()
        failure = None
        watchdog = request.watchdog = Watchdog(deadline)  # the handlers below hand it the connection's socket
        with watchdog:
            try:
                with self._opener.open(request, timeout=left) as response:
                    raw, kind = response.read(), response.headers.get("Content-Type", "")
            except urllib.error.HTTPError as error:
                failure = self.refusal(error, path)  # reads the error's body, under the watchdog too
            except TimeoutError:
                failure = self.late()
            except urllib.error.URLError as error:
                late = isinstance(error.reason, TimeoutError)
                failure = self.late() if late else self.unreachable(describe_reason(error.reason))
            except (OSError, ValueError, http.client.HTTPException) as error:  # dropped, a broken HTTP answer
                failure = self.unreachable(describe_reason(error))
        if watchdog.fired:  # whatever the cut looked like from here (an error, a short body)
            raise self.late()
        if failure is not None:
            raise failure
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            what = kind.split(";")[0] or "no content type"
            raise ServerError(f"the model server at {self.shown} answered {path} with something that is not JSON "
                              f"({what}, {len(raw):,} bytes): give the base URL of an OpenAI-compatible API, e.g. "
                              "http://host:port/v1") from None

    def late(self) -> ServerError:
        return self.unreachable(f"no answer within {self.timeout:g} s (--model-timeout)")

    def unreachable(self, reason: str) -> ServerError:
        return ServerError(f"cannot use the model server at {self.shown}: {reason}")

    def refusal(self, error: urllib.error.HTTPError, path: str) -> ServerError:
        """One line for an HTTP error status, with the server's own message when it sent one."""
        status = error.code
        try:
            detail = server_message(error.read())
        except (OSError, http.client.HTTPException):  # cut short: no words of its own
            detail = ""
        said = f": {detail}" if detail else ""
        if status in (401, 403):
            fix = "EDGESQL_API_KEY is not accepted" if self.api_key else "it wants an API key: set EDGESQL_API_KEY"
            message = f"the model server at {self.shown} refused the call (HTTP {status}): {fix}"
        elif status == 404:
            message = (f"the model server at {self.shown} has no {path} (HTTP 404{said}): give the base URL of an "
                       "OpenAI-compatible API, e.g. http://host:port/v1")
        elif status in RETRIED:
            message = f"the model server at {self.shown} is busy (HTTP {status}{said})"
        else:
            message = f"the model server at {self.shown} failed (HTTP {status}){said}"
        refused = ServerError(message, status, detail)
        refused.retry_after = retry_after(error.headers.get("Retry-After") if error.headers else None)
        return refused


class Watchdog:
    """Cuts a call off at ``deadline`` (``time.monotonic()``): a timer that shuts down the socket of the connection
    it watches, which ends any wait on it at once (a read gets the end of the stream or an error). ``fired`` says
    that it did. Used as a context: the timer runs inside the ``with`` block only."""

    def __init__(self, deadline: float):
        self.fired = False
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self.fire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        """The connected socket to cut (shut down at once if the deadline already passed while connecting)."""
        with self._lock:
            self._socket = sock
            fired = self.fired
        if fired:
            cut(sock)

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            sock = self._socket
        if sock is not None:
            cut(sock)


def cut(sock: socket.socket) -> None:
    """Shut ``sock`` down both ways (the socket level's call, also for a TLS socket: no TLS goodbye is sent)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:  # closed already
        pass


class Watched:
    """An ``http.client`` connection that hands its socket to a :class:`Watchdog` once connected (connecting itself
    waits at most the time left: urllib passes it as the connection's timeout)."""

    def __init__(self, host, *, watchdog: Watchdog, **kwargs):
        super().__init__(host, **kwargs)
        self.watchdog = watchdog

    def connect(self) -> None:
        super().connect()
        self.watchdog.watch(self.sock)


class WatchedHTTPConnection(Watched, http.client.HTTPConnection):
    pass


class WatchedHTTPSConnection(Watched, http.client.HTTPSConnection):
    pass


WATCHED = {http.client.HTTPConnection: WatchedHTTPConnection, http.client.HTTPSConnection: WatchedHTTPSConnection}


class Watching:
    """A urllib handler whose connections the request's ``watchdog`` watches (urllib's own otherwise: proxies, TLS
    settings and all)."""

    def do_open(self, http_class, req, **http_conn_args):
        watched, watchdog = WATCHED[http_class], req.watchdog

        def connection(host, **kwargs):
            return watched(host, watchdog=watchdog, **kwargs)

        return super().do_open(connection, req, **http_conn_args)


class WatchedHTTPHandler(Watching, urllib.request.HTTPHandler):
    pass


class WatchedHTTPSHandler(Watching, urllib.request.HTTPSHandler):
    pass


class WatchedRedirectHandler(urllib.request.HTTPRedirectHandler):
    """A redirect is followed under the first request's watchdog (and within its deadline)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.watchdog = req.watchdog
        return new


def describe_reason(reason) -> str:
    """Plain words for why a connection failed."""
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "no answer in time (--model-timeout)"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the server running, on that port?)"
    if isinstance(reason, socket.gaierror):
        return "its host name does not resolve"
    if isinstance(reason, ssl.SSLError):
        return f"TLS failed ({getattr(reason, 'reason', None) or reason})"
    if isinstance(reason, http.client.IncompleteRead):
        return "the connection was closed before the whole answer came"
    if isinstance(reason, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return "the connection was closed before an answer came"
    text = " ".join(str(reason).split())
    if "RemoteDisconnected" in type(reason).__name__ or "closed connection" in text:
        return "the connection was closed before an answer came"
    return text or type(reason).__name__


def server_message(raw: bytes, limit: int = 200) -> str:
    """The error message in an error body (OpenAI's ``{"error": {"message": …}}``, FastAPI's ``{"detail": …}``, or
    plain text), on one line, shortened.

    >>> server_message(b'{"error": {"message": "Invalid API key", "type": "auth"}}')
    'Invalid API key'
    >>> server_message(b'{"detail": [{"msg": "field required"}]}')
    'field required'
    """
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = text
    for _ in range(3):
        if isinstance(data, dict):
            data = data.get("error") or data.get("detail") or data.get("message") or ""
        elif isinstance(data, list) and data:
            data = data[0].get("msg", "") if isinstance(data[0], dict) else data[0]
    text = " ".join(str(data).split()) if isinstance(data, (str, int, float)) else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds; None otherwise.

    >>> retry_after("2"), retry_after("Wed, 21 Oct 2026 07:28:00 GMT"), retry_after(None)
    (2.0, None, None)
    """
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
