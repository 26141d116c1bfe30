"""One taxonomy for the simulator, the oracle, training, evaluation, the report and Label
Studio; the labeling config parsed by Label Studio's own SDK."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET

import numpy as np

from avfleet import taxonomy
from avfleet.fleet import scene
from avfleet.train.models import build, default_arch
from tests.conftest import REPO_ROOT, tool


def test_the_simulator_training_and_evaluation_share_the_taxonomy():
    assert scene.CLASSES == taxonomy.NAMES and scene.NUM_CLASSES == taxonomy.NUM_CLASSES
    assert scene.CYCLIST == taxonomy.by_name("cyclist").id
    assert np.array_equal(scene.BASE_COLORS, [c.color for c in taxonomy.CLASSES])
    net = build(default_arch(width=0.25))
    assert net.arch["num_classes"] == taxonomy.NUM_CLASSES


def test_evaluation_names_each_class():
    from avfleet.train.evaluate import iou_per_class

    conf = np.zeros((taxonomy.NUM_CLASSES,) * 2, dtype=np.int64)
    conf[0, 0], conf[0, 5], conf[5, 5] = 6, 2, 2  # road 6 right, 2 called car; car 2 right
    assert iou_per_class(conf) == {"road": 0.75, "car": 0.5}


def test_the_labeling_config_offers_every_class_in_its_colour():
    text = taxonomy.label_studio_config()
    root = ET.fromstring(text)
    image, brush = root.find("Image"), root.find("BrushLabels")
    assert image.get("value") == "$image"  # the key the queue's tasks carry (data.image)
    assert brush.get("toName") == image.get("name")
    labels = [(lbl.get("value"), lbl.get("background")) for lbl in brush.findall("Label")]
    assert labels == [(c.name, taxonomy.hex_color(c)) for c in taxonomy.CLASSES]
    assert (REPO_ROOT / "infra" / "label-studio" / "label-config.xml").read_text() == text


def test_label_studio_parses_the_labeling_config():
    """Label Studio's own parser (label-studio-sdk 2.1.2, in its own venv: tools/build.sh)
    reads the config as an image with a brush tool over exactly the taxonomy's classes."""
    python = tool("label-studio-python")
    script = (
        "import json, sys\n"
        "from label_studio_sdk.label_interface import LabelInterface\n"
        "li = LabelInterface(sys.stdin.read())\n"
        "c = li.get_control('mask')\n"
        "print(json.dumps({'tag': type(c).__name__, 'labels': list(c.labels),\n"
        "                  'objects': [o.name for o in li.objects]}))\n"
    )
    done = subprocess.run(
        [python, "-c", script],
        input=taxonomy.label_studio_config(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert parsed == {
        "tag": "BrushLabelsTag",
        "labels": list(taxonomy.NAMES),
        "objects": ["image"],
    }
