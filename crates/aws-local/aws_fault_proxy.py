"""A proxy between the functions' AWS SDK clients and moto that answers as AWS does on a bad day.

moto answers every call, applies every batch whole, never throttles and never cancels a
transaction that would succeed. AWS documents that it does all of these, and the code must
survive them, so the tests put this proxy in the clients' way (`AWS_ENDPOINT_URL`):

- DynamoDB: `TransactWriteItems` cancelled with reason `TransactionConflict` (nothing written;
  the SDK does not retry it); `ThrottlingException` / `ProvisionedThroughputExceededException`
  (400) and `InternalServerError` (500) on any call (nothing done; the SDK retries these);
  `BatchWriteItem` writing only part of the batch and returning the rest as `UnprocessedItems`;
  `BatchGetItem` reading only part and returning the rest as `UnprocessedKeys`. moto itself
  already stops a `Query` at 1 MB with a `LastEvaluatedKey`.
- SQS: `SendMessageBatch` sending only some entries and reporting the others in `Failed`
  (`SenderFault: false`); 500 `InternalError` on any call (nothing done); `ReceiveMessage`
  delivering a message again that it delivered before (at-least-once delivery).
- SES v2: 429 `TooManyRequestsException`; SNS: 400 `Throttling`; Scheduler: 500
  `InternalServerException`. None of them sends or changes anything.

Each fault has its own rate; `GET /_faults` answers the rates and how many of each were
injected, `POST /_faults` with a JSON object of rates changes them. Draws come from a seeded
generator, so a run's mix is repeatable in distribution. Requests without an AWS signature
(`/moto-api/...`) pass through untouched.

Usage: aws_fault_proxy.py PORT UPSTREAM_URL [RATES_JSON]
"""

import http.client
import json
import os
import random
import re
import sys
import threading
import time
import urllib.parse
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_RATES = {
    "dynamodb.transaction_conflict": 0.0,
    "dynamodb.throttle": 0.0,
    "dynamodb.internal_error": 0.0,
    "dynamodb.unprocessed": 0.0,
    "sqs.batch_failed": 0.0,
    "sqs.internal_error": 0.0,
    "sqs.duplicate": 0.0,
    "ses.throttle": 0.0,
    # SES paused the account's sending (a bounce or complaint rate too high).
    "ses.paused": 0.0,
    "sns.throttle": 0.0,
    "scheduler.internal_error": 0.0,
    # An UpdateSchedule that meets its schedule just fired (and deleted itself): the proxy
    # deletes the schedule, then forwards the update, and lists the name under "raced" so the
    # test can deliver that fire.
    "scheduler.update_races_fire": 0.0,
    # Not faults but a provider's pace: milliseconds each SES send takes.
    "ses.delay_ms": 0,
}

RATES = dict(DEFAULT_RATES)
INJECTED = defaultdict(int)
# Every call that came in, by "service.Operation": what the SDK clients really sent (retries
# included), to pin the simulated benchmark's call pattern to the adapters.
CALLS = defaultdict(int)
LOCK = threading.Lock()
RNG = random.Random(20261122)
# Messages received before, per queue URL, for duplicate deliveries.
RECEIVED = defaultdict(lambda: deque(maxlen=50))
RACED = []
UPSTREAM = None
LOCAL = threading.local()
LOG = bool(os.environ.get("FAULT_PROXY_LOG"))


def draw(fault):
    with LOCK:
        hit = RNG.random() < RATES.get(fault, 0.0)
        if hit:
            INJECTED[fault] += 1
        return hit


def part(items, fault):
    """Splits items into (kept, left): each is left with the fault's rate, never all of them."""
    kept, left = [], []
    with LOCK:
        rate = RATES.get(fault, 0.0)
        for item in items:
            (left if RNG.random() < rate else kept).append(item)
        if not kept and left:
            kept.append(left.pop())
        if left:
            INJECTED[fault] += 1
    return kept, left


def service_of(headers):
    m = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", headers.get("authorization", ""))
    return m.group(1) if m else None


def upstream():
    conn = getattr(LOCAL, "conn", None)
    if conn is None:
        u = urllib.parse.urlparse(UPSTREAM)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        LOCAL.conn = conn
    return conn


def forward(method, path, headers, body):
    for attempt in range(2):
        conn = upstream()
        try:
            hdrs = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")}
            hdrs["Content-Length"] = str(len(body))
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in ("content-length", "connection", "transfer-encoding")], data
        except (http.client.HTTPException, OSError):
            conn.close()
            LOCAL.conn = None
            if attempt == 1:
                raise
    raise RuntimeError("unreachable")


def json_error(status, type_, message, extra=None, content_type="application/x-amz-json-1.0"):
    body = {"__type": type_, "message": message}
    body.update(extra or {})
    headers = [("Content-Type", content_type), ("x-amzn-RequestId", "fault-proxy")]
    return status, headers, json.dumps(body).encode()


def dynamodb(op, headers, body):
    prefix = "com.amazonaws.dynamodb.v20120810#"
    if draw("dynamodb.internal_error"):
        return json_error(500, prefix + "InternalServerError", "Internal server error (injected)")
    if draw("dynamodb.throttle"):
        kind = RNG.choice(["ThrottlingException", "ProvisionedThroughputExceededException"])
        return json_error(400, prefix + kind, "Throughput exceeds the current capacity for one or more partitions (injected)")
    if op == "TransactWriteItems" and draw("dynamodb.transaction_conflict"):
        request = json.loads(body)
        items = request.get("TransactItems", [])
        reasons = [{"Code": "None"} for _ in items]
        reasons[RNG.randrange(len(items))] = {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item (injected)"}
        codes = ", ".join(r["Code"] for r in reasons)
        return json_error(
            400,
            prefix + "TransactionCanceledException",
            f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
            {"CancellationReasons": reasons},
        )
    if op == "BatchWriteItem":
        request = json.loads(body)
        left = {}
        for table, writes in request["RequestItems"].items():
            kept, rest = part(writes, "dynamodb.unprocessed")
            request["RequestItems"][table] = kept
            if rest:
                left[table] = rest
        status, hdrs, data = forward("POST", "/", headers, json.dumps(request).encode())
        if status == 200 and left:
            answer = json.loads(data)
            unprocessed = answer.setdefault("UnprocessedItems", {})
            for table, rest in left.items():
                unprocessed.setdefault(table, []).extend(rest)
            data = json.dumps(answer).encode()
        return status, hdrs, data
    if op == "BatchGetItem":
        request = json.loads(body)
        left = {}
        for table, spec in request["RequestItems"].items():
            kept, rest = part(spec["Keys"], "dynamodb.unprocessed")
            spec["Keys"] = kept
            if rest:
                left[table] = dict(spec, Keys=rest)
        status, hdrs, data = forward("POST", "/", headers, json.dumps(request).encode())
        if status == 200 and left:
            answer = json.loads(data)
            unprocessed = answer.setdefault("UnprocessedKeys", {})
            for table, spec in left.items():
                if table in unprocessed:
                    unprocessed[table]["Keys"].extend(spec["Keys"])
                else:
                    unprocessed[table] = spec
            data = json.dumps(answer).encode()
        return status, hdrs, data
    return None


def sqs(op, headers, body):
    if draw("sqs.internal_error"):
        status, hdrs, data = json_error(500, "com.amazonaws.sqs#InternalError", "We encountered an internal error. Please try again. (injected)")
        hdrs.append(("x-amzn-query-error", "InternalError;Receiver"))
        return status, hdrs, data
    if op == "SendMessageBatch":
        request = json.loads(body)
        kept, left = part(request["Entries"], "sqs.batch_failed")
        request["Entries"] = kept
        status, hdrs, data = forward("POST", "/", headers, json.dumps(request).encode())
        if status == 200 and left:
            answer = json.loads(data)
            answer.setdefault("Failed", []).extend(
                {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "injected"} for e in left
            )
            data = json.dumps(answer).encode()
        return status, hdrs, data
    if op == "ReceiveMessage":
        request = json.loads(body)
        url = request.get("QueueUrl", "")
        status, hdrs, data = forward("POST", "/", headers, body)
        if status != 200:
            return status, hdrs, data
        answer = json.loads(data)
        messages = answer.get("Messages", [])
        with LOCK:
            seen = RECEIVED[url]
            again = None
            if seen and len(messages) < request.get("MaxNumberOfMessages", 1) and RNG.random() < RATES["sqs.duplicate"]:
                again = RNG.choice(list(seen))
                if any(m["MessageId"] == again["MessageId"] for m in messages):
                    again = None
            seen.extend(messages)
            if again is not None:
                INJECTED["sqs.duplicate"] += 1
                messages.append(again)
        if messages:
            answer["Messages"] = messages
        return status, hdrs, json.dumps(answer).encode()
    return None


def rest_json_error(status, kind, message):
    headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", kind), ("x-amzn-RequestId", "fault-proxy")]
    return status, headers, json.dumps({"message": message, "Message": message}).encode()


def operation_of(service, method, path, headers, body):
    target = headers.get("x-amz-target", "")
    if target:
        return target.split(".")[-1]
    m = re.search(rb"Action=(\w+)", body)
    if m:
        return m.group(1).decode()
    if service == "ses" and path.startswith("/v2/email/outbound-emails"):
        return "SendEmail"
    if service == "scheduler" and path.startswith("/schedules/"):
        return {"POST": "CreateSchedule", "PUT": "UpdateSchedule", "DELETE": "DeleteSchedule", "GET": "GetSchedule"}.get(method, method)
    return f"{method} {path.split('?')[0]}"


def fault_for(method, path, headers, body):
    service = service_of(headers)
    with LOCK:
        CALLS[f"{service}.{operation_of(service, method, path, headers, body)}"] += 1
    if LOG:
        print(f"fault proxy: {service} {method} {path} {headers.get('x-amz-target', '')}", file=sys.stderr, flush=True)
    target = headers.get("x-amz-target", "")
    op = target.split(".")[-1] if target else ""
    if service == "dynamodb":
        return dynamodb(op, headers, body)
    if service == "sqs":
        return sqs(op, headers, body)
    if service == "ses" and method == "POST" and path.startswith("/v2/email/outbound-emails"):
        delay = RATES.get("ses.delay_ms", 0)
        if delay:
            time.sleep(delay * (0.5 + RNG.random()) / 1000)
        if draw("ses.paused"):
            return rest_json_error(400, "SendingPausedException", "Email sending is disabled for your entire Amazon SES account. (injected)")
        if draw("ses.throttle"):
            return rest_json_error(429, "TooManyRequestsException", "Maximum sending rate exceeded. (injected)")
    if service == "sns" and b"Action=Publish" in body and draw("sns.throttle"):
        xml = (
            "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error><Type>Sender</Type>"
            "<Code>Throttling</Code><Message>Rate exceeded (injected)</Message></Error>"
            "<RequestId>fault-proxy</RequestId></ErrorResponse>"
        )
        return 400, [("Content-Type", "text/xml")], xml.encode()
    if service == "scheduler" and draw("scheduler.internal_error"):
        return rest_json_error(500, "InternalServerException", "Unexpected error (injected)")
    if service == "scheduler" and method == "PUT" and path.startswith("/schedules/") and draw("scheduler.update_races_fire"):
        name = urllib.parse.unquote(path[len("/schedules/"):].split("?")[0])
        group = json.loads(body or b"{}").get("GroupName", "default")
        forward("DELETE", f"/schedules/{urllib.parse.quote(name)}?groupName={urllib.parse.quote(group)}", headers, b"")
        with LOCK:
            RACED.append(name)
        return None
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self, status, headers, data):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/_faults"):
            if self.command == "POST":
                with LOCK:
                    RATES.update(json.loads(body or b"{}"))
            with LOCK:
                answer = {"rates": RATES, "injected": dict(INJECTED), "raced": list(RACED), "calls": dict(CALLS)}
                data = json.dumps(answer).encode()
            return self._answer(200, [("Content-Type", "application/json")], data)
        # HTTP header names are case-insensitive; the SDK sends them in lower case.
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            result = fault_for(self.command, self.path, headers, body)
            if result is None:
                result = forward(self.command, self.path, headers, body)
        except Exception as e:  # a proxy bug must show, not hang the client
            result = (502, [("Content-Type", "text/plain")], f"fault proxy: {e!r}".encode())
        self._answer(*result)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


def main():
    global UPSTREAM
    port = int(sys.argv[1])
    UPSTREAM = sys.argv[2]
    if len(sys.argv) > 3:
        RATES.update(json.loads(sys.argv[3]))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
