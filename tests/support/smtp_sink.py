"""A real SMTP server on loopback for the end-to-end tests (aiosmtpd).

Each accepted message is appended as one JSON line to --out:
{"mail_from", "rcpt_tos", "data", "received_at_ms"}.

Faults, for the delivery-guarantee tests: --fail-4xx-rate answers 451 to that share of
messages (a transient error), --throttle-rate answers 421 "too many" to that share (throttling),
--reject-file PATH answers 550 to the recipients listed in that file, one per line (a permanent
error); the file is read again for each recipient, so a test can empty it to "fix" the mailboxes.
"""

import argparse
import asyncio
import json
import random
import signal
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out, fail_rate, throttle_rate, reject_file, seed):
        self.out = open(out, "a", buffering=1)
        self.fail_rate = fail_rate
        self.throttle_rate = throttle_rate
        self.reject_file = reject_file
        self.random = random.Random(seed)

    def rejected(self):
        if not self.reject_file:
            return set()
        with open(self.reject_file) as f:
            return {line.strip().lower() for line in f if line.strip()}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.rejected():
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        draw = self.random.random()
        if draw < self.fail_rate:
            return "451 4.3.0 try again later"
        if draw < self.fail_rate + self.throttle_rate:
            return "421 4.7.0 too many messages, slow down"
        line = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            "received_at_ms": int(time.time() * 1000),
        }
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()
        return "250 OK queued"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--fail-4xx-rate", type=float, default=0.0)
    p.add_argument("--throttle-rate", type=float, default=0.0)
    p.add_argument("--reject-file")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    controller = Controller(
        Sink(a.out, a.fail_4xx_rate, a.throttle_rate, a.reject_file, a.seed),
        hostname="127.0.0.1",
        port=a.port,
        data_size_limit=10 * 1024 * 1024,
    )
    controller.start()
    print("ready", flush=True)
    loop = asyncio.new_event_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    loop.run_until_complete(stop)
    controller.stop()


if __name__ == "__main__":
    main()
