"""NoneBot2 + nonebot-adapter-onebot running the xinxibot submission workflow,
written the way a NoneBot plugin author would (see xinxi_plugin.py).

    python run.py --port 8081 --api http://127.0.0.1:3000 --secret s --db nb.db

Run by bench/ingest.py inside its own venv.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nonebot
from nonebot.adapters.onebot.v11 import Adapter


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--api", required=True, help="OneBot HTTP API root")
    p.add_argument("--self-id", default="3300000001")
    p.add_argument("--secret", default="")
    p.add_argument("--db", required=True)
    args = p.parse_args()
    os.environ["XINXI_DB"] = args.db
    nonebot.init(
        driver="~fastapi+~httpx",
        host="127.0.0.1",
        port=args.port,
        log_level="WARNING",
        command_start={"/"},
        onebot_api_roots={args.self_id: args.api},
        onebot_secret=args.secret or None,
    )
    nonebot.get_driver().register_adapter(Adapter)
    sys.path.insert(0, str(Path(__file__).parent))
    nonebot.load_plugin("xinxi_plugin")
    nonebot.run()


if __name__ == "__main__":
    main()
