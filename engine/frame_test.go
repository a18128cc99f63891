package engine

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

func TestFrameHeader(t *testing.T) {
	mask := [4]byte{1, 2, 3, 4}
	tests := []struct {
		name string
		in   []byte
		want ws.Header
		size int
	}{
		{"unmasked 7-bit", []byte{0x81, 5}, ws.Header{Fin: true, OpCode: ws.OpText, Length: 5}, 2},
		{"masked empty", []byte{0x81, 0x80, 1, 2, 3, 4}, ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Mask: mask}, 6},
		{"masked 125", []byte{0x82, 0x80 | 125, 1, 2, 3, 4}, ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: mask, Length: 125}, 6},
		{"masked 16-bit 126", []byte{0x81, 0x80 | 126, 0, 126, 1, 2, 3, 4}, ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Mask: mask, Length: 126}, 8},
		{"masked 16-bit 65535", []byte{0x01, 0x80 | 126, 0xff, 0xff, 1, 2, 3, 4}, ws.Header{OpCode: ws.OpText, Masked: true, Mask: mask, Length: 65535}, 8},
		{"unmasked 16-bit", []byte{0x80, 126, 0x01, 0x00}, ws.Header{Fin: true, OpCode: ws.OpContinuation, Length: 256}, 4},
		{"masked 64-bit", []byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}, ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Mask: mask, Length: 65536}, 14},
		{"64-bit with MSB set", []byte{0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Mask: mask, Length: -1 << 63}, 14},
		{"rsv bits and close", []byte{0xf8, 0x80, 1, 2, 3, 4}, ws.Header{Fin: true, Rsv: 7, OpCode: ws.OpClose, Masked: true, Mask: mask}, 6},
		{"reserved opcode", []byte{0x83, 0x80, 1, 2, 3, 4}, ws.Header{Fin: true, OpCode: 3, Masked: true, Mask: mask}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Extra bytes after the header must be ignored.
			in := append(append([]byte(nil), tt.in...), 0xAA, 0xBB)
			h, size, ok := frameHeader(in)
			if !ok {
				t.Fatalf("frameHeader(% x): ok = false", tt.in)
			}
			if h != tt.want || size != tt.size {
				t.Fatalf("frameHeader(% x) = %+v, %d; want %+v, %d", tt.in, h, size, tt.want, tt.size)
			}
			// Every proper prefix is incomplete.
			for n := range len(tt.in) {
				if _, _, ok := frameHeader(tt.in[:n]); ok {
					t.Fatalf("frameHeader of a %d-byte prefix: ok = true", n)
				}
			}
			// gobwas/ws reads the same header.
			wh, err := ws.ReadHeader(bytes.NewReader(tt.in))
			if err == nil && wh != h {
				t.Errorf("ws.ReadHeader = %+v, frameHeader = %+v", wh, h)
			}
		})
	}
}

// TestFrameHeaderCompiled parses frames built by gobwas/ws.
func TestFrameHeaderCompiled(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 70000} {
		f := ws.MaskFrameWith(ws.NewTextFrame(bytes.Repeat([]byte{'x'}, n)), [4]byte{9, 8, 7, 6})
		b := ws.MustCompileFrame(f)
		h, size, ok := frameHeader(b)
		if !ok || h != f.Header || size+n != len(b) {
			t.Errorf("len %d: frameHeader = %+v, %d, %v; want %+v, %d", n, h, size, ok, f.Header, len(b)-n)
		}
	}
}

func TestCheckHeader(t *testing.T) {
	const maxMsg = 1 << 10
	masked := func(h ws.Header) ws.Header { h.Masked = true; h.Mask = [4]byte{1, 2, 3, 4}; return h }
	tests := []struct {
		name string
		h    ws.Header
		want uint16
	}{
		{"text", masked(ws.Header{Fin: true, OpCode: ws.OpText, Length: 10}), 0},
		{"empty text", masked(ws.Header{Fin: true, OpCode: ws.OpText}), 0},
		{"binary passes the header check", masked(ws.Header{Fin: true, OpCode: ws.OpBinary, Length: 10}), 0},
		{"first fragment", masked(ws.Header{OpCode: ws.OpText, Length: 10}), 0},
		{"continuation", masked(ws.Header{OpCode: ws.OpContinuation, Length: 10}), 0},
		{"text at max", masked(ws.Header{Fin: true, OpCode: ws.OpText, Length: maxMsg}), 0},
		{"ping 125", masked(ws.Header{Fin: true, OpCode: ws.OpPing, Length: 125}), 0},
		{"pong", masked(ws.Header{Fin: true, OpCode: ws.OpPong}), 0},
		{"close", masked(ws.Header{Fin: true, OpCode: ws.OpClose, Length: 2}), 0},

		{"rsv1", masked(ws.Header{Fin: true, Rsv: 4, OpCode: ws.OpText}), CloseProtocol},
		{"rsv3", masked(ws.Header{Fin: true, Rsv: 1, OpCode: ws.OpText}), CloseProtocol},
		{"reserved data opcode", masked(ws.Header{Fin: true, OpCode: 3}), CloseProtocol},
		{"reserved control opcode", masked(ws.Header{Fin: true, OpCode: 0xB}), CloseProtocol},
		{"unmasked", ws.Header{Fin: true, OpCode: ws.OpText, Length: 1}, CloseProtocol},
		{"negative length", masked(ws.Header{Fin: true, OpCode: ws.OpText, Length: -1}), CloseProtocol},
		{"ping 126", masked(ws.Header{Fin: true, OpCode: ws.OpPing, Length: 126}), CloseProtocol},
		{"close 126", masked(ws.Header{Fin: true, OpCode: ws.OpClose, Length: 126}), CloseProtocol},
		{"fragmented ping", masked(ws.Header{OpCode: ws.OpPing}), CloseProtocol},
		{"fragmented close", masked(ws.Header{OpCode: ws.OpClose}), CloseProtocol},
		{"over max", masked(ws.Header{Fin: true, OpCode: ws.OpText, Length: maxMsg + 1}), CloseTooBig},
		{"huge continuation", masked(ws.Header{OpCode: ws.OpContinuation, Length: 1 << 40}), CloseTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, reason := checkHeader(tt.h, maxMsg)
			if code != tt.want {
				t.Fatalf("checkHeader(%+v) = %d %q, want %d", tt.h, code, reason, tt.want)
			}
			if (code == 0) != (reason == "") {
				t.Fatalf("checkHeader(%+v) = %d with reason %q", tt.h, code, reason)
			}
			if len(reason) > 123 {
				t.Fatalf("reason of %d bytes does not fit a close frame", len(reason))
			}
		})
	}
}

func TestCloseReply(t *testing.T) {
	body := func(code uint16, reason string) []byte {
		return ws.NewCloseFrameBody(ws.StatusCode(code), reason)
	}
	tests := []struct {
		name    string
		payload []byte
		want    uint16
	}{
		{"empty", nil, CloseNormal},
		{"one byte", []byte{0x03}, CloseProtocol},
		{"1000", body(1000, ""), 1000},
		{"1001 with reason", body(1001, "bye"), 1001},
		{"1003", body(1003, ""), 1003},
		{"1004 reserved", body(1004, ""), CloseProtocol},
		{"1005 must not be sent", body(1005, ""), CloseProtocol},
		{"1006 must not be sent", body(1006, ""), CloseProtocol},
		{"1007", body(1007, ""), 1007},
		{"1014", body(1014, ""), 1014},
		{"1015 must not be sent", body(1015, ""), CloseProtocol},
		{"999", body(999, ""), CloseProtocol},
		{"0", body(0, ""), CloseProtocol},
		{"2000", body(2000, ""), CloseProtocol},
		{"2999", body(2999, ""), CloseProtocol},
		{"3000", body(3000, ""), 3000},
		{"4999", body(4999, "x"), 4999},
		{"5000", body(5000, ""), CloseProtocol},
		{"utf-8 reason", body(1000, "再见"), 1000},
		{"invalid utf-8 reason", append(body(1000, ""), 0xff), CloseInvalidData},
		{"reason cut inside a rune", append(body(1000, ""), 0xe5, 0x86), CloseInvalidData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, reason := closeReply(tt.payload)
			if code != tt.want {
				t.Fatalf("closeReply(% x) = %d %q, want %d", tt.payload, code, reason, tt.want)
			}
		})
	}
}

func TestTokenFromURI(t *testing.T) {
	tests := []struct {
		name string
		uri  string
		want string
	}{
		{"only token", "/?token=abc", "abc"},
		{"among others", "/x?a=1&token=abc&b=2", "abc"},
		{"last", "/x?a=1&token=abc", "abc"},
		{"percent-encoded", "/?token=a%2Bb%3D%26c", "a+b=&c"},
		{"plus is a space", "/?token=a+b", "a b"},
		{"bad escape", "/?token=a%zz", ""},
		{"missing", "/?a=1&b=2", ""},
		{"no query", "/ws", ""},
		{"empty", "", ""},
		{"empty value", "/?token=", ""},
		{"no equals", "/?token", ""},
		{"prefix name is not the name", "/?xtoken=abc&tokens=def", ""},
		{"first wins", "/?token=one&token=two", "one"},
		{"fragment", "/?token=abc#frag", "abc"},
		{"fragment before token", "/?a=1#token=abc", ""},
		{"empty pairs", "/?&&token=abc&", "abc"},
		{"absolute uri", "ws://host:8889/chat?token=abc", "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tokenFromURI([]byte(tt.uri)); got != tt.want {
				t.Fatalf("tokenFromURI(%q) = %q, want %q", tt.uri, got, tt.want)
			}
		})
	}
}

// upgradeRequest is RFC 6455 §1.3's sample handshake, with a token.
func upgradeRequest(uri string) string {
	return "GET " + uri + " HTTP/1.1\r\n" +
		"Host: server.example.com\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Origin: http://example.com\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"\r\n"
}

func TestParseUpgrade(t *testing.T) {
	tests := []struct {
		name       string
		req        string
		wantErr    bool
		wantStatus string
		wantToken  string
	}{
		{"valid", upgradeRequest("/?token=abc"), false, "HTTP/1.1 101", "abc"},
		{"valid without token", upgradeRequest("/chat"), false, "HTTP/1.1 101", ""},
		{"valid escaped token", upgradeRequest("/?x=1&token=a%20b"), false, "HTTP/1.1 101", "a b"},
		{"header case and lists", "GET /?token=t HTTP/1.1\r\nhost: h\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", false, "HTTP/1.1 101", "t"},
		{"plain GET", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", true, "HTTP/1.1 400", ""},
		{"garbage request line", "HELLO\r\n\r\n", true, "HTTP/1.1 400", ""},
		{"binary garbage", "\x16\x03\x01\x02\x00\r\n\r\n", true, "HTTP/1.1 400", ""},
		{"empty", "", true, "HTTP/1.1 400", ""},
		{"POST", strings.Replace(upgradeRequest("/"), "GET", "POST", 1), true, "HTTP/1.1 4", ""},
		{"HTTP/1.0", strings.Replace(upgradeRequest("/"), "HTTP/1.1", "HTTP/1.0", 1), true, "HTTP/1.1 4", ""},
		{"missing key", strings.Replace(upgradeRequest("/"), "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 1), true, "HTTP/1.1 400", ""},
		{"bad key", strings.Replace(upgradeRequest("/"), "dGhlIHNhbXBsZSBub25jZQ==", "short", 1), true, "HTTP/1.1 400", ""},
		{"old version", strings.Replace(upgradeRequest("/"), "Version: 13", "Version: 8", 1), true, "HTTP/1.1 4", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, token, _, err := parseUpgrade([]byte(tt.req))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseUpgrade err = %v, wantErr %v; response:\n%s", err, tt.wantErr, resp)
			}
			if !bytes.HasPrefix(resp, []byte(tt.wantStatus)) {
				t.Fatalf("response does not start with %q:\n%s", tt.wantStatus, resp)
			}
			if !bytes.HasSuffix(resp, []byte("\r\n\r\n")) && !bytes.Contains(resp, []byte("\r\n\r\n")) {
				t.Fatalf("response has no end of header block:\n%q", resp)
			}
			if token != tt.wantToken {
				t.Errorf("token = %q, want %q", token, tt.wantToken)
			}
			if !tt.wantErr && !bytes.Contains(resp, []byte("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n")) {
				t.Errorf("response lacks the RFC 6455 sample accept key:\n%s", resp)
			}
		})
	}
}

// PROTOCOL §7.2: ack=1 in the upgrade's query makes the connection
// acknowledging; anything else does not.
func TestSection7_2_AckFromURI(t *testing.T) {
	for uri, want := range map[string]bool{
		"/?token=t&ack=1": true, "/?ack=1&token=t": true, "/?ack=1#x": true,
		"/?token=t": false, "/?ack=0": false, "/?ack=10": false, "/?xack=1": false, "/ack=1": false,
	} {
		if got := ackFromURI([]byte(uri)); got != want {
			t.Errorf("ackFromURI(%q) = %v, want %v", uri, got, want)
		}
	}
	if got := tokenFromURI([]byte("/?ack=1&token=a%2Bb")); got != "a+b" {
		t.Errorf("token %q", got)
	}
}
