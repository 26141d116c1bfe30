"""Label Studio's brush masks: avfleet's RLE codec against label-studio-sdk's, both ways;
predictions as brush layers; a JSON export back to masks with its provenance."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from avfleet import taxonomy
from avfleet.core.errors import PermanentError
from avfleet.dataset import labelstudio as LS
from avfleet.dataset.labels import IGNORE, decode_mask_png
from tests.conftest import tool


def scene_mask(seed: int = 0, h: int = 48, w: int = 96) -> np.ndarray:
    """A mask with long runs (road, sky) and ragged edges (a car, noise): every chunk kind."""
    rng = np.random.default_rng(seed)
    mask = np.full((h, w), taxonomy.by_name("sky").id, dtype=np.uint8)
    mask[h // 2 :] = taxonomy.by_name("road").id
    mask[20:30, 10:40] = taxonomy.by_name("car").id
    noisy = rng.random((h, w)) < 0.03
    mask[noisy] = rng.integers(0, taxonomy.NUM_CLASSES, noisy.sum())
    return mask


def sdk(script: str, payload: dict) -> object:
    """Run `script` in label-studio-sdk's own venv (tools/build.sh) on a JSON payload."""
    done = subprocess.run(
        [tool("label-studio-python"), "-c", script],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "values",
    [
        np.zeros(0, np.uint8),
        np.array([7], np.uint8),
        np.arange(300, dtype=np.uint8),  # literal runs longer than a small field
        np.repeat(np.array([0, 255, 0], np.uint8), [70000, 5, 3]),  # a run past 2**16
        np.random.default_rng(1).integers(0, 3, 5000).astype(np.uint8),
    ],
)
def test_rle_round_trips(values):
    assert np.array_equal(LS.decode_rle(LS.encode_rle(values)), values)


def test_the_codec_agrees_with_label_studio_sdk_both_ways():
    mask = scene_mask()
    layers = {c.name: (mask == c.id) for c in taxonomy.CLASSES if (mask == c.id).any()}
    ours = {name: LS.layer_rle(layer) for name, layer in layers.items()}
    script = (
        "import json, sys\n"
        "import numpy as np\n"
        "from label_studio_sdk.converter import brush\n"
        "p = json.load(sys.stdin)\n"
        "h, w = p['shape']\n"
        "decoded = {k: (brush.decode_rle(bytes(v)).reshape(h, w, 4)[:, :, 3] > 0).astype(int)"
        ".ravel().tolist() for k, v in p['ours'].items()}\n"
        "theirs = {k: [int(b) for b in brush.mask2rle((np.array(v, dtype=np.uint8).reshape(h, w)"
        " * 255))] for k, v in p['layers'].items()}\n"
        "print(json.dumps({'decoded': decoded, 'theirs': theirs}))\n"
    )
    out = sdk(
        script,
        {
            "shape": list(mask.shape),
            "ours": ours,
            "layers": {k: v.astype(int).ravel().tolist() for k, v in layers.items()},
        },
    )
    for name, layer in layers.items():
        # The SDK decodes our RLE to the same layer ...
        assert np.array_equal(np.array(out["decoded"][name]).reshape(mask.shape) > 0, layer)
        # ... and we decode the SDK's RLE to it.
        assert np.array_equal(LS.layer_from_rle(out["theirs"][name], *mask.shape), layer)


def export_task(frame_id: str, mask: np.ndarray, annotations: list[tuple[int, str, bool]]) -> dict:
    """A task as Label Studio's JSON export has it: each annotation (id, who, cancelled)."""
    return {
        "id": 11,
        "data": {"image": f"s3://b/{frame_id}.jpg", "frame_id": frame_id},
        "annotations": [
            {
                "id": aid,
                "completed_by": {"id": 3, "email": who},
                "was_cancelled": cancelled,
                "updated_at": f"2026-12-0{aid}T10:00:00Z",
                "result": [{"id": f"r{i}", **r} for i, r in enumerate(LS.mask_results(mask))],
            }
            for aid, who, cancelled in annotations
        ],
        "predictions": [LS.prediction(mask, "dpe:3", score=0.8)],
    }


def test_an_export_comes_back_as_masks_with_who_labeled_them(tmp_path):
    first, second = scene_mask(0), scene_mask(1)
    second[:5, :5] = IGNORE  # a corner nobody painted
    export = [
        export_task("f1", first, [(1, "ana@fleet.example", False)]),
        export_task("f2", second, [(2, "bo@fleet.example", False), (3, "cy@x", True)]),
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    labels = LS.LabelStudioLabels(str(path))
    assert labels.source == "human" and labels.label_version.startswith("labelstudio-")
    got = labels.labels(pd.DataFrame({"frame_id": ["f1", "f2"]}))
    assert np.array_equal(decode_mask_png(got["f1"]), first)
    assert np.array_equal(decode_mask_png(got["f2"]), second)  # unpainted stays IGNORE
    assert labels.provenance == {
        "f1": {"annotation_id": 1, "annotator": "ana@fleet.example", "task_id": 11},
        "f2": {"annotation_id": 2, "annotator": "bo@fleet.example", "task_id": 11},
    }  # the cancelled annotation is not used
    with pytest.raises(PermanentError, match="no annotation in the export"):
        labels.labels(pd.DataFrame({"frame_id": ["f1", "f9"]}))


def test_a_prediction_is_the_masks_brush_layers():
    mask = scene_mask(2)
    pred = LS.prediction(mask, "dpe:3", score=0.5)
    assert pred["model_version"] == "dpe:3" and pred["score"] == 0.5
    assert {r["value"]["brushlabels"][0] for r in pred["result"]} <= set(taxonomy.NAMES)
    assert np.array_equal(LS.mask_from_results(pred["result"]), mask)


@pytest.mark.parametrize(
    ("rle", "says"),
    [
        ([0, 0], "ends early"),
        (LS.encode_rle(np.zeros(10, np.uint8))[:-1], "ends early"),
        ([255, 255, 255, 255, 0, 0, 0, 0], "declares"),
    ],
)
def test_a_malformed_rle_gets_a_clear_error(rle, says):
    with pytest.raises(PermanentError, match=says):
        LS.decode_rle(rle)


def test_a_label_outside_the_taxonomy_is_named(tmp_path):
    result = LS.mask_results(scene_mask())[:1]
    result[0]["value"]["brushlabels"] = ["tram"]
    with pytest.raises(PermanentError, match="no class 'tram'"):
        LS.mask_from_results(result)
    path = tmp_path / "x.json"
    path.write_text('{"not": "a list"}')
    with pytest.raises(PermanentError, match="list of tasks"):
        LS.LabelStudioLabels(str(path))
