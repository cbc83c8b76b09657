"""Importing ``skin_plugin`` keeps OpenVINO's converter and NNCF from sending usage telemetry."""

import subprocess
import sys

CONVERT_AND_COUNT_PROCESSES = """
import multiprocessing.process as mpp
import skin_plugin  # noqa: F401
started = []
original = mpp.BaseProcess.start
mpp.BaseProcess.start = lambda self: (started.append(self), original(self))[1]
import torch
import openvino as ov
from openvino.tools.ovc import telemetry_utils
ov.convert_model(torch.nn.Linear(4, 2), example_input=torch.zeros(1, 4))
from nncf.telemetry.wrapper import NNCFTelemetry, telemetry
print(telemetry_utils.tm.__name__, isinstance(telemetry, NNCFTelemetry), len(started))
"""


def test_model_conversion_and_nncf_send_no_telemetry():
    proc = subprocess.run([sys.executable, "-c", CONVERT_AND_COUNT_PROCESSES], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    converter_telemetry, nncf_telemetry_active, processes = proc.stdout.split()[-3:]
    assert converter_telemetry == "openvino.tools.ovc.telemetry_stub"
    assert nncf_telemetry_active == "False"
    assert processes == "0", "a telemetry sender process was started"
