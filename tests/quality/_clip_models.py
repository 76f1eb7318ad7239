"""A tiny stand-in for CLIP ViT-B/32, built here with ``onnx.helper`` and ``tokenizers``.

Same files, names, inputs and outputs as the real export (`quality.clip.MODEL_FILES`), so the
loading and scoring code under test is the code that runs the real weights; only the numbers
differ. The image tower embeds a picture as its mean normalised red, green and blue; the text
tower embeds a prompt as the mean of its BPE tokens' vectors, where "red", "green" and "blue"
point along those three axes. So a red clip aligns with "red" and not with "blue".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from abebeats_lab.quality import clip

COLOURS = ("red", "green", "blue")
START, END = "<|startoftext|>", "<|endoftext|>"
CROP = 32
"""A small crop, unlike CLIP's 224, so the test also proves the config is read."""
OPSET = 18


def write_tiny_clip(folder: Path) -> Path:
    """Write every file of `clip.MODEL_FILES` into ``folder`` (a stand-in model); returns it."""
    (folder / "vision").mkdir(parents=True, exist_ok=True)
    (folder / "text").mkdir(parents=True, exist_ok=True)
    onnx.save(_image_tower(), folder / "vision" / "model.onnx")
    (folder / "vision" / "preprocessor_config.json").write_text(json.dumps(_preprocessor()))
    tokenizer = _tokenizer()
    tokenizer.save(str(folder / "text" / "tokenizer.json"))
    onnx.save(_text_tower(tokenizer), folder / "text" / "model.onnx")
    assert {f.path for f in clip.MODEL_FILES} == {
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
    }
    return folder


def _preprocessor() -> dict[str, object]:
    return {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": CROP},
        "do_center_crop": True,
        "crop_size": {"height": CROP, "width": CROP},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
    }


def _image_tower() -> onnx.ModelProto:
    """pixel_values (N×3×H×W) → image_embeds (N×3): the mean of each channel."""
    pixels = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, "H", "W"])
    embeds = helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["N", 3])
    axes = numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes")
    mean = helper.make_node("ReduceMean", ["pixel_values", "axes"], ["image_embeds"], keepdims=0)
    graph = helper.make_graph([mean], "tiny_clip_vision", [pixels], [embeds], [axes])
    return _model(graph)


def _text_tower(tokenizer: Tokenizer) -> onnx.ModelProto:
    """input_ids, attention_mask (1×T) → text_embeds (1×3): the masked mean of token vectors."""
    vocab = tokenizer.get_vocab()
    table = np.full((len(vocab), 3), 0.05, dtype=np.float32)  # other tokens: a little of each
    table[vocab[START]] = table[vocab[END]] = 0.0
    for axis, colour in enumerate(COLOURS):
        table[vocab[colour]] = np.eye(3, dtype=np.float32)[axis]
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "T"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, "T"])
    embeds = helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, [1, 3])
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["vectors"]),
        helper.make_node("Cast", ["attention_mask"], ["weights"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["weights", "last"], ["weights3"]),
        helper.make_node("Mul", ["vectors", "weights3"], ["kept"]),
        helper.make_node("ReduceMean", ["kept", "tokens"], ["text_embeds"], keepdims=0),
    ]
    initial = [
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "last"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "tokens"),
    ]
    graph = helper.make_graph(nodes, "tiny_clip_text", [ids, mask], [embeds], initial)
    return _model(graph)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # what every onnxruntime of the last years reads
    onnx.checker.check_model(model)
    return model


def _tokenizer() -> Tokenizer:
    """A byte-pair tokenizer whose merges spell the three colour words, CLIP's start and end
    tokens around every prompt."""
    letters = sorted({c for word in COLOURS for c in word} | set("abcdefghijklmnopqrstuvwxyz"))
    vocab: dict[str, int] = {c: i for i, c in enumerate(letters)}
    merges: list[tuple[str, str]] = []
    for word in COLOURS:
        for end in range(2, len(word) + 1):
            left, right = word[: end - 1], word[end - 1]
            merges.append((left, right))
            vocab.setdefault(word[:end], len(vocab))
    for special in ("<unk>", START, END):
        vocab[special] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens([START, END])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{START} $A {END}", special_tokens=[(START, vocab[START]), (END, vocab[END])]
    )
    return tokenizer
