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
# the HTTP call and the callee's inbound sidecar under it. An inbound sidecar's time around the
# application's span is the proxy's (mesh); the outbound sidecar's time around the callee's
# inbound sidecar is the hop between the pods (network), and so is the call's own time around
# its outbound sidecar (the hop from the application to its sidecar).
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
    categories={"mesh": 1000 + 400, "app": 1000 + 200, "network": 400 + 1000, "s3": 8000},
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
    # x-service left no queue wait span: the analyser adds one from the send's start to the
    # delivery (F/queue wait, 5100..5400), which holds the path where the send did.
    path=[
        ("A", 1000 + 1000 + 1000 + 500),
        ("B", 1000),
        ("D", 1000),
        ("E", 100 + 500),
        ("F/queue wait", 300),
        ("G", 3600),
    ],
    categories={"app": 3500 + 1000 + 3600, "broker": 1000 + 600, "queue_wait": 300},
    not_blocking=2,
)


def sidecar(pod: str, upstream: str) -> dict[str, str]:
    """An Envoy sidecar span's attributes, as Istio's Zipkin/OpenTelemetry tracer sets them."""
    return {
        "component": "proxy",
        "node_id": f"sidecar~10.0.0.1~{pod}.default~default.svc.cluster.local",
        "upstream_cluster": upstream,
    }


PRODUCTPAGE = sidecar("productpage-v1-1", "inbound|9080||")
TO_DETAILS = sidecar("productpage-v1-1", "outbound|9080||details.default.svc.cluster.local")
TO_REVIEWS = sidecar("productpage-v1-1", "outbound|9080||reviews.default.svc.cluster.local")
DETAILS = sidecar("details-v1-1", "inbound|9080||")
REVIEWS = sidecar("reviews-v2-1", "inbound|9080||")
TO_RATINGS = sidecar("reviews-v2-1", "outbound|9080||ratings.default.svc.cluster.local")
RATINGS = sidecar("ratings-v1-1", "inbound|9080||")

# Only the sidecars traced (Istio's Bookinfo without application spans): productpage calls
# details and reviews in parallel, reviews calls ratings. An inbound sidecar's time with no
# application span under it is the application's (app); an outbound sidecar's time around the
# callee's inbound sidecar is the hop between pods (network). Walk: A from 20000: D ends last
# (17000): A owns 17000..20000; D owns 16500..17000; E owns 12000..16500; F owns
# 11000..12000; G holds 4500..11000; F owns 4000..4500; E owns 2600..4000; D owns 2000..2600.
# At 2000 B has not started before the point (it starts at 2000): off the path, as details
# answered first. A owns 0..2000.
SIDECARS = Case(
    spans=[
        G("A", "", "productpage.default", "SERVER", "productpage:9080/*", 0, 20000, PRODUCTPAGE),
        G("B", "A", "productpage.default", "CLIENT", "details:9080/*", 2000, 6000, TO_DETAILS),
        G("C", "B", "details.default", "SERVER", "details:9080/*", 2500, 5500, DETAILS),
        G("D", "A", "productpage.default", "CLIENT", "reviews:9080/*", 2000, 17000, TO_REVIEWS),
        G("E", "D", "reviews.default", "SERVER", "reviews:9080/*", 2600, 16500, REVIEWS),
        G("F", "E", "reviews.default", "CLIENT", "ratings:9080/*", 4000, 12000, TO_RATINGS),
        G("G", "F", "ratings.default", "SERVER", "ratings:9080/*", 4500, 11000, RATINGS),
    ],
    path=[("A", 2000 + 3000), ("D", 600 + 500), ("E", 1400 + 4500), ("F", 500 + 1000), ("G", 6500)],
    categories={"app": 5000 + 5900 + 6500, "network": 1100 + 1500},
    trace_id="7c1b1c2e3f4a5b6c7d8e9f0a1b2c3d4e",
)

GATEWAY = {
    "component": "proxy",
    "node_id": "router~10.0.9.9~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local",
    "upstream_cluster": "outbound|8080||drama-service.drama.svc.cluster.local",
}
DRAMA_SIDECAR = sidecar("drama-service-1", "inbound|8080||")
TRANSIT = QWAIT | {"rpc.queue_transit_ms": 0.4, "rpc.queue_dwell_ms": 1.05}

# Our EKS shape: the ingress gateway (the root: the ALB leaves no span), drama-service's
# inbound sidecar, drama-service's own spans, and the calls over AMQP behind it (the broker has
# no sidecar, and the AMQP connection through drama-service's outbound sidecar is TCP: no span).
# The gateway's time around the sidecar is the hop (network: 1000 + 1000); the sidecar's time
# around drama-service's span is the proxy's (mesh: 500 + 500). The episode queue wait carries
# its transit (0.4 ms measured on the wire): 400 of its 1450 us are transit, 1050 queue.
EKS = Case(
    spans=[
        G("GW", "", "istio-ingressgateway", "CLIENT", "drama.example.com:443/*", 0, 30000, GATEWAY),
        G("S", "GW", "drama-service.drama", "SERVER", "drama:8080/*", 1000, 29000, DRAMA_SIDECAR),
        G("A", "S", "drama-service", "SERVER", "GET /dramas/{id}", 1500, 28500),
        G("B", "A", "drama-service", "CLIENT", "SELECT drama.db", 2000, 3000, DB),
        G("C", "A", "drama-service", "CLIENT", "call episode.list", 3500, 12000, RPC),
        G("D", "C", "drama-service", "PRODUCER", "send rpc:episode.list", 3600, 4000),
        G("E", "D", "episode-service", "INTERNAL", "queue wait episode.list", 3550, 5000, TRANSIT),
        G("F", "D", "episode-service", "CONSUMER", EPISODE, 5000, 11000),
        G("H", "D", "drama-service", "INTERNAL", "reply wait episode.list", 10800, 11800, RWAIT),
        G("I", "A", "drama-service", "CLIENT", "call stream.presign", 12500, 28000, RPC),
        G("J", "I", "drama-service", "PRODUCER", "send rpc:stream.presign", 12600, 12900),
        G("K", "J", "stream-service", "INTERNAL", "queue wait stream.presign", 12550, 14000, QWAIT),
        G("L", "J", "stream-service", "CONSUMER", STREAM, 14000, 27000),
        G("M", "L", "stream-service", "INTERNAL", "S3 presign", 14500, 26500, S3),
        G("N", "J", "drama-service", "INTERNAL", "reply wait stream.presign", 26800, 27900, RWAIT),
    ],
    path=[
        ("GW", 1000 + 1000),
        ("S", 500 + 500),
        ("A", 500 + 500 + 500 + 500),
        ("B", 1000),
        ("C", 50 + 200),
        ("E", 1450),
        ("F", 5800),
        ("H", 1000),
        ("I", 50 + 100),
        ("K", 1450),
        ("L", 800),
        ("M", 12000),
        ("N", 1100),
    ],
    categories={
        "network": 2000,
        "mesh": 1000,
        "app": 2000 + 5800 + 800,
        "db": 1000,
        "broker": 250 + 150,
        "queue_wait": 1050 + 1450,
        "transit": 400,
        "reply_wait": 1000 + 1100,
        "s3": 12000,
    },
    trace_id="8d2c2d3e4f5a6b7c8d9e0f1a2b3c4d5e",
)

# A consumer linked to its producer instead of parented (other instrumentations, batch
# consumers): D has no parent, only a link to the send C. The analyser follows the link (D is
# then lifted under the call like a child of the send) and, as the worker left no queue wait
# span, adds one from the send's start to the delivery (C/queue wait, 1100..2000). Walk: A owns
# 9000..10000; B owns 8800..9000; F holds 8000..8800; D owns 5000..8000 and 2000..3000, E holds
# 3000..5000; the added queue wait holds 1100..2000; B owns 1000..1100; A owns 0..1000.
LINKED = Case(
    spans=[
        G("A", "", "drama-service", "SERVER", "GET /dramas/{id}", 0, 10000),
        G("B", "A", "drama-service", "CLIENT", "call episode.list", 1000, 9000, RPC),
        G("C", "B", "drama-service", "PRODUCER", "send rpc:episode.list", 1100, 1400),
        G("D", "", "episode-service", "CONSUMER", EPISODE, 2000, 8000, links=("C",)),
        G("E", "D", "episode-service", "CLIENT", "SELECT episode.db", 3000, 5000, DB),
        G("F", "C", "drama-service", "INTERNAL", "reply wait episode.list", 8000, 8800, RWAIT),
    ],
    path=[
        ("A", 1000 + 1000),
        ("B", 100 + 200),
        ("C/queue wait", 900),
        ("D", 1000 + 3000),
        ("E", 2000),
        ("F", 800),
    ],
    categories={
        "app": 2000 + 4000,
        "broker": 300,
        "queue_wait": 900,
        "db": 2000,
        "reply_wait": 800,
    },
    trace_id="9e3d3e4f5a6b7c8d9e0f1a2b3c4d5e6f",
)

# What stock opentelemetry-instrumentation-aio-pika records (0.5x: old attributes, spans named
# after the exchange or queue, consumers with operation "receive"): a caller that publishes
# with no CLIENT span of its own ("rpc send" under its HTTP span), the worker's "rpc.episode
# receive" under the send, the worker's reply "amq.gen-Xy7 send" (the reply-to queue) under
# that, and the caller's "amq.gen-Xy7 receive" under the reply. The analyser adds the call
# (B/call: from the send to the reply's receipt, 1000..8300), the queue wait (B/queue wait:
# 1000..2000) and the reply wait (F/reply wait: from the reply's send to its receipt,
# 7000..8000); the worker's span after its reply went (its ack, 7200..8500) is not waited for.
# Walk: A owns 8300..10000; B/call from 8300: F holds 8000..8300 (the caller's reply handling,
# app); F/reply wait 7000..8000; C, cut at 7000, owns 6000..7000 and 2000..3000, D holds
# 3000..6000; B/queue wait 1000..2000 (the send, 1000..1300, is off the path); A owns 0..1000.
OLD = {
    "messaging.system": "rabbitmq",
    "net.peer.name": "rabbitmq.drama.svc",
    "net.peer.port": 5672,
    "messaging.conversation_id": "7f3c",
}
STOCK = Case(
    spans=[
        G("A", "", "drama-service", "SERVER", "GET /dramas/{id}", 0, 10000),
        G(
            "B",
            "A",
            "drama-service",
            "PRODUCER",
            "rpc send",
            1000,
            1300,
            OLD | {"messaging.destination": "rpc", "messaging.temp_destination": True},
        ),
        G(
            "C",
            "B",
            "episode-service",
            "CONSUMER",
            "rpc.episode receive",
            2000,
            8500,
            OLD | {"messaging.destination": "rpc.episode", "messaging.operation": "receive"},
        ),
        G("D", "C", "episode-service", "CLIENT", "SELECT episode.db", 3000, 6000, DB),
        G(
            "E",
            "C",
            "episode-service",
            "PRODUCER",
            "amq.gen-Xy7 send",
            7000,
            7200,
            OLD | {"messaging.destination": "amq.gen-Xy7", "messaging.temp_destination": True},
        ),
        G(
            "F",
            "E",
            "drama-service",
            "CONSUMER",
            "amq.gen-Xy7 receive",
            8000,
            8300,
            OLD | {"messaging.destination": "amq.gen-Xy7", "messaging.operation": "receive"},
        ),
    ],
    path=[
        ("A", 1000 + 1700),
        ("B/call", 0),
        ("B/queue wait", 1000),
        ("C", 1000 + 1000),
        ("D", 3000),
        ("F/reply wait", 1000),
        ("F", 300),
    ],
    categories={"app": 2700 + 2000 + 300, "queue_wait": 1000, "db": 3000, "reply_wait": 1000},
    trace_id="af4e4f5a6b7c8d9e0f1a2b3c4d5e6f7a",
)

# Our caller, a stock-instrumented worker: its "rpc.episode receive" under our send, no queue
# wait span of its own; the analyser adds it (C/queue wait, 1100..2500) and the rest is ours.
# Walk: A owns 7500..8000; B owns 7000..7500; F holds 5600..7000; D, cut at 5600: E (its reply
# send, running) holds 5500..5600, D owns 2500..5500; the added queue wait holds 1100..2500;
# B owns 500..1100; A owns 0..500.
MIXED = Case(
    spans=[
        G("A", "", "drama-service", "SERVER", "GET /dramas/{id}", 0, 8000),
        G("B", "A", "drama-service", "CLIENT", "call episode.list", 500, 7500, RPC),
        G("C", "B", "drama-service", "PRODUCER", "send rpc:episode.list", 1100, 1500),
        G(
            "D",
            "C",
            "episode-service",
            "CONSUMER",
            "rpc.episode receive",
            2500,
            6000,
            OLD | {"messaging.destination": "rpc.episode", "messaging.operation": "receive"},
        ),
        G(
            "E",
            "D",
            "episode-service",
            "PRODUCER",
            "amq.rabbitmq.reply-to.g1h2 send",
            5500,
            5700,
            OLD | {"messaging.destination": "amq.rabbitmq.reply-to.g1h2"},
        ),
        G("F", "C", "drama-service", "INTERNAL", "reply wait episode.list", 5600, 7000, RWAIT),
    ],
    path=[
        ("A", 500 + 500),
        ("B", 600 + 500),
        ("C/queue wait", 1400),
        ("D", 3000),
        ("E", 100),
        ("F", 1400),
    ],
    categories={"app": 1000 + 3000, "broker": 1100 + 100, "queue_wait": 1400, "reply_wait": 1400},
    trace_id="b05f5a6b7c8d9e0f1a2b3c4d5e6f7a8b",
)

# Cases both formats can carry (OTLP has no FOLLOWS_FROM: its parent is always CHILD_OF).
BOTH_FORMATS = {
    "ours": OURS,
    "http": HTTP,
    "mesh": MESH,
    "overlap": OVERLAP,
    "skew": SKEW,
    "orphans": ORPHANS,
    "sidecars": SIDECARS,
    "eks": EKS,
    "linked": LINKED,
    "stock_aio_pika": STOCK,
    "mixed": MIXED,
}
JAEGER_ONLY = {"follows_from": FOLLOWS}
