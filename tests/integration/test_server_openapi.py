"""/openapi.json stays true to the router, and docs/http.md stays true to /openapi.json."""

from __future__ import annotations

import re
from pathlib import Path

from consensus.node import Node, NodeConfig
from consensus.server import Server, ServerConfig, load_apps, machines_for
from consensus.server.apps import available_apps

ROOT = Path(__file__).resolve().parents[2]


def build(tmp_path):
    specs = load_apps(available_apps())
    node = Node(NodeConfig(node_id="127.0.0.1:1", peers=["127.0.0.1:1"], data_dir=str(tmp_path)), machines_for(specs))
    server = Server(node, ServerConfig(http_url="http://127.0.0.1:2"), specs)
    return server, server.build()


def router_operations(app):
    operations = set()
    for route in app.router.routes():
        info = route.resource.get_info()
        path = info.get("path") or info.get("formatter")
        operations.add((route.method.lower(), path))
    return operations


def document_operations(document):
    return {(method, path) for path, methods in document["paths"].items() for method in methods}


def test_openapi_lists_exactly_the_routes_the_router_serves(tmp_path):
    from consensus.server.openapi import build_document

    server, app = build(tmp_path)
    document = build_document(server.routes)
    assert router_operations(app) == document_operations(document)
    assert {("get", "/v1/counters/{name}"), ("post", "/v1/counters/{name}/incr"), ("put", "/v1/counters/{name}"),
            ("get", "/v1/status"), ("get", "/readyz"), ("get", "/livez"), ("get", "/metrics"), ("get", "/openapi.json"),
            ("post", "/v1/members"), ("delete", "/v1/members/{id}"), ("post", "/v1/leader/transfer")} <= document_operations(document)
    for path, methods in document["paths"].items():
        for name in re.findall(r"{(\w+)}", path):
            for op in methods.values():
                assert any(p["in"] == "path" and p["name"] == name for p in op["parameters"]), (path, name)
        for op in methods.values():
            assert op["operationId"] and op["summary"] and ({"200", "201"} & set(op["responses"]))
            if op.get("security"):
                assert "401" in op["responses"]


def test_the_http_reference_documents_every_operation(tmp_path):
    from consensus.server.openapi import build_document

    server, _ = build(tmp_path)
    document = build_document(server.routes)
    text = (ROOT / "docs" / "http.md").read_text()
    documented = {(m.lower(), p) for m, p in re.findall(r"^#{2,4} `(GET|POST|PUT|DELETE) ([^`]+)`", text, re.M)}
    assert documented == document_operations(document)
    for methods in document["paths"].values():
        for op in methods.values():
            assert op["operationId"] in text, op["operationId"]
