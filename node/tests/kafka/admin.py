"""Creates, lists and deletes topics through confluent-kafka's and
kafka-python's admin clients against the broker at argv[1]; prints what
each step gave, as JSON, for node/tests/kafka.rs to check."""
import json
import sys

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.admin import KafkaAdminClient
from kafka.admin import NewTopic as KNewTopic


def outcome(future):
    try:
        future.result(10)
        return "ok"
    except KafkaException as e:
        return e.args[0].name()


addr = sys.argv[1]
out = {}
a = AdminClient({"bootstrap.servers": addr})
fs = a.create_topics([
    NewTopic("ck-orders", 3, 1, config={"retention.ms": "3600000"}),
    NewTopic("ck-bad", 1, 1, config={"cleanup.policy": "compact"}),
    NewTopic("../x", 1, 1),
])
out["create"] = {t: outcome(f) for t, f in fs.items()}
md = a.list_topics(timeout=10)
out["listed"] = sorted(md.topics)
out["partitions"] = len(md.topics["ck-orders"].partitions)
out["cluster_id"] = md.cluster_id
out["again"] = outcome(a.create_topics([NewTopic("ck-orders", 1, 1)])["ck-orders"])
out["dry"] = outcome(a.create_topics([NewTopic("ck-dry", 2, 1)], validate_only=True)["ck-dry"])
out["listed_after_dry"] = sorted(a.list_topics(timeout=10).topics)
out["delete"] = outcome(a.delete_topics(["ck-orders"])["ck-orders"])
out["delete_missing"] = outcome(a.delete_topics(["nope"])["nope"])
out["listed_after_delete"] = sorted(a.list_topics(timeout=10).topics)

k = KafkaAdminClient(bootstrap_servers=addr, request_timeout_ms=10000)
k.create_topics([KNewTopic("kp-jobs", 2, 1)])
out["kp_listed"] = sorted(k.list_topics())
k.delete_topics(["kp-jobs"])
out["kp_listed_after_delete"] = sorted(k.list_topics())
k.close()
print(json.dumps(out))
