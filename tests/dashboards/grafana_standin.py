"""A local HTTP stand-in for the few Grafana HTTP API endpoints `provision` uses.

It stands in because no Grafana server can be installed on these machines (grafana.md): it
answers like Grafana 11/12 does for folders, data sources and dashboards (status codes, 404
bodies, ids and versions added on save, bearer-token auth) and records every request, so a
test can prove that a second provisioning run writes nothing. `test_provision_real_grafana`
runs the same code against a real Grafana when GRAFANA_URL is set.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Json = dict[str, Any]


class GrafanaStandIn:
    """In-memory state plus a threaded HTTP server on 127.0.0.1 (a free port)."""

    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self.folders: dict[str, Json] = {}
        self.datasources: dict[str, Json] = {}
        self.dashboards: dict[str, Json] = {}
        self.requests: list[tuple[str, str]] = []
        self._next_id = 1
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def writes(self) -> list[tuple[str, str]]:
        """Requests that change state (everything but GET)."""
        return [r for r in self.requests if r[0] != "GET"]

    def start(self) -> GrafanaStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # --- the endpoints ---------------------------------------------------------------

    def handle(self, method: str, path: str, body: Json | None) -> tuple[int, Json]:
        """Route one request; returns (status, JSON body)."""
        with self._lock:
            self.requests.append((method, path))
            routes: list[tuple[str, str, Any]] = [
                ("GET", r"/api/health", lambda: (200, {"database": "ok", "version": "12.0.0"})),
                ("GET", r"/api/folders/([\w-]+)", self._get_folder),
                ("POST", r"/api/folders", lambda: self._create_folder(body or {})),
                ("PUT", r"/api/folders/([\w-]+)", lambda uid: self._update_folder(uid, body)),
                ("GET", r"/api/datasources/uid/([\w-]+)", self._get_datasource),
                ("POST", r"/api/datasources", lambda: self._create_datasource(body or {})),
                (
                    "PUT",
                    r"/api/datasources/uid/([\w-]+)",
                    lambda uid: self._update_datasource(uid, body or {}),
                ),
                ("GET", r"/api/dashboards/uid/([\w-]+)", self._get_dashboard),
                ("POST", r"/api/dashboards/db", lambda: self._save_dashboard(body or {})),
            ]
            for verb, pattern, action in routes:
                match = re.fullmatch(pattern, path)
                if verb == method and match:
                    result: tuple[int, Json] = action(*match.groups())
                    return result
            return 404, {"message": "Not found"}

    def _get_folder(self, uid: str) -> tuple[int, Json]:
        folder = self.folders.get(uid)
        return (200, folder) if folder else (404, {"message": "folder not found"})

    def _create_folder(self, body: Json) -> tuple[int, Json]:
        uid = body["uid"]
        if uid in self.folders:
            return 409, {"message": "a folder with the same uid already exists"}
        self.folders[uid] = {"id": self._new_id(), "uid": uid, "title": body["title"],
                             "version": 1}
        return 200, self.folders[uid]

    def _update_folder(self, uid: str, body: Json | None) -> tuple[int, Json]:
        folder = self.folders.get(uid)
        if folder is None:
            return 404, {"message": "folder not found"}
        folder.update(title=(body or {}).get("title", folder["title"]),
                      version=folder["version"] + 1)
        return 200, folder

    def _stored_datasource(self, body: Json, ds_id: int, version: int) -> Json:
        stored = {k: v for k, v in copy.deepcopy(body).items() if k != "secureJsonData"}
        stored.update(id=ds_id, orgId=1, readOnly=False, version=version,
                      secureJsonFields={k: True for k in body.get("secureJsonData", {})})
        stored.setdefault("basicAuth", False)
        stored.setdefault("isDefault", False)
        stored.setdefault("database", "")
        stored.setdefault("user", "")
        return stored

    def _get_datasource(self, uid: str) -> tuple[int, Json]:
        ds = self.datasources.get(uid)
        return (200, ds) if ds else (404, {"message": "Data source not found"})

    def _create_datasource(self, body: Json) -> tuple[int, Json]:
        if any(d["name"] == body["name"] for d in self.datasources.values()):
            return 409, {"message": "data source with the same name already exists"}
        stored = self._stored_datasource(body, self._new_id(), 1)
        self.datasources[stored["uid"]] = stored
        return 200, {"datasource": stored, "id": stored["id"], "message": "Datasource added"}

    def _update_datasource(self, uid: str, body: Json) -> tuple[int, Json]:
        old = self.datasources.get(uid)
        if old is None:
            return 404, {"message": "Data source not found"}
        stored = self._stored_datasource(body, old["id"], old["version"] + 1)
        self.datasources[uid] = stored
        return 200, {"datasource": stored, "id": stored["id"], "message": "Datasource updated"}

    def _get_dashboard(self, uid: str) -> tuple[int, Json]:
        entry = self.dashboards.get(uid)
        if entry is None:
            return 404, {"message": "Dashboard not found"}
        return 200, copy.deepcopy(entry)

    def _save_dashboard(self, body: Json) -> tuple[int, Json]:
        dash = copy.deepcopy(body["dashboard"])
        uid = dash["uid"]
        old = self.dashboards.get(uid)
        stale = old is not None and dash.get("version") != old["dashboard"]["version"]
        if stale and not body.get("overwrite"):
            return 412, {"message": "The dashboard has been changed by someone else",
                         "status": "version-mismatch"}
        folder_uid = body.get("folderUid", "")
        if folder_uid and folder_uid not in self.folders:
            return 400, {"message": "folder not found"}
        dash["id"] = old["dashboard"]["id"] if old else self._new_id()
        dash["version"] = old["dashboard"]["version"] + 1 if old else 1
        meta = {"folderUid": folder_uid, "slug": re.sub(r"\W+", "-", dash["title"].lower()),
                "version": dash["version"], "provisioned": False}
        self.dashboards[uid] = {"dashboard": dash, "meta": meta}
        return 200, {"id": dash["id"], "uid": uid, "status": "success",
                     "url": f"/d/{uid}/{meta['slug']}", "version": dash["version"]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {standin.token}":
                    self._reply(401, {"message": "Unauthorized"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                status, reply = standin.handle(self.command, self.path.split("?")[0], body)
                self._reply(status, reply)

            def _reply(self, status: int, body: Json) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        return Handler
