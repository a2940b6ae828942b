#!/usr/bin/env python3
"""Writes the checked-in seed corpora under fuzz/corpus/: a few valid frames,
requests, responses, record batches and segment files, so the fuzzers start
from real structure. Re-run after a format change: python3 fuzz/make_seeds.py"""
import os, struct, zlib

here = os.path.dirname(os.path.abspath(__file__))

def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7f) | 0x80); n >>= 7
    out.append(n)
    return bytes(out)

def zigzag(n):
    return varint((n << 1) ^ (n >> 63) if n >= 0 else ((-n) << 1) - 1)

def record(i, value, key=None, headers=()):
    body = bytes([0]) + zigzag(0) + varint(i)
    body += zigzag(-1) if key is None else zigzag(len(key)) + key
    body += zigzag(len(value)) + value
    body += varint(len(headers))
    for k, v in headers:
        body += varint(len(k)) + k + zigzag(len(v)) + v
    return varint(len(body)) + body

def seal(base, body_after_crc, term=0, node=0, rest=0, index=0):
    # base_offset, batch_length, leader_epoch, leader_node u32, entry_rest u32, raft_index
    head = struct.pack("<QIQIIQ", base, 85 + len(body_after_crc) - 40 - 12, term, node, rest, index)
    head += struct.pack("<I", zlib.crc32(head))
    return head + bytes([1]) + struct.pack("<I", zlib.crc32(body_after_crc)) + body_after_crc

def batch(base, values, pid=-1, seq=-1, key=None, **raft):
    recs = b"".join(record(i, v, key, [(b"h", b"v")] if i == 0 else []) for i, v in enumerate(values))
    n = len(values)
    after_crc = struct.pack("<HIqqqhiI", 0, max(n - 1, 0), 1700000000000, 1700000000000, pid, 0 if pid >= 0 else -1, seq, n) + recs
    return seal(base, after_crc, **raft)

def control(base, body, **raft):
    # attributes bit 5 = control; no records; the typed body follows the header
    after_crc = struct.pack("<HIqqqhiI", 1 << 5, 0, 1700000000000, 1700000000000, -1, -1, -1, 0) + body
    return seal(base, after_crc, **raft)

def frame(kind, key, body, corr=1):
    rest = b"WE" + bytes([1, kind]) + struct.pack("<HHI", key, 1, corr) + body
    return struct.pack("<I", len(rest)) + rest

def pstr(s):
    return varint(len(s)) + s

def write(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

b1 = batch(0, [b"hello", b"world"], pid=7, seq=0, key=b"k")
b2 = batch(2, [b"x" * 100])
produce_body = pstr(b"orders") + varint(0) + bytes([2]) + varint(5000)
requests = {
    "api_versions": (0, pstr(b"weir-client")),
    "metadata_all": (1, bytes([0])),
    "create_topic": (2, pstr(b"orders") + varint(3) + varint(1) + bytes([0, 1]) + zigzag(3600000) + bytes([0])),
    "delete_topic": (3, pstr(b"orders")),
    "list_topics": (4, b""),
    "produce": (6, produce_body + b1),
    "fetch": (7, pstr(b"orders") + varint(0) + varint(0) + varint(1 << 20) + varint(500) + varint(1)),
    "list_offsets": (8, pstr(b"orders") + varint(0) + bytes([2]) + zigzag(1700000000000)),
    "init_producer_id": (9, b""),
}
for name, (key, body) in requests.items():
    write("request", name, bytes([key, 1]) + body)
    write("frame", name, frame(0, key, body))
write("frame", "two_frames", frame(0, 4, b"") + frame(1, 4, bytes([0, 0])))
responses = {
    "produce_ok": (6, bytes([0]) + varint(42) + bytes([0])),
    "fetch_ok": (7, bytes([0]) + varint(4) + varint(0) + varint(4) + b1 + b2),
    "error": (1, bytes([1]) + varint(1) + pstr(b"topic does not exist")),
    "list_topics": (4, bytes([0]) + varint(1) + pstr(b"orders") + varint(3) + varint(1)),
}
for name, (key, body) in responses.items():
    write("response", name, bytes([key]) + body)
write("record_batch", "two_records", b1)
write("record_batch", "one_big_record", b2)
write("record_batch", "two_batches", b1 + b2)
write("log_recovery", "two_batches", b1 + b2)
write("log_recovery", "torn_tail", b1 + b2[: len(b2) // 2])
write("log_recovery", "preallocated", b1 + bytes(4096))
# Raft entries: a blank entry (index 1), then one entry of two batches
# (index 2, entry_rest 1 then 0), then a membership entry (index 3).
blank = control(0, bytes([0]), term=1, node=1, index=1)
e2a = batch(0, [b"a"], term=1, node=1, rest=1, index=2)
e2b = batch(1, [b"b", b"c"], term=1, node=1, rest=0, index=2)
member = control(3, bytes([1]) + b"voters:1,2,3", term=1, node=1, index=3)
# Form 2: a Kafka RecordBatch v2 inside the envelope, plain and gzip.
def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def krecord(i, value, key=None):
    body = bytes([0]) + zigzag(0) + zigzag(i)
    body += zigzag(-1) if key is None else zigzag(len(key)) + key
    body += zigzag(len(value)) + value + zigzag(0)
    return zigzag(len(body)) + body

def kafka_batch(base, values, codec=0, key=None):
    recs = b"".join(krecord(i, v, key) for i, v in enumerate(values))
    if codec == 1:
        c = zlib.compressobj(wbits=31)
        recs = c.compress(recs) + c.flush()
    n = len(values)
    after_crc = struct.pack(">hiqqqhii", codec, n - 1, 1700000000000, 1700000000000, -1, -1, -1, n) + recs
    kafka = struct.pack(">qiibI", base, 4 + 1 + 4 + len(after_crc), -1, 2, crc32c(after_crc)) + after_crc
    head = struct.pack("<QIQIIQ", base, 41 + len(kafka) - 12, 0, 0, 0, 0)
    header_crc = zlib.crc32(head + bytes([2]) + kafka[:21])
    return head + struct.pack("<I", header_crc) + bytes([2]) + kafka

write("record_batch", "kafka_plain", kafka_batch(0, [b"hello", b"kafka"], key=b"k"))
write("record_batch", "kafka_gzip", kafka_batch(0, [b"compressed " * 20, b"twice " * 20], codec=1))
write("record_batch", "control_blank", blank)
write("record_batch", "control_membership", member)
write("log_recovery", "raft_entries", blank + e2a + e2b + member)
write("log_recovery", "torn_entry", blank + e2a)
# Peer frames (postcard bodies; the first byte picks calls 0 or answers 1).
def vote(term, node, committed):
    return varint(term) + (bytes([1]) + varint(node) if node is not None else bytes([0])) + bytes([committed])
def log_id(term, index):
    return varint(term) + varint(index)
some = lambda b: bytes([1]) + b
none = bytes([0])
vote_call = varint(1) + varint(7) + varint(1) + vote(3, 2, 0) + some(log_id(2, 9))
append_call = (varint(2) + varint(7) + varint(0) + vote(3, 2, 1) + some(log_id(2, 9)) + none + varint(3)
               + log_id(3, 10) + varint(0)
               + log_id(3, 11) + varint(1) + varint(40) + varint(2) + varint(3) + varint(4)
               + log_id(3, 12) + varint(2) + varint(1) + varint(2) + varint(1) + varint(2) + varint(1) + varint(1) + pstr(b"10.0.0.1:9093"))
write("peer", "vote_and_append", bytes([0]) + varint(2) + varint(2) + vote_call + append_call + b"one" + b"two!")
answers = (varint(2) + varint(7) + varint(0) + varint(1) + some(log_id(3, 11))
           + varint(1) + varint(7) + varint(3) + varint(7) + pstr(b"node 1 runs no Raft group 7"))
write("peer", "answers", bytes([1]) + varint(1) + varint(2) + answers)
# Kafka requests (big-endian frames): ApiVersions v0 and v3, Metadata v1 (all
# topics), v4 and v9 (one topic), as kcat sends them.
def kafka(key, version, corr, body, flexible=False):
    head = struct.pack(">hhih", key, version, corr, 4) + b"kcat" + (b"\x00" if flexible else b"")
    f = head + body
    return struct.pack(">i", len(f)) + f
write("kafka_request", "api_versions_v0", kafka(18, 0, 1, b""))
write("kafka_request", "api_versions_v3", kafka(18, 3, 2, b"\x08librdkf\x062.0.2\x00", flexible=True))
write("kafka_request", "metadata_v1_all", kafka(3, 1, 3, struct.pack(">i", -1)))
write("kafka_request", "metadata_v4_one", kafka(3, 4, 4, struct.pack(">ih", 1, 6) + b"orders" + b"\x01"))
write("kafka_request", "metadata_v9_one", kafka(3, 9, 5, b"\x02\x07orders\x00\x01\x00\x00\x00", flexible=True))
# CreateTopics v5 (one topic, 3 partitions, replication -1, a config) and DeleteTopics v4.
write("kafka_request", "create_topics_v5", kafka(19, 5, 6, b"\x02\x07orders" + struct.pack(">ih", 3, -1) + b"\x01"
      + b"\x02\x0dretention.ms\x051000\x00" + b"\x00" + struct.pack(">i", 5000) + b"\x00\x00", flexible=True))
write("kafka_request", "delete_topics_v4", kafka(20, 4, 7, b"\x02\x07orders" + struct.pack(">i", 5000) + b"\x00", flexible=True))
