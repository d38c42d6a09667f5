"""The raw capacity of an SMTP server: send N messages (small ones, or the one in --message-file) on C
connections, print messages/s."""

import argparse
import smtplib
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--messages", type=int, default=10000)
p.add_argument("--connections", type=int, default=16)
p.add_argument("--message-file", help="send this message (e.g. one the server received) instead of a tiny one")
a = p.parse_args()
msg = "From: bench@example.com\r\nTo: raw@example.com\r\nSubject: Bench\r\n\r\nHello\r\n"
if a.message_file:
    with open(a.message_file, "rb") as f:
        msg = f.read()
per = a.messages // a.connections


def blast():
    s = smtplib.SMTP("127.0.0.1", a.port)
    for _ in range(per):
        s.sendmail("bench@example.com", ["raw@example.com"], msg)
    s.quit()


threads = [threading.Thread(target=blast) for _ in range(a.connections)]
start = time.time()
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"{per * a.connections / (time.time() - start):.0f}")
