#!/usr/bin/env python3
"""Real ONNX models, images and onnxruntime answers for the ml-inference tests.

    ml_models.py make OUTDIR        builds the models (seeded random weights) and
                                    images in OUTDIR, preprocesses the exact-size
                                    PNGs with numpy (independently of the Rust
                                    code) and writes onnxruntime's outputs on
                                    those tensors to OUTDIR/expected.json
    ml_models.py run MODEL INPUT    prints onnxruntime's outputs for the float32
                                    .npy tensor INPUT as JSON
                                    {"outputs": [{"shape": [...], "data": [...]}]}

Needs onnx, onnxruntime, numpy and pillow.
"""
import json
import os
import sys

import numpy as np


def ort_outputs(model_path, tensor):
    import onnxruntime as ort

    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    outs = sess.run(None, {name: tensor.astype(np.float32)})
    return [
        {"shape": list(o.shape), "data": [float(v) for v in np.asarray(o, dtype=np.float32).ravel()]}
        for o in outs
    ]


def save(graph, path):
    from onnx import checker, helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    # IR 8 / opset 13: read by every onnxruntime and tract release in use.
    model.ir_version = 8
    checker.check_model(model)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def init(name, array):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def classifier(rng, path, input_shape, nhwc=False, classes=10, channels=8, convs=1, stride=1):
    """conv (3x3) + relu, `convs` times, then global average pool, dense, softmax."""
    from onnx import TensorProto, helper

    nodes, inits = [], []
    x = "data"
    if nhwc:
        nodes.append(helper.make_node("Transpose", [x], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    cin = 3
    for i in range(convs):
        cout = channels * (2**i)
        # Small weights: the input is raw 0-255 by default, and the softmax
        # must not saturate into a one-hot vector that hides differences.
        inits.append(init(f"w{i}", rng.normal(0, 0.02 / (i + 1), (cout, cin, 3, 3))))
        inits.append(init(f"b{i}", rng.normal(0, 0.1, (cout,))))
        nodes.append(
            helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1], strides=[stride, stride])
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        x, cin = f"r{i}", cout
    inits.append(init("wd", rng.normal(0, 0.3, (cin, classes))))
    inits.append(init("bd", rng.normal(0, 0.1, (classes,))))
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "wd", "bd"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["prob"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, classes])],
        inits,
    )
    save(graph, path)


def features(nodes, inits, rng, n, width, name):
    """`data` -> mean colour [1,3] -> dense -> sigmoid, reshaped [1,n,width]."""
    from onnx import helper

    if not any(node.output[0] == "flat" for node in nodes):
        nodes.append(helper.make_node("GlobalAveragePool", ["data"], ["pool"]))
        nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], axis=1))
    inits.append(init(f"{name}_w", rng.normal(0, 0.02, (3, n * width))))
    inits.append(init(f"{name}_b", rng.normal(0, 1.0, (n * width,))))
    inits.append(helper.make_tensor(f"{name}_shape", 7, [3], [1, n, width]))
    nodes += [
        helper.make_node("MatMul", ["flat", f"{name}_w"], [f"{name}_mm"]),
        helper.make_node("Add", [f"{name}_mm", f"{name}_b"], [f"{name}_lin"]),
        helper.make_node("Sigmoid", [f"{name}_lin"], [f"{name}_sig"]),
        helper.make_node("Reshape", [f"{name}_sig", f"{name}_shape"], [f"{name}_out"]),
    ]
    return f"{name}_out"


# Class ids per detection row: -1 rows are the padding an SSD export emits.
IDS = [2.0, -1.0, 0.0, -1.0, 5.0]


def detector(rng, path):
    """One [1,N,6] output: [class_id, score, xmin, ymin, xmax, ymax] in 0..1."""
    from onnx import TensorProto, helper

    n = len(IDS)
    nodes, inits = [], []
    rest = features(nodes, inits, rng, n, 5, "det")
    inits.append(init("ids", np.array(IDS).reshape(1, n, 1)))
    nodes.append(helper.make_node("Concat", ["ids", rest], ["detections"], axis=2))
    graph = helper.make_graph(
        nodes,
        "detector",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 48, 64])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, [1, n, 6])],
        inits,
    )
    save(graph, path)


def detector3(rng, path):
    """GluonCV's three outputs: ids [1,N,1], scores [1,N,1], boxes [1,N,4] in input pixels."""
    from onnx import TensorProto, helper

    n = len(IDS)
    nodes, inits = [], []
    scores = features(nodes, inits, rng, n, 1, "score")
    unit_boxes = features(nodes, inits, rng, n, 4, "box")
    inits.append(init("ids_c", np.array(IDS).reshape(1, n, 1)))
    inits.append(init("pixels", np.array([64.0, 48.0, 64.0, 48.0])))
    nodes += [
        helper.make_node("Identity", ["ids_c"], ["class_ids"]),
        helper.make_node("Identity", [scores], ["scores"]),
        helper.make_node("Mul", [unit_boxes, "pixels"], ["boxes"]),
    ]
    graph = helper.make_graph(
        nodes,
        "detector3",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 48, 64])],
        [
            helper.make_tensor_value_info("class_ids", TensorProto.FLOAT, [1, n, 1]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, n, 1]),
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, n, 4]),
        ],
        inits,
    )
    save(graph, path)


def picture(rng, width, height, mode="RGB"):
    """A smooth gradient with noise: JPEG-friendly, and not constant."""
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([255 * x / max(width - 1, 1), 255 * y / max(height - 1, 1), 128 + 0 * x], axis=-1)
    rgb = np.clip(rgb + rng.normal(0, 20, rgb.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(rgb, "RGB")
    return image.convert(mode) if mode != "RGB" else image


def make(out):
    from PIL import Image

    rng = np.random.default_rng(20261207)
    os.makedirs(out, exist_ok=True)
    classifier(rng, f"{out}/classifier/model.onnx", [1, 3, 32, 32])
    # NHWC with symbolic dimensions: the sidecar gives the size; the file is
    # not model.onnx, so the single-*.onnx rule finds it.
    classifier(rng, f"{out}/classifier_nhwc/net.onnx", ["N", "H", "W", 3], nhwc=True, classes=5)
    nhwc = {
        "width": 40,
        "height": 24,
        "layout": "NHWC",
        "channel_order": "BGR",
        "scale": 1 / 255,
        "mean": [0.406, 0.456, 0.485],
        "std": [0.225, 0.224, 0.229],
    }
    with open(f"{out}/classifier_nhwc/evergreen-model.json", "w") as f:
        json.dump(nhwc, f)
    detector(rng, f"{out}/detector/model.onnx")
    detector3(rng, f"{out}/detector3/model.onnx")
    # A model of a realistic input size and cost for the bench.
    classifier(rng, f"{out}/bench/model.onnx", [1, 3, 224, 224], classes=1000, channels=16, convs=4, stride=2)

    images = {
        "exact_32.png": picture(rng, 32, 32),
        "exact_40x24.png": picture(rng, 40, 24),
        "exact_64x48.png": picture(rng, 64, 48),
        "photo.png": picture(rng, 77, 51, "RGBA"),
        "grey.png": picture(rng, 50, 50, "L"),
    }
    for name, image in images.items():
        image.save(f"{out}/{name}")
    picture(rng, 120, 90).save(f"{out}/photo.jpg", quality=90)

    def tensor(name, spec):
        # Independent of the Rust preprocessing: PIL's decode, numpy's maths.
        rgb = np.asarray(Image.open(f"{out}/{name}").convert("RGB"), dtype=np.float32)
        if spec.get("channel_order") == "BGR":
            rgb = rgb[:, :, ::-1]
        rgb = (rgb * spec.get("scale", 1.0) - np.array(spec.get("mean", [0, 0, 0]), np.float32)) / np.array(
            spec.get("std", [1, 1, 1]), np.float32
        )
        t = rgb[None] if spec.get("layout") == "NHWC" else rgb.transpose(2, 0, 1)[None]
        return np.ascontiguousarray(t, dtype=np.float32)

    cases = [
        ("classifier", "classifier/model.onnx", "exact_32.png", {}),
        ("classifier_nhwc", "classifier_nhwc/net.onnx", "exact_40x24.png", nhwc),
        ("detector", "detector/model.onnx", "exact_64x48.png", {}),
        ("detector3", "detector3/model.onnx", "exact_64x48.png", {}),
    ]
    expected = {}
    for key, model, image, spec in cases:
        t = tensor(image, spec)
        np.save(f"{out}/{key}.input.npy", t)
        expected[key] = {"image": image, "outputs": ort_outputs(f"{out}/{model}", t)}
    with open(f"{out}/expected.json", "w") as f:
        json.dump(expected, f)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "run":
        print(json.dumps({"outputs": ort_outputs(sys.argv[2], np.load(sys.argv[3]))}))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
