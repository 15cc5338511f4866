"""The golden cases; each answer is worked out by hand in the comments (docs/analysis.md)."""

from __future__ import annotations

from tests.golden import Case, G

DB = {"db.system": "sqlite"}
RPC = {"rpc.system": "rabbitmq"}
QWAIT = {"messaging.system": "rabbitmq", "rpc.queue_wait_ms": 1.0}
RWAIT = {"messaging.system": "rabbitmq", "rpc.reply_wait_ms": 1.0}
S3 = {"aws.s3.bucket": "media"}
EPISODE = "process rpc.episode episode.list"
STREAM = "process rpc.stream stream.presign"
PROXY = {"component": "proxy", "node_id": "sidecar~10.0.0.5~pod.ns~ns.svc.cluster.local"}

# GET /dramas/{id} as our services trace it: a query, then two calls over the queue, each
# PRODUCER -> (queue wait, process, reply wait). As in real traces, the workers' process spans
# end after their reply waits began (they publish the reply, then ack), and the queue waits
# overlap the sends: the episode one starts before its send (the sent-at stamp is taken first)
# and ends before the broker's confirm; the stream one starts inside its send.
OURS = Case(
    spans=[
        G("A", "", "drama-service", "SERVER", "GET /dramas/{id}", 0, 24000),
        G("B", "A", "drama-service", "CLIENT", "SELECT drama.db", 1000, 1400, DB),
        G("C", "A", "drama-service", "CLIENT", "call episode.list", 2000, 10000, RPC),
        G("D", "C", "drama-service", "PRODUCER", "send rpc:episode.list", 2100, 3600),
        G("E", "D", "episode-service", "INTERNAL", "queue wait episode.list", 2050, 3500, QWAIT),
        G("F", "D", "episode-service", "CONSUMER", EPISODE, 3500, 9200),
        G("G", "F", "episode-service", "CLIENT", "SELECT episode.db", 4000, 4700, DB),
        G("H", "D", "drama-service", "INTERNAL", "reply wait episode.list", 9000, 9900, RWAIT),
        G("I", "A", "drama-service", "CLIENT", "call stream.presign", 11000, 23000, RPC),
        G("J", "I", "drama-service", "PRODUCER", "send rpc:stream.presign", 11100, 11600),
        G("K", "J", "stream-service", "INTERNAL", "queue wait stream.presign", 11300, 12400, QWAIT),
        G("L", "J", "stream-service", "CONSUMER", STREAM, 12400, 22000),
        G("M", "L", "stream-service", "INTERNAL", "S3 presign", 13000, 21000, S3),
        G("N", "J", "drama-service", "INTERNAL", "reply wait stream.presign", 21800, 22900, RWAIT),
    ],
    # A: [0,1000] [1400,2000] [10000,11000] [23000,24000]; I: [11000,11100] [22900,23000];
    # J cut at K's start: [11100,11300]; L: [12400,13000] [21000,21800]; C: [2000,2050]
    # [9900,10000]; F cut at H's start: [3500,4000] [4700,9000]. At F's start both E and D
    # still run: E started first and holds the path to 2050; D, starting later, is off it.
    path=[
        ("A", 3600),
        ("B", 400),
        ("C", 150),
        ("E", 1450),
        ("F", 4800),
        ("G", 700),
        ("H", 900),
        ("I", 200),
        ("J", 200),
        ("K", 1100),
        ("L", 1400),
        ("M", 8000),
        ("N", 1100),
    ],
    categories={
        "app": 3600 + 4800 + 1400,
        "db": 400 + 700,
        "s3": 8000,
        "queue_wait": 1450 + 1100,
        "reply_wait": 900 + 1100,
        "broker": 150 + 200 + 200,
    },
)

# The same calls over HTTP: the worker's SERVER span is the CLIENT span's child, and the
# CLIENT's own time around it is the wire.
HTTP = Case(
    spans=[
        G("A", "", "drama-service", "SERVER", "GET /dramas/{id}", 0, 10000),
        G("B", "A", "drama-service", "CLIENT", "call episode.list", 1000, 6000),
        G("C", "B", "episode-service", "SERVER", "POST /rpc/episode.list", 1500, 5200),
        G("D", "C", "episode-service", "CLIENT", "SELECT episode.db", 2000, 3000, DB),
        G("E", "A", "drama-service", "CLIENT", "call stream.presign", 6500, 9500),
        G("F", "E", "stream-service", "SERVER", "POST /rpc/stream.presign", 7000, 9000),
        G("G", "F", "stream-service", "INTERNAL", "S3 presign", 7200, 8800, S3),
    ],
    path=[
        ("A", 1000 + 500 + 500),
        ("B", 500 + 800),
        ("C", 500 + 2200),
        ("D", 1000),
        ("E", 500 + 500),
        ("F", 200 + 200),
        ("G", 1600),
    ],
    categories={"app": 2000 + 2700 + 400, "network": 1300 + 1000, "db": 1000, "s3": 1600},
    trace_id="5b8efff798038103d269b633813fc60c",
)

# Behind Istio: the inbound sidecar's span is the root, the outbound sidecar's span sits under
# the HTTP call and the callee's inbound sidecar under it. Proxy time, and the hop between the
# two sidecars, is mesh; the call's own time around its sidecar is network.
MESH = Case(
    spans=[
        G("A", "", "drama.ns", "SERVER", "drama.ns.svc:8080/*", 0, 12000, PROXY),
        G("B", "A", "drama-service", "SERVER", "GET /dramas/{id}", 500, 11500),
        G("C", "B", "drama-service", "CLIENT", "call stream.presign", 1000, 11000),
        G(
            "D",
            "C",
            "drama.ns",
            "CLIENT",
            "stream.ns.svc:8080/*",
            1200,
            10800,
            {"upstream_cluster": "outbound|8080||stream.ns.svc.cluster.local"},
        ),
        G("E", "D", "stream.ns", "SERVER", "stream.ns.svc:8080/*", 1700, 10300, PROXY),
        G("F", "E", "stream-service", "SERVER", "POST /rpc/stream.presign", 1900, 10100),
        G("G", "F", "stream-service", "INTERNAL", "S3 presign", 2000, 10000, S3),
    ],
    path=[
        ("A", 500 + 500),
        ("B", 500 + 500),
        ("C", 200 + 200),
        ("D", 500 + 500),
        ("E", 200 + 200),
        ("F", 100 + 100),
        ("G", 8000),
    ],
    categories={"mesh": 1000 + 1000 + 400, "app": 1000 + 200, "network": 400, "s3": 8000},
)

# Overlapping children: c ends last, so it is on the path; at its start b is still running,
# so b is cut there and holds the path back to 0 (Jaeger would skip b: 80 us of "own time" for
# the root). d runs in parallel with b and is off the path.
OVERLAP = Case(
    spans=[
        G("a", "", "svc", "SERVER", "GET /x", 0, 100),
        G("b", "a", "svc", "INTERNAL", "compute", 0, 90),
        G("c", "a", "svc", "CLIENT", "SELECT one", 80, 95, DB),
        G("d", "a", "svc", "CLIENT", "SELECT two", 10, 30, DB),
    ],
    path=[("a", 5), ("b", 80), ("c", 15)],
    categories={"app": 85, "db": 15},
)

# Clock skew: b starts before its parent (clamped to 1000), c ends after it (clamped to 5000),
# d lies wholly before the parent and e wholly after: dropped, e with its child.
SKEW = Case(
    spans=[
        G("a", "", "svc", "SERVER", "GET /x", 1000, 5000),
        G("b", "a", "svc", "CLIENT", "SELECT early", 800, 2000, DB),
        G("c", "a", "svc", "CLIENT", "SELECT late", 4500, 5600, DB),
        G("d", "a", "svc", "INTERNAL", "before", 100, 900),
        G("e", "a", "other", "INTERNAL", "after", 5200, 5900),
        G("e1", "e", "other", "INTERNAL", "after child", 5300, 5400),
    ],
    path=[("a", 2500), ("b", 1000), ("c", 500)],
    categories={"app": 2500, "db": 1500},
    dropped=3,
)

# Missing parents: the root's own parent (an Envoy span) was not exported, nor was the
# PRODUCER of the call, nor the parent of a late span. No span lacks a parent reference, so the
# longest top-level span is the root; the orphaned CONSUMER (and its query) and the late span
# are adopted by it. The call itself holds [1000, 9000] (the worker's run inside it is its
# orphaned, parallel work, off the path); the late span is on the path.
ORPHANS = Case(
    spans=[
        G("A", "envoy", "drama-service", "SERVER", "GET /dramas/{id}", 0, 10000),
        G("B", "A", "drama-service", "CLIENT", "call episode.list", 1000, 9000, RPC),
        G("C", "lost", "episode-service", "CONSUMER", EPISODE, 3000, 8000),
        G("D", "C", "episode-service", "CLIENT", "SELECT episode.db", 4000, 5000, DB),
        G("E", "gone", "drama-service", "INTERNAL", "late", 9500, 9800),
    ],
    path=[("A", 1000 + 500 + 200), ("B", 8000), ("E", 300)],
    categories={"app": 2000, "broker": 8000},
    orphans=2,
)

# FOLLOWS_FROM: an audit message sent fire-and-forget is not waited for, and its consumer
# (and the consumer's query) is off the path. A request-reply call whose consumer FOLLOWS_FROM
# the send is still waited for: lifted under the CLIENT span, it stays on the path.
FOLLOWS = Case(
    spans=[
        G("A", "", "drama-service", "SERVER", "GET /x", 0, 10000),
        G("B", "A", "drama-service", "PRODUCER", "send audit", 1000, 2000),
        G("C", "B", "audit-service", "CONSUMER", "process audit", 2500, 9000, follows_from=True),
        G("C1", "C", "audit-service", "CLIENT", "INSERT audit", 3000, 8000, DB),
        G("D", "A", "drama-service", "INTERNAL", "render", 3000, 4000),
        G("E", "A", "drama-service", "CLIENT", "call x.get", 5000, 9500, RPC),
        G("F", "E", "drama-service", "PRODUCER", "send rpc:x.get", 5100, 5300),
        G("G", "F", "x-service", "CONSUMER", "process rpc.x x.get", 5400, 9000, follows_from=True),
    ],
    path=[
        ("A", 1000 + 1000 + 1000 + 500),
        ("B", 1000),
        ("D", 1000),
        ("E", 100 + 100 + 500),
        ("F", 200),
        ("G", 3600),
    ],
    categories={"app": 3500 + 1000 + 3600, "broker": 1000 + 700 + 200},
    not_blocking=2,
)

# Cases both formats can carry (OTLP has no FOLLOWS_FROM: its parent is always CHILD_OF).
BOTH_FORMATS = {
    "ours": OURS,
    "http": HTTP,
    "mesh": MESH,
    "overlap": OVERLAP,
    "skew": SKEW,
    "orphans": ORPHANS,
}
JAEGER_ONLY = {"follows_from": FOLLOWS}
