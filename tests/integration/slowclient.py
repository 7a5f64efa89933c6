"""A tiny WebSocket client process for fault tests (python3 stdlib only).

    python3 slowclient.py HOST PORT CHANNEL[,CHANNEL...]

Connects to ws://HOST:PORT/ws?channels=..., waits for the subscription ack, prints
"ready" on stdout (flushed), then keeps reading: it answers every WebSocket PING with a
PONG (wsclient's auto_pong) and discards batches. A test SIGSTOPs it to make a peer that
is connected but silent (its kernel still ACKs TCP, the process answers nothing), then
SIGCONTs and kills it by PID. When the gateway closes the connection it prints
"closed CODE" and exits 0.
"""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsclient  # noqa: E402


def main():
    host, port, channels = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    c = wsclient.WSClient.connect(host, port, "/ws?channels=" + channels, timeout=10)
    ack = c.recv_json(10)
    if ack != {"op": "subscribed", "channels": channels.split(",")}:
        print("bad ack %r" % (ack,), flush=True)
        return 2
    print("ready", flush=True)
    while True:
        try:
            c.recv_message(3600)
        except socket.timeout:
            continue
        except wsclient.WSClosed as e:
            print("closed %r" % (e.code,), flush=True)
            return 0
        except OSError as e:
            print("error %r" % (e,), flush=True)
            return 0


if __name__ == "__main__":
    sys.exit(main())
