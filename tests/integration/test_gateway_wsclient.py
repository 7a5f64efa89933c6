"""Self-test of the raw WebSocket client (wsclient.py) against RFC 6455's own examples,
so a wrong byte in the test tool can never pass for a gateway bug. No processes needed."""
import struct
import unittest

import wsclient as w


class FrameCodecTest(unittest.TestCase):

    def test_accept_key_rfc6455_section_1_3(self):
        self.assertEqual(w.accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")

    def test_rfc6455_section_5_7_examples(self):
        self.assertEqual(w.encode_frame(w.OP_TEXT, b"Hello", mask=False),
                         bytes([0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]))
        masked = bytes([0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58])
        self.assertEqual(w.encode_frame(w.OP_TEXT, b"Hello", mask_key=bytes([0x37, 0xfa, 0x21, 0x3d])),
                         masked)
        f, n = w.parse_frame(masked)
        self.assertEqual((tuple(f), f.masked, n), ((w.OP_TEXT, True, b"Hello"), True, len(masked)))
        self.assertEqual(w.encode_frame(w.OP_TEXT, b"Hel", fin=False, mask=False),
                         bytes([0x01, 0x03, 0x48, 0x65, 0x6c]))
        self.assertEqual(w.encode_frame(w.OP_CONT, b"lo", mask=False), bytes([0x80, 0x02, 0x6c, 0x6f]))
        self.assertEqual(w.encode_frame(w.OP_PING, b"Hello", mask=False), b"\x89\x05Hello")
        self.assertEqual(w.encode_frame(w.OP_BINARY, b"\0" * 256, mask=False)[:4],
                         bytes([0x82, 0x7E, 0x01, 0x00]))
        self.assertEqual(w.encode_frame(w.OP_BINARY, b"\0" * 65536, mask=False)[:10],
                         bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]))

    def test_parse_needs_whole_frame_and_roundtrips_lengths(self):
        for n in (0, 1, 125, 126, 127, 65535, 65536, 70000):
            data = bytes(i & 0xFF for i in range(n))
            for mask in (False, True):
                fr = w.encode_frame(w.OP_BINARY, data, mask=mask)
                self.assertEqual(w.parse_frame(fr[:-1] if fr else fr), (None, 0))
                f, used = w.parse_frame(fr + b"\x81\x00")
                self.assertEqual((f.payload, used, f.raw), (data, len(fr), fr))

    def test_close_payload(self):
        self.assertEqual(w.close_payload(1008, "slow consumer"), b"\x03\xf0slow consumer")
        self.assertEqual(w.parse_close_payload(b"\x03\xe8bye"), (1000, b"bye"))
        self.assertEqual(w.parse_close_payload(b""), (None, b""))

    def test_server_frame_problems(self):
        def prob(fr):
            return w.server_frame_problem(w.parse_frame(fr)[0])
        self.assertIsNone(prob(w.encode_frame(w.OP_TEXT, b"ok", mask=False)))
        self.assertIsNone(prob(w.encode_frame(w.OP_CLOSE, w.close_payload(1001, "bye"), mask=False)))
        self.assertIn("masked", prob(w.encode_frame(w.OP_TEXT, b"x")))
        self.assertIn("RSV", prob(w.encode_frame(w.OP_TEXT, b"x", mask=False, rsv=1)))
        self.assertIn("reserved opcode", prob(w.encode_frame(0xB, b"", mask=False)))
        self.assertIn("fragmented control", prob(w.encode_frame(w.OP_PING, b"", fin=False, mask=False)))
        self.assertIn("125", prob(w.encode_frame(w.OP_PONG, b"x" * 126, mask=False)))
        self.assertIn("1 byte", prob(w.encode_frame(w.OP_CLOSE, b"\x03", mask=False)))
        self.assertIn("1005", prob(w.encode_frame(w.OP_CLOSE, struct.pack("!H", 1005), mask=False)))
        self.assertIn("UTF-8", prob(w.encode_frame(w.OP_CLOSE, b"\x03\xe8\xc3", mask=False)))
        self.assertIn("minimal", prob(w.encode_frame(w.OP_TEXT, b"x", mask=False, length_form="64")))

    def test_metrics_parser(self):
        import harness
        m = harness.parse_metrics('# HELP a x\n# TYPE a gauge\na 3\nb{shard="0"} 1.5\n'
                                  'b{shard="1"} 2\nc 7 1700000000\n')
        self.assertEqual(m, {"a": 3.0, 'b{shard="0"}': 1.5, 'b{shard="1"}': 2.0, "c": 7.0})


if __name__ == "__main__":
    unittest.main()
