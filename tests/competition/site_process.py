"""One competition site in its own process: controller + telemetry pipeline + simulated rigs +
the site's coordination agent. Used by the two-site test (one process per site).

argv[1]: JSON ``{site_id, dsn, spool_dir, rigs, prefix, seed, skew_s}``. Prints one JSON line
``{"agent": endpoint, "api": endpoint}`` once every rig passes the launch health check, then
serves until stdin closes. ``skew_s`` offsets the site agent's clock (a site whose controller
clock is off) to show that the coordinator measures and applies site clock offsets.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> None:
    cfg = json.loads(sys.argv[1])
    from devices.fleet import FleetSpec, run_worker
    from lab_controller.competition.coordination import SiteAgent
    from lab_controller.controller.config import ControllerConfig
    from lab_controller.controller.core import Controller
    from lab_controller.controller.launch import health_check
    from lab_controller.pipeline import LabPipeline
    from telemetry.writer import WriterConfig

    site = cfg["site_id"]
    pipeline = LabPipeline(cfg["dsn"], WriterConfig(site_id=site,
                                                    spool_dir=Path(cfg["spool_dir"])),
                           scoring=False).start()
    p = [_port() for _ in range(3)]
    ccfg = ControllerConfig(control_endpoint=f"tcp://127.0.0.1:{p[0]}",
                            data_endpoint=f"tcp://127.0.0.1:{p[1]}",
                            api_endpoint=f"tcp://127.0.0.1:{p[2]}", site_id=site)
    ctrl = Controller(ccfg, pipeline.sink, observers=[pipeline.observer],
                      event_sink=pipeline.on_event)
    ctrl.start()
    spec = FleetSpec(controller=ccfg.control_endpoint, count=int(cfg["rigs"]),
                     skill_mix="expert:0.34,intermediate:0.33,novice:0.33",
                     seed=int(cfg["seed"]), rig_prefix=cfg["prefix"],
                     data_endpoint=ccfg.data_endpoint, site_id=site)
    stop = threading.Event()
    fleet = threading.Thread(target=run_worker, args=(spec, range(spec.count)),
                             kwargs={"stop": stop}, daemon=True)
    fleet.start()
    skew = float(cfg.get("skew_s", 0.0))
    agent = SiteAgent(site, "tcp://127.0.0.1:0", ccfg.api_endpoint,
                      clock=lambda: time.time() + skew).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(health_check(ctrl, r).ok for r in spec.rig_ids()):
            break
        time.sleep(0.05)
    print(json.dumps({"agent": agent.endpoint, "api": ccfg.api_endpoint,
                      "rigs": spec.rig_ids()}), flush=True)
    sys.stdin.read()  # until the test closes our stdin
    agent.stop()
    stop.set()
    fleet.join(10)
    ctrl.stop()
    pipeline.close(timeout=30)


if __name__ == "__main__":
    main()
