"""Packet capture on a local node's uplink, for tests that check what is on the wire.

An AF_PACKET socket opened inside the node's namespace (the socket stays there once
made) sees every frame crossing the node's ``eth0``; a thread reads it until
stopped and keeps the TCP segments with payload.  Parsing is a pure function.
"""

from __future__ import annotations

import socket
import struct
import threading

from ...provider import NodeCapture, Segment
from . import netns

ETH_P_ALL = 0x0003


def parse_frame(frame: bytes) -> Segment | None:
    """The TCP payload of an Ethernet/IPv4 frame, or None for anything else."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    if ip[9] != 6:
        return None
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    tcp = ip[ihl:total]
    if len(tcp) < 20:
        return None
    sport, dport, seq = struct.unpack("!HHI", tcp[:8])
    payload = tcp[(tcp[12] >> 4) * 4:]
    if not payload:
        return None
    return Segment(socket.inet_ntoa(ip[12:16]), sport, socket.inet_ntoa(ip[16:20]), dport,
                   bytes(payload), seq)


class LocalNodeCapture(NodeCapture):
    def __init__(self, namespace: str, interface: str = "eth0") -> None:
        with netns.entered(namespace):
            # Only ETH_P_ALL sees outgoing frames as well as incoming ones.
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                       socket.ntohs(ETH_P_ALL))
        self._sock.bind((interface, 0))
        self._sock.settimeout(0.1)
        self._segments: list[Segment] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True,
                                        name=f"capture-{namespace}")
        self._thread.start()

    def _read(self) -> None:
        while not self._stopping.is_set():
            try:
                frame = self._sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            seg = parse_frame(frame)
            if seg is not None:
                self._segments.append(seg)

    def stop(self) -> list[Segment]:
        if not self._stopping.is_set():
            self._stopping.set()
            self._thread.join(5)
            self._sock.close()
        return list(self._segments)
