#!/usr/bin/python3
"""Writes the safetensors test corpus (deterministic; standard library only).

hostile/  one broken file per way a safetensors file can be wrong, and hostile/expected.tsv:
          file name, then the text the error message must contain.
valid/    small well-formed files written independently of deltatrain's writer: every dtype with
          known values, float8 with every byte value, and a file whose data start is misaligned.
Run it from anywhere; it rewrites both folders.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def st(header, data=b"", length=None):
    """8-byte little-endian header length, header bytes, data."""
    if not isinstance(header, bytes):
        header = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(header) if length is None else length) + header + data


def one(dtype, shape, offsets, data=b""):
    return st({"w": {"dtype": dtype, "shape": shape, "data_offsets": offsets}}, data)


F32x1 = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}

HOSTILE = [
    ("empty.safetensors", b"", "fewer than the 8-byte header length"),
    ("short.safetensors", b"\x05\x00\x00", "fewer than the 8-byte header length"),
    ("header_past_end.safetensors", st(b"{}", length=1000), "is larger than the rest of the file"),
    ("header_absurd.safetensors", st(b"{}", length=1 << 63), "exceeds the limit"),
    ("header_max_u64.safetensors", st(b"{}", length=(1 << 64) - 1), "exceeds the limit"),
    ("header_empty.safetensors", st(b""), "must begin with '{'"),
    ("header_array.safetensors", st(b"[1,2]"), "must begin with '{'"),
    ("header_leading_space.safetensors", st(b" {}"), "must begin with '{'"),
    ("header_not_json.safetensors", st(b'{"w": '), "header is not valid JSON"),
    ("header_trailing_garbage.safetensors", st(b"{} x"), "header is not valid JSON"),
    ("header_not_utf8.safetensors", st(b'{"\xff":1}'), "header is not valid JSON"),
    ("header_nul.safetensors", st(b"{\x00}"), "header is not valid JSON"),
    ("entry_not_object.safetensors", st({"w": 5}), "tensor 'w': entry is not an object"),
    ("missing_dtype.safetensors", st({"w": {"shape": [1], "data_offsets": [0, 4]}}, bytes(4)), "tensor 'w': missing 'dtype'"),
    ("missing_shape.safetensors", st({"w": {"dtype": "F32", "data_offsets": [0, 4]}}, bytes(4)), "tensor 'w': missing 'shape'"),
    ("missing_offsets.safetensors", st({"w": {"dtype": "F32", "shape": [1]}}, bytes(4)), "tensor 'w': missing 'data_offsets'"),
    ("dtype_not_string.safetensors", one(7, [1], [0, 4], bytes(4)), "tensor 'w': 'dtype' must be a string"),
    ("shape_not_array.safetensors", one("F32", "2x2", [0, 16], bytes(16)), "tensor 'w': 'shape' must be an array"),
    ("shape_negative.safetensors", one("F32", [-1], [0, 4], bytes(4)), "tensor 'w': 'shape' must be an array of non-negative integers"),
    ("shape_float.safetensors", one("F32", [2.5], [0, 4], bytes(4)), "tensor 'w': 'shape' must be an array of non-negative integers"),
    ("offsets_one.safetensors", one("F32", [1], [0], bytes(4)), "tensor 'w': 'data_offsets' must be an array of two"),
    ("offsets_negative.safetensors", one("F32", [1], [-4, 0], bytes(4)), "tensor 'w': 'data_offsets' must be an array of two"),
    ("offsets_string.safetensors", one("F32", [1], ["0", "4"], bytes(4)), "tensor 'w': 'data_offsets' must be an array of two"),
    ("unknown_dtype.safetensors", one("F4", [2], [0, 1], bytes(1)), "tensor 'w': unknown dtype 'F4'"),
    ("dtype_lowercase.safetensors", one("f32", [1], [0, 4], bytes(4)), "tensor 'w': unknown dtype 'f32'"),
    ("offsets_reversed.safetensors", one("F32", [1], [4, 0], bytes(4)), "tensor 'w': data_offsets [4, 0] begin after they end"),
    ("offsets_past_end.safetensors", one("F32", [2], [0, 8], bytes(4)), "tensor 'w': data_offsets [0, 8) run past the end of the data (4 bytes)"),
    ("offsets_huge.safetensors", one("U8", [1], [(1 << 64) - 2, (1 << 64) - 1], bytes(1)), "tensor 'w': data_offsets"),
    ("overlap.safetensors", st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)),
     "tensor 'b' overlaps the tensor before it"),
    ("hole.safetensors", st({"a": F32x1, "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, bytes(12)),
     "bytes [4, 8) before tensor 'b' belong to no tensor"),
    ("hole_at_start.safetensors", one("F32", [1], [4, 8], bytes(8)), "bytes [0, 4) before tensor 'w' belong to no tensor"),
    ("trailing_bytes.safetensors", st({"a": F32x1}, bytes(8)), "the data region has 8 bytes but the tensors cover 4"),
    ("shape_mismatch.safetensors", one("F32", [2, 2], [0, 12], bytes(12)), "tensor 'w': shape and dtype need 16 bytes but data_offsets give 12"),
    ("dtype_size_mismatch.safetensors", one("F16", [4], [0, 4], bytes(4)), "tensor 'w': shape and dtype need 8 bytes but data_offsets give 4"),
    ("shape_overflow.safetensors", one("F32", [1 << 32, 1 << 32, 16], [0, 0]), "tensor 'w': the shape's element count overflows"),
    ("shape_dim_over_int64.safetensors", one("U8", [1 << 63], [0, 0]), "tensor 'w': the shape's element count overflows"),
    ("shape_dim_over_u64.safetensors", one("U8", [1 << 64], [0, 0]), "tensor 'w': 'shape' must be an array of non-negative integers"),
    ("shape_too_many_dims.safetensors", one("U8", [1] * 100, [0, 1], bytes(1)), "tensor 'w': shape has 100 dimensions, more than 64"),
    ("duplicate_tensor.safetensors",
     st(b'{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', bytes(1)),
     "tensor 'w' appears twice in the header"),
    ("duplicate_key_in_entry.safetensors", st(b'{"w":{"dtype":"U8","dtype":"F32","shape":[1],"data_offsets":[0,1]}}', bytes(1)),
     "entry 'w': key 'dtype' appears twice"),
    ("metadata_not_object.safetensors", st({"__metadata__": [1]}), "__metadata__ is not an object"),
    ("metadata_value_not_string.safetensors", st({"__metadata__": {"k": 1}}), "__metadata__ value 'k' is not a string"),
    ("metadata_duplicate_key.safetensors", st(b'{"__metadata__":{"k":"a","k":"b"}}'), "entry '__metadata__': key 'k' appears twice"),
    ("name_with_newline.safetensors", st({"a\nb": {"dtype": "X", "shape": [], "data_offsets": [0, 0]}}), "tensor 'a\\nb': unknown dtype 'X'"),
    ("zip_renamed.safetensors", b"PK\x03\x04" + bytes(60), "this is a PyTorch pickle checkpoint, not safetensors"),
    ("pickle_renamed.safetensors", b"\x80\x02}q\x00." + bytes(10), "this is a PyTorch pickle checkpoint, not safetensors"),
    ("model.ckpt", st({"w": F32x1}, bytes(4)), "pickle checkpoints are not loaded"),
    ("pytorch_model.bin", b"PK\x03\x04" + bytes(60), "pickle checkpoints are not loaded"),
]


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def valid_files():
    """name -> bytes. Tensor values are checked by the tests (src/io/safetensors_test.cc)."""
    tensors = [  # name, dtype, shape, bytes
        ("f64", "F64", [2], struct.pack("<2d", 1.5, -2.25)),
        ("f32", "F32", [2, 2], f32([0.0, 1.0, -3.5, 65504.0])),
        ("f16", "F16", [3], struct.pack("<3e", 1.0, -0.5, 65504.0)),
        ("bf16", "BF16", [2], bytes([0x80, 0x3F, 0x40, 0xC0])),  # 1.0, -3.0
        ("i64", "I64", [2], struct.pack("<2q", -(1 << 62), 7)),
        ("i32", "I32", [2], struct.pack("<2i", -5, 1 << 30)),
        ("i16", "I16", [2], struct.pack("<2h", -300, 300)),
        ("i8", "I8", [2], struct.pack("<2b", -128, 127)),
        ("u8", "U8", [2], bytes([0, 255])),
        ("bool", "BOOL", [3], bytes([0, 1, 2])),  # any non-zero byte is true
        ("empty", "F32", [0, 3], b""),
        ("scalar", "F32", [], f32([2.5])),
    ]
    header, data = {"__metadata__": {"format": "pt", "note": "written by make_safetensors_corpus.py"}}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    every = st(header, data)
    f8 = st({"e4m3": {"dtype": "F8_E4M3", "shape": [256], "data_offsets": [0, 256]},
             "e5m2": {"dtype": "F8_E5M2", "shape": [16, 16], "data_offsets": [256, 512]}}, bytes(range(256)) * 2)
    # Header of 9 bytes: the data starts at byte 17, so an F32 tensor there cannot be a view.
    text = json.dumps({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}}, separators=(",", ":")).encode()
    text += b" " * ((9 - (8 + len(text)) % 8) % 8)
    misaligned = st(text, f32([1.0, 2.0, 3.0]))
    assert (8 + len(text)) % 4 != 0
    return {"every_dtype.safetensors": every, "f8.safetensors": f8, "misaligned.safetensors": misaligned}


def write(folder, files):
    path = os.path.join(HERE, folder)
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        os.remove(os.path.join(path, name))
    for name, content in files.items():
        with open(os.path.join(path, name), "wb") as f:
            f.write(content)


def main():
    names = [n for n, _, _ in HOSTILE]
    assert len(set(names)) == len(names)
    files = {name: content for name, content, _ in HOSTILE}
    files["expected.tsv"] = "".join("%s\t%s\n" % (name, expect) for name, _, expect in HOSTILE).encode()
    write("hostile", files)
    write("valid", valid_files())


if __name__ == "__main__":
    main()
