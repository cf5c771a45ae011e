"""A Toxiproxy client for any server (embedded or Go), built on toxiproxy-python 0.1.1.

It keeps toxiproxy-python's classes, method names and exceptions, so code written for it keeps
working, and adds what it lacks:

- one client per server: the URL lives on the instance, not in class-level globals, so several
  servers can be driven at once (toxiproxy-python's ``APIConsumer.host/port`` are global);
- a timeout on every request (toxiproxy-python has none);
- :class:`ServerError` for every other error status (500, 403, 405, 503), which toxiproxy-python
  silently ignores; 409, 404 and 400 still raise ``ProxyExists``, ``NotFound``, ``InvalidToxic``;
- ``Proxy.update_toxic``, ``Proxy.update``, ``add_toxic`` returning the toxic, ``get_proxy`` and
  ``get_toxic`` with one request each, a server-side atomic ``populate``, and names URL-quoted.

::

    Exception
    ├── toxiproxy.exceptions.ProxyExists    409 (a proxy or a toxic already exists)
    ├── toxiproxy.exceptions.NotFound       404
    ├── toxiproxy.exceptions.InvalidToxic   400 (any bad request)
    └── ServerError(status, body)           any other status >= 400
    requests.RequestException              transport errors and timeouts
"""

from __future__ import annotations

import socket
from typing import Any, Iterable
from urllib.parse import quote, urlsplit

import requests
import toxiproxy
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists
from toxiproxy.toxic import Toxic

__all__ = ["Toxiproxy", "Proxy", "Toxic", "ServerError", "ProxyExists", "NotFound", "InvalidToxic"]

DEFAULT_TIMEOUT = 5.0


class ServerError(Exception):
    """The server answered with an error status toxiproxy-python does not map (500, 403, 405, 503...)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"toxiproxy answered {status}: {body.decode('utf-8', 'replace').strip()}")
        self.status = status
        self.body = body


class ApiConsumer:
    """The HTTP side of one client: base URL, timeout, session and error mapping."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def request(self, method: str, path: str, json: Any = None) -> requests.Response:
        response = self.session.request(method, self.url + path, json=json, timeout=self.timeout)
        status, body = response.status_code, response.content
        if status == 409:
            raise ProxyExists(body)
        if status == 404:
            raise NotFound(body)
        if status == 400:
            raise InvalidToxic(body)
        if status >= 400:
            raise ServerError(status, body)
        return response

    def close(self) -> None:
        self.session.close()


def _path(*names: str) -> str:
    return "".join("/" + quote(name, safe="") for name in names)


def _toxic(proxy_name: str, values: dict[str, Any]) -> Toxic:
    return Toxic(proxy=proxy_name, **values)


class Proxy(toxiproxy.Proxy):
    """A proxy on one server; the methods of toxiproxy-python's Proxy, plus updates."""

    def __init__(self, api: ApiConsumer, **values: Any) -> None:
        super().__init__(**values)
        self.api = api

    def _refresh(self, values: dict[str, Any]) -> "Proxy":
        self.listen, self.upstream, self.enabled = values["listen"], values["upstream"], values["enabled"]
        return self

    def toxics(self) -> dict[str, Toxic]:
        found = self.api.request("GET", _path("proxies", self.name, "toxics")).json()
        return {t["name"]: _toxic(self.name, t) for t in found}

    def get_toxic(self, toxic_name: str) -> Toxic | None:
        try:
            return _toxic(self.name, self.api.request("GET", _path("proxies", self.name, "toxics", toxic_name)).json())
        except NotFound:
            return None

    def add_toxic(self, **kwargs: Any) -> Toxic:
        """Add a toxic (keywords: type, stream, name, toxicity, attributes) and return it as created."""
        body = {k: kwargs[k] for k in ("name", "type", "stream", "toxicity", "attributes") if k in kwargs}
        return _toxic(self.name, self.api.request("POST", _path("proxies", self.name, "toxics"), body).json())

    def update_toxic(self, toxic_name: str, attributes: dict[str, Any] | None = None,
                     toxicity: float | None = None) -> Toxic:
        """Change some attributes and/or the toxicity of a toxic; others keep their values."""
        body: dict[str, Any] = {}
        if attributes is not None:
            body["attributes"] = attributes
        if toxicity is not None:
            body["toxicity"] = toxicity
        path = _path("proxies", self.name, "toxics", toxic_name)
        return _toxic(self.name, self.api.request("PATCH", path, body).json())

    def destroy_toxic(self, toxic_name: str) -> bool:
        return bool(self.api.request("DELETE", _path("proxies", self.name, "toxics", toxic_name)))

    def destroy(self) -> bool:
        return bool(self.api.request("DELETE", _path("proxies", self.name)))

    def update(self, **fields: Any) -> "Proxy":
        """PATCH any of listen, upstream, enabled; return self with the server's view."""
        return self._refresh(self.api.request("PATCH", _path("proxies", self.name), fields).json())

    def disable(self) -> None:
        self.update(enabled=False)

    def enable(self) -> None:
        self.update(enabled=True)


class Toxiproxy(toxiproxy.Toxiproxy):
    """A client for one Toxiproxy server, e.g. ``Toxiproxy("http://127.0.0.1:8474", timeout=2)``."""

    def __init__(self, url: str = "http://127.0.0.1:8474", timeout: float = DEFAULT_TIMEOUT) -> None:
        self.api = ApiConsumer(url, timeout)

    def _proxy(self, values: dict[str, Any]) -> Proxy:
        return Proxy(self.api, **values)

    def proxies(self) -> dict[str, Proxy]:
        return {name: self._proxy(values) for name, values in self.api.request("GET", "/proxies").json().items()}

    def get_proxy(self, proxy_name: str) -> Proxy | None:
        try:
            return self._proxy(self.api.request("GET", _path("proxies", proxy_name)).json())
        except NotFound:
            return None

    def running(self) -> bool:
        parts = urlsplit(self.api.url)
        try:
            with socket.create_connection((parts.hostname, parts.port or 80), timeout=self.api.timeout):
                return True
        except OSError:
            return False

    def version(self) -> bytes | None:
        return self.api.request("GET", "/version").content if self.running() else None

    def reset(self) -> bool:
        return bool(self.api.request("POST", "/reset"))

    def create(self, upstream: str, name: str, listen: str | None = None, enabled: bool | None = None) -> Proxy:
        """Create a proxy (listen defaults to 127.0.0.1:0); ProxyExists comes from the server's 409."""
        body: dict[str, Any] = {"upstream": upstream, "name": name, "listen": listen or "127.0.0.1:0"}
        if enabled is not None:
            body["enabled"] = enabled
        return self._proxy(self.api.request("POST", "/proxies", body).json())

    def destroy(self, proxy: Proxy | str) -> bool:
        """Delete a proxy given as a Proxy or a name (toxiproxy-python ignores names)."""
        name = proxy.name if isinstance(proxy, toxiproxy.Proxy) else proxy
        return bool(self.api.request("DELETE", _path("proxies", name)))

    def destroy_all(self) -> None:
        for name in self.proxies():
            self.destroy(name)

    def populate(self, proxies: Iterable[dict[str, Any]]) -> list[Proxy]:
        """Create or replace proxies in one atomic-validation request (POST /populate); return them all."""
        response = self.api.request("POST", "/populate", list(proxies))
        return [self._proxy(values) for values in response.json()["proxies"] or []]

    def update_api_consumer(self, host: str, port: int) -> None:
        """Point this client (only this one) at another server."""
        self.api.url = f"http://{host}:{port}"

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> "Toxiproxy":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
