"""A bzImage as the boot protocol lays it out (Documentation/arch/x86/boot.rst):
a boot sector and one setup sector holding the header, then the payload.

usage: mkbzimage.py KERNEL_VERSION PAYLOAD OUT
"""
import struct
import sys

version, payload_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
payload = open(payload_path, "rb").read()
setup = bytearray(1024)                        # setup_sects = 1
setup[0x1F1] = 1
struct.pack_into("<H", setup, 0x1FE, 0xAA55)
setup[0x202:0x206] = b"HdrS"
struct.pack_into("<H", setup, 0x206, 0x020F)   # boot protocol 2.15
struct.pack_into("<H", setup, 0x20E, 0x300 - 0x200)   # kernel_version, +0x200
text = version.encode() + b"\0"
setup[0x300:0x300 + len(text)] = text
struct.pack_into("<II", setup, 0x248, 0, len(payload))  # payload_offset, _length
with open(out, "wb") as f:
    f.write(bytes(setup) + payload)
