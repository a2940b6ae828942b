"""Produces and consumes through confluent-kafka (librdkafka) and
kafka-python against the broker at argv[1], on topics argv[2] (3
partitions) and argv[3] (1 partition), and prints what each step saw, as
JSON, for node/tests/kafka.rs to check:

- confluent-kafka, idempotent, acks=all, keyed: every delivery report's
  partition and offset, then a consumer by assign reading each partition
  back from the beginning (its records must sit exactly at those offsets);
- kafka-python, acks=1 without idempotence and acks=0: what a consumer by
  assign reads back;
- watermarks and a lookup by timestamp.
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition

addr, keyed, single = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}

# confluent-kafka: idempotent, acks=all, keyed (key decides the partition).
reports = []


def delivered(err, msg):
    reports.append({
        "error": None if err is None else err.name(),
        "key": msg.key().decode(),
        "value": msg.value().decode(),
        "partition": msg.partition(),
        "offset": msg.offset(),
    })


p = Producer({
    "bootstrap.servers": addr,
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
})
for i in range(300):
    p.produce(keyed, key=f"k{i % 17}", value=f"ck-{i}", on_delivery=delivered)
    if i % 50 == 0:
        p.poll(0)
left = p.flush(30)
out["ck_unflushed"] = left
out["ck_reports"] = reports


def read_back(topic, partitions, want):
    """Every record of `partitions` of `topic` from the beginning, by assign."""
    c = Consumer({
        "bootstrap.servers": addr,
        "group.id": "unused-assign-only",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    c.assign([TopicPartition(topic, n, 0) for n in partitions])
    got = []
    deadline = time.time() + 30
    while len(got) < want and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            got.append({"error": m.error().name()})
            continue
        got.append({
            "key": None if m.key() is None else m.key().decode(),
            "value": m.value().decode(),
            "partition": m.partition(),
            "offset": m.offset(),
            "timestamp": m.timestamp()[1],
        })
    marks = {n: c.get_watermark_offsets(TopicPartition(topic, n), timeout=10) for n in partitions}
    c.close()
    return got, marks


got, marks = read_back(keyed, [0, 1, 2], 300)
out["ck_read"] = got
out["ck_watermarks"] = {str(n): list(m) for n, m in marks.items()}

# kafka-python: acks=1 without idempotence, then acks=0.
kp = KafkaProducer(bootstrap_servers=addr, acks=1)
futures = [kp.send(single, key=b"kp", value=f"kp-{i}".encode()) for i in range(50)]
out["kp_offsets"] = [f.get(timeout=30).offset for f in futures]
kp.close()
k0 = KafkaProducer(bootstrap_servers=addr, acks=0)
for i in range(20):
    k0.send(single, value=f"k0-{i}".encode())
k0.flush(30)
k0.close()

kc = KafkaConsumer(bootstrap_servers=addr, enable_auto_commit=False, consumer_timeout_ms=3000)
tp = KTopicPartition(single, 0)
kc.assign([tp])
kc.seek_to_beginning(tp)
values = []
deadline = time.time() + 30
while len(values) < 70 and time.time() < deadline:
    for records in kc.poll(timeout_ms=500).values():
        values.extend((r.offset, r.value.decode()) for r in records)
out["kp_read"] = values
out["kp_end"] = kc.end_offsets([tp])[tp]
out["kp_beginning"] = kc.beginning_offsets([tp])[tp]
first_ts = None
kc.seek(tp, 10)
for records in kc.poll(timeout_ms=2000, max_records=1).values():
    first_ts = records[0].timestamp
found = kc.offsets_for_times({tp: first_ts}) if first_ts is not None else {}
out["kp_by_time"] = None if not found or found[tp] is None else found[tp].offset
after = kc.offsets_for_times({tp: int(time.time() * 1000) + 3_600_000})
out["kp_after_all"] = None if after[tp] is None else after[tp].offset
kc.close()

print(json.dumps(out))
