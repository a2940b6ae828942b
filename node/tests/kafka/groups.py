"""Consumer groups through confluent-kafka (librdkafka) and kafka-python
against the broker at argv[1], on topic argv[2] (4 partitions, 60 records
produced here), with weirctl at argv[3], printing what each step saw, as JSON, for
node/tests/kafka.rs to check:

- confluent-kafka: a member reads part of the topic by subscribe, commits
  and closes; a second member of the group resumes at the commits;
- confluent-kafka: two members split the partitions; one leaves, the other
  takes them all;
- kafka-python: a member reads everything and commits; a new member of the
  group finds the commits at the end; the admin client lists and describes
  the groups;
- confluent-kafka: a transactional producer is refused promptly.
"""
import json
import subprocess
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaAdminClient, KafkaConsumer

addr, topic, weirctl = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}
TOTAL = 60

p = Producer({"bootstrap.servers": addr, "enable.idempotence": True, "acks": "all"})
for i in range(TOTAL):
    p.produce(topic, key=f"k{i}", value=f"v{i}")
out["unflushed"] = p.flush(30)


def consumer(group, **extra):
    conf = {
        "bootstrap.servers": addr,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "heartbeat.interval.ms": 300,
        "session.timeout.ms": 6000,
    }
    conf.update(extra)
    return Consumer(conf)


def take(c, n, deadline_s=30):
    """Up to n records (partition, offset, value), polling until the deadline."""
    got = []
    end = time.time() + deadline_s
    while len(got) < n and time.time() < end:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            out.setdefault("poll_errors", []).append(str(m.error()))
            continue
        got.append([m.partition(), m.offset(), m.value().decode()])
    return got


# 1. Read 25, commit them, close; a second member resumes at the commits.
c1 = consumer("ck-group")
c1.subscribe([topic])
first = take(c1, 25)
c1.commit(asynchronous=False)
out["first"] = first
out["first_committed"] = sorted(
    [tp.partition, tp.offset] for tp in c1.committed([TopicPartition(topic, i) for i in range(4)], timeout=10)
)
c1.close()
c2 = consumer("ck-group")
c2.subscribe([topic])
out["second"] = take(c2, TOTAL - len(first))
out["second_extra"] = take(c2, 1, deadline_s=2)
c2.commit(asynchronous=False)
c2.close()


# 2. Two members split the partitions; one leaves and the other takes them all.
def assignment_of(c, want, deadline_s=40):
    end = time.time() + deadline_s
    while time.time() < end:
        c.poll(0.1)
        got = sorted(tp.partition for tp in c.assignment())
        if want(got):
            return got
    return sorted(tp.partition for tp in c.assignment())


a = consumer("ck-split")
a.subscribe([topic])
out["alone"] = assignment_of(a, lambda g: len(g) == 4)
b = consumer("ck-split")
b.subscribe([topic])
split_end = time.time() + 40
split = ([], [])
while time.time() < split_end:
    a.poll(0.1)
    b.poll(0.1)
    split = (sorted(tp.partition for tp in a.assignment()), sorted(tp.partition for tp in b.assignment()))
    if split[0] and split[1] and len(split[0]) + len(split[1]) == 4:
        break
out["split"] = split
# weirctl describes the Kafka group: its members' topics and partitions.
described = subprocess.run(
    [weirctl, "--broker", addr, "--json", "group", "describe", "ck-split"], capture_output=True, text=True, check=True
)
out["weirctl_split"] = json.loads(described.stdout)
b.close()
out["after_leave"] = assignment_of(a, lambda g: len(g) == 4)
a.close()

# 3. kafka-python: read everything by subscribe, commit, close; a new member sees the commits.
k1 = KafkaConsumer(
    topic,
    bootstrap_servers=addr,
    group_id="kp-group",
    enable_auto_commit=False,
    auto_offset_reset="earliest",
    consumer_timeout_ms=15000,
    heartbeat_interval_ms=300,
    session_timeout_ms=6000,
)
seen = []
for m in k1:
    seen.append([m.partition, m.offset, m.value.decode()])
    if len(seen) == TOTAL:
        break
k1.commit()
k1.close()
out["kp_seen"] = len(seen)
out["kp_distinct"] = len({(s[0], s[1]) for s in seen})
k2 = KafkaConsumer(
    bootstrap_servers=addr,
    group_id="kp-group",
    enable_auto_commit=False,
    auto_offset_reset="earliest",
)
from kafka import TopicPartition as KTP  # noqa: E402

out["kp_committed"] = sorted([i, k2.committed(KTP(topic, i))] for i in range(4))
out["kp_end"] = sorted([tp.partition, o] for tp, o in k2.end_offsets([KTP(topic, i) for i in range(4)]).items())
k2.close()

admin = KafkaAdminClient(bootstrap_servers=addr)
out["listed"] = sorted(g["group_id"] for g in admin.list_groups())
described = admin.describe_groups(["ck-group", "kp-group"])
out["described"] = sorted(
    [gid, d["group_state"], d["protocol_type"], len(d["members"])] for gid, d in described.items()
)
offsets = admin.list_group_offsets({"kp-group": None})["kp-group"]
out["admin_offsets"] = sorted([tp.partition, o.offset] for tp, o in offsets.items())
admin.close()

# 4. A transactional producer is refused at once, not retried for minutes.
t0 = time.time()
txn = Producer({"bootstrap.servers": addr, "transactional.id": "txn-1"})
try:
    txn.init_transactions(30)
    out["txn"] = "accepted"
except Exception as e:  # noqa: BLE001 (whatever librdkafka raises is reported)
    out["txn"] = str(e)
out["txn_seconds"] = time.time() - t0
print(json.dumps(out))
