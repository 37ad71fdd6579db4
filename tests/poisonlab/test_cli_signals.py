import os
import signal
import time

import pytest

from poisonlab import cli
from poisonlab.runs import staged_output


def test_sigterm_stops_a_run_as_ctrl_c_does_and_removes_what_cannot_resume(tmp_path, monkeypatch):
    installed = {}
    monkeypatch.setattr(cli.cli, "main", lambda **kw: installed.setdefault("handler", signal.getsignal(signal.SIGTERM)))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        cli.main()
        assert installed["handler"] is cli._terminated
        with pytest.raises(KeyboardInterrupt), staged_output(tmp_path / "run") as stage:
            (stage / "half.json").write_text("{}")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
