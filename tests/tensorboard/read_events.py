"""Reads a TensorBoard event file independently of deltatrain: TFRecord framing with both masked
CRC32C checks (computed here bit by bit), Event messages parsed by protobuf classes that protoc
generates from event.proto. Prints one JSON object per event; exits 1 on any framing error.

usage: /usr/bin/python3 read_events.py EVENTS_FILE
"""
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def event_module():
    here = os.path.dirname(os.path.abspath(__file__))
    out = tempfile.mkdtemp()
    subprocess.run(["protoc", f"--proto_path={here}", f"--python_out={out}", "event.proto"], check=True)
    sys.path.insert(0, out)
    import event_pb2  # noqa: E402
    return event_pb2


def main(path):
    event_pb2 = event_module()
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            sys.exit(f"truncated record header at byte {pos}")
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if header_crc != masked(header):
            sys.exit(f"bad length CRC at byte {pos}")
        body = data[pos + 12:pos + 12 + length]
        (body_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        if body_crc != masked(body):
            sys.exit(f"bad data CRC at byte {pos}")
        event = event_pb2.Event()
        event.ParseFromString(body)
        out = {"step": event.step, "wall_time": event.wall_time}
        if event.HasField("file_version"):
            out["file_version"] = event.file_version
        if event.HasField("summary"):
            out["values"] = {v.tag: v.simple_value for v in event.summary.value if v.WhichOneof("value") == "simple_value"}
            images = {v.tag: v.image for v in event.summary.value if v.WhichOneof("value") == "image"}
            if images:
                out["images"] = {tag: {"height": i.height, "width": i.width, "colorspace": i.colorspace,
                                       "sha256": hashlib.sha256(i.encoded_image_string).hexdigest()}
                                 for tag, i in images.items()}
        print(json.dumps(out))
        pos += 16 + length


if __name__ == "__main__":
    main(sys.argv[1])
