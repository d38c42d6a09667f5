"""The raw capacity of an SMTP server: send N small messages on C connections, print messages/s."""

import argparse
import smtplib
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--messages", type=int, default=10000)
p.add_argument("--connections", type=int, default=16)
a = p.parse_args()
msg = "From: bench@example.com\r\nTo: raw@example.com\r\nSubject: Bench\r\n\r\nHello\r\n"
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
