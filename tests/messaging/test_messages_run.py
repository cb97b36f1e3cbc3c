"""``dialer messages run`` as its own process against a real Kannel: a queued SMS goes out,
its delivery report and a reply come back, and Ctrl-C (SIGINT) stops it cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from dialer import CONFIG_DIR

from .kannel_box import KannelBox


def test_messages_run_process(kannel: KannelBox, tmp_path: Path, sqlite_url: str) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(CONFIG_DIR / "messages", conf / "messages")
    (conf / "settings.yaml").write_text("bank: {name_zh: 示例银行}\n", "utf-8")
    port = int(kannel.callback_base.rsplit(":", 1)[1])
    sms = {"kannel": kannel.settings().model_dump(), "listen": {"host": "127.0.0.1", "port": port}}
    (conf / "messaging.yaml").write_text(yaml.safe_dump({"sms": sms}), "utf-8")
    env = {
        **os.environ,
        "DIALER_SETTINGS": str(conf / "settings.yaml"),
        "DIALER_DB": sqlite_url,
        "DIALER_KANNEL_PASSWORD": kannel.password,
    }
    dialer = [sys.executable, "-m", "dialer.app.cli"]

    def cli(*args: str) -> str:
        return subprocess.run(
            [*dialer, *args], env=env, capture_output=True, text=True, check=True, timeout=60
        ).stdout

    cli("sms", "send", "--to", "13800000001", "--text", "您的验证码是1234")
    proc = subprocess.Popen(
        [*dialer, "messages", "run", "--no-email", "--tick", "0.5"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        # 4 s alone; each `cli` is a new process and the SMSC is shared with the other tests of
        # this worker, so a loaded CI machine took over 30 s
        deadline = time.monotonic() + 90
        while json.loads(cli("sms", "status", "--json")).get("delivered") != 1:
            assert time.monotonic() < deadline, "not delivered"
            time.sleep(0.2)
        assert [h.text for h in kannel.received()] == ["【示例银行】您的验证码是1234"]
        kannel.reply("+8613800000001", "这个验证码不是我申请的")
        while not json.loads(cli("sms", "replies", "--json")):
            assert time.monotonic() < deadline, "no reply"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "SMS: callbacks on 127.0.0.1" in out
