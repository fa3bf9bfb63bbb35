"""``--scheduler heun`` on a flow-matching model: refused with one line that says why (diffusers'
FlowMatchHeunDiscreteScheduler takes no custom sigmas and no dynamic-shift mu), on every schedule, before
anything is written."""

from __future__ import annotations

import pytest

from boomerang.errors import SettingError
from boomerang.planning import plan
from _helpers import run_cli

SD3 = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}
FLUX = {**SD3, "use_dynamic_shifting": True, "base_image_seq_len": 256, "max_image_seq_len": 4096,
        "base_shift": 0.5, "max_shift": 1.15}


@pytest.mark.parametrize("config", [SD3, FLUX])
@pytest.mark.parametrize("schedule", ["exact", "img2img"])
def test_heun_on_a_flow_model_is_refused_with_the_reason(config, schedule):
    with pytest.raises(SettingError, match="heun on a flow-matching model is not offered.*no custom sigmas"):
        plan(config, level=0.5, scheduler="heun", schedule=schedule)
    assert plan({k: v for k, v in SD3.items()}, level=0.5, scheduler="euler").scheduler == "euler"


def test_heun_on_a_flow_model_from_the_command_line(tiny_sd3_dir, tmp_path, capsys):
    from PIL import Image

    img = tmp_path / "in.png"
    Image.new("RGB", (16, 16), (90, 120, 200)).save(img)
    out = tmp_path / "out"
    rc, err = run_cli(["sample", img, "--model", tiny_sd3_dir, "--scheduler", "heun", "--out", out], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("boomerang: error:")]
    assert rc == 2 and len(lines) == 1 and "FlowMatchHeunDiscreteScheduler" in lines[0], err
    assert not out.exists()
