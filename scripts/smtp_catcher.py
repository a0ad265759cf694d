#!/usr/bin/python3
"""A local SMTP catcher for tests (Debian's python3-aiosmtpd).

Usage: smtp_catcher.py PORT DIRECTORY
Every accepted message is written to DIRECTORY as a .eml file. Recipients
whose address contains "refuse" are refused with 550, so tests can exercise
retries and the dead-letter stream.
"""
import asyncio
import os
import signal
import sys
import time

from aiosmtpd.controller import Controller


class Catcher:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if "refuse" in address:
            return "550 5.1.1 mailbox unavailable (the test catcher refuses it)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        name = os.path.join(self.directory, f"{time.time_ns()}-{self.count}")
        with open(name + ".tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(name + ".tmp", name + ".eml")
        return "250 Message accepted for delivery"


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    os.makedirs(directory, exist_ok=True)
    controller = Controller(Catcher(directory), hostname="127.0.0.1", port=port)
    controller.start()
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.run_until_complete(stop.wait())
    controller.stop()


if __name__ == "__main__":
    main()
