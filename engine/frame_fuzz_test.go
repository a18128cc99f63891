package engine

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/gobwas/ws"
)

// fuzzMaxMessage is the message limit of the fuzzed frame walks: small, so
// that 16-bit lengths reach the 1009 path.
const fuzzMaxMessage = 1 << 10

var seedMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// clientFrame compiles a masked client frame. The mask is fixed so that
// seeds are the same on every run.
func clientFrame(tb testing.TB, f ws.Frame) []byte {
	tb.Helper()
	b, err := ws.CompileFrame(ws.MaskFrameWith(f, seedMask))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// frameSeeds are real client frame streams.
func frameSeeds(tb testing.TB) [][]byte {
	text := func(s string) []byte { return clientFrame(tb, ws.NewTextFrame([]byte(s))) }
	fragments := slices.Concat(
		clientFrame(tb, ws.NewFrame(ws.OpText, false, []byte(`{"cmd":11,"content":`))),
		clientFrame(tb, ws.NewFrame(ws.OpContinuation, false, []byte(`"你好`))),
		clientFrame(tb, ws.NewFrame(ws.OpContinuation, true, []byte(`"}`))),
	)
	ping := clientFrame(tb, ws.NewPingFrame([]byte("p")))
	pong := clientFrame(tb, ws.NewPongFrame(nil))
	closeFrame := clientFrame(tb, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")))
	closeEmpty := clientFrame(tb, ws.NewCloseFrame(nil))
	big := clientFrame(tb, ws.NewTextFrame(bytes.Repeat([]byte("a"), 300)))
	tooBig := clientFrame(tb, ws.NewTextFrame(bytes.Repeat([]byte("a"), fuzzMaxMessage+1)))
	unmasked := ws.MustCompileFrame(ws.NewTextFrame([]byte(`{"cmd":13}`)))
	rsv := clientFrame(tb, ws.Frame{Header: ws.Header{Fin: true, Rsv: 4, OpCode: ws.OpText, Length: 1}, Payload: []byte("x")})
	hb := text(`{"cmd":13,"hbbyte":"-127"}`)
	return [][]byte{
		hb,
		slices.Concat(hb, hb, hb),
		fragments,
		slices.Concat(hb, fragments, ping, hb),
		slices.Concat(ping, pong, hb),
		slices.Concat(hb, closeFrame, hb),
		closeEmpty,
		slices.Concat(big, hb),
		tooBig,
		slices.Concat(hb, unmasked),
		slices.Concat(rsv, hb),
		clientFrame(tb, ws.NewFrame(ws.OpPing, false, nil)),
		clientFrame(tb, ws.NewCloseFrame([]byte{0x03})),
		hb[:len(hb)-3], // a partial frame
		{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},
		{},
	}
}

// FuzzFrameHeader: frameHeader and checkHeader never panic, the header
// size matches its length encoding, and frameHeader agrees with gobwas/ws.
func FuzzFrameHeader(f *testing.F) {
	for _, s := range frameSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, size, ok := frameHeader(b)
		wh, werr := ws.ReadHeader(bytes.NewReader(b))
		if !ok {
			if size != 0 {
				t.Fatalf("ok = false with size %d", size)
			}
			if werr == nil {
				t.Fatalf("frameHeader incomplete but ws.ReadHeader read %+v", wh)
			}
			if !errors.Is(werr, io.EOF) && !errors.Is(werr, io.ErrUnexpectedEOF) {
				t.Fatalf("frameHeader incomplete but ws.ReadHeader failed with %v", werr)
			}
			return
		}
		if size > ws.MaxHeaderSize || size > len(b) {
			t.Fatalf("size %d for %d input bytes", size, len(b))
		}
		want := 2
		switch b[1] & 0x7f {
		case 126:
			want = 4
		case 127:
			want = 10
		default:
			if h.Length != int64(b[1]&0x7f) {
				t.Fatalf("7-bit length %d decoded as %d", b[1]&0x7f, h.Length)
			}
		}
		if h.Masked {
			want += 4
		}
		if size != want {
			t.Fatalf("header size %d, want %d for % x", size, want, b[:2])
		}
		if werr == nil && wh != h {
			t.Fatalf("frameHeader = %+v, ws.ReadHeader = %+v", h, wh)
		}
		code, _ := checkHeader(h, DefaultMaxMessageSize)
		if werr != nil && code == 0 {
			t.Fatalf("ws.ReadHeader rejects %+v (%v) but checkHeader accepts it", h, werr)
		}
		if code == 0 && (h.Length < 0 || h.Length > DefaultMaxMessageSize || !h.Masked || h.Rsv != 0) {
			t.Fatalf("checkHeader accepted %+v", h)
		}
	})
}

// streamEvent is one step of a frame walk: a whole frame, unmasked, or the
// close status that ended the walk.
type streamEvent struct {
	op      ws.OpCode
	fin     bool
	payload string
	close   uint16 // checkHeader's status, or closeReply's for a CLOSE frame
}

// frameWalker walks a stream of client frames as conn.readFrames does:
// frameHeader, then checkHeader, then wait until the whole payload is
// buffered, then unmask it with ws.Cipher and consume the frame. Bytes of
// a partial frame stay buffered, untouched, until the next feed.
type frameWalker struct {
	buf    []byte // bytes not consumed yet (the inbound buffer)
	events []streamEvent
	done   bool // a close status ended the walk
}

// feed appends one read's worth of bytes and serves every whole frame.
func (w *frameWalker) feed(chunk []byte) {
	if w.done {
		return
	}
	w.buf = append(w.buf, chunk...)
	off := 0
	for !w.done {
		h, hsize, ok := frameHeader(w.buf[off:])
		if !ok {
			break
		}
		if code, _ := checkHeader(h, fuzzMaxMessage); code != 0 {
			w.events = append(w.events, streamEvent{close: code})
			w.done = true
			break
		}
		end := off + hsize + int(h.Length)
		if end > len(w.buf) {
			break
		}
		payload := w.buf[off+hsize : end]
		ws.Cipher(payload, h.Mask, 0)
		off = end
		ev := streamEvent{op: h.OpCode, fin: h.Fin, payload: string(payload)}
		if h.OpCode == ws.OpClose {
			ev.close, _ = closeReply(payload)
			w.done = true
		}
		w.events = append(w.events, ev)
	}
	w.buf = append(w.buf[:0], w.buf[off:]...) // Discard(off)
}

func walk(chunks ...[]byte) *frameWalker {
	w := new(frameWalker)
	for _, c := range chunks {
		w.feed(c)
	}
	return w
}

func sameWalk(t *testing.T, name string, got, want *frameWalker) {
	t.Helper()
	if !slices.Equal(got.events, want.events) {
		t.Fatalf("%s: events differ\n got %+v\nwant %+v", name, got.events, want.events)
	}
	if got.done != want.done || (!got.done && !bytes.Equal(got.buf, want.buf)) {
		t.Fatalf("%s: leftover differs: done %v/%v, % x vs % x", name, got.done, want.done, got.buf, want.buf)
	}
}

// FuzzFrameStream: a stream of frames walked whole, split in two reads at
// any point, or a byte at a time yields the same frames and close codes.
func FuzzFrameStream(f *testing.F) {
	for _, s := range frameSeeds(f) {
		f.Add(s, uint16(len(s)/2))
		f.Add(s, uint16(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		whole := walk(data)
		if !whole.done {
			// What is left is one incomplete frame.
			if h, hsize, ok := frameHeader(whole.buf); ok && int64(len(whole.buf)-hsize) >= h.Length {
				t.Fatalf("a whole frame was left unserved: %+v in % x", h, whole.buf)
			}
		}
		for _, ev := range whole.events {
			if len(ev.payload) > fuzzMaxMessage {
				t.Fatalf("served a frame of %d bytes over the limit", len(ev.payload))
			}
		}
		at := int(split) % (len(data) + 1)
		sameWalk(t, "split", walk(data[:at], data[at:]), whole)
		if len(data) <= 4<<10 {
			chunks := make([][]byte, len(data))
			for i := range data {
				chunks[i] = data[i : i+1]
			}
			sameWalk(t, "byte at a time", walk(chunks...), whole)
		}
	})
}

// TestFrameStreamSeeds runs the seeds through the walker and checks what
// they are known to hold, so the walker itself is tested.
func TestFrameStreamSeeds(t *testing.T) {
	seeds := frameSeeds(t)
	w := walk(seeds[3]) // heartbeat, 3 fragments, ping, heartbeat
	var ops []ws.OpCode
	var msg string
	for _, ev := range w.events {
		ops = append(ops, ev.op)
		if (ev.op == ws.OpText && !ev.fin) || ev.op == ws.OpContinuation {
			msg += ev.payload
		}
	}
	want := []ws.OpCode{ws.OpText, ws.OpText, ws.OpContinuation, ws.OpContinuation, ws.OpPing, ws.OpText}
	if !slices.Equal(ops, want) || w.done || len(w.buf) != 0 {
		t.Fatalf("ops %v done %v leftover %d; want %v", ops, w.done, len(w.buf), want)
	}
	if msg != `{"cmd":11,"content":"你好"}` {
		t.Fatalf("reassembled %q", msg)
	}
	for _, tt := range []struct {
		name string
		in   []byte
		want uint16
	}{
		{"close", seeds[5], CloseNormal},
		{"empty close", seeds[6], CloseNormal},
		{"too big", seeds[8], CloseTooBig},
		{"unmasked", seeds[9], CloseProtocol},
		{"rsv", seeds[10], CloseProtocol},
		{"fragmented ping", seeds[11], CloseProtocol},
		{"one-byte close", seeds[12], CloseProtocol},
		{"negative length", seeds[14], CloseProtocol},
	} {
		w := walk(tt.in)
		if !w.done || w.events[len(w.events)-1].close != tt.want {
			t.Errorf("%s: done %v events %+v, want close %d", tt.name, w.done, w.events, tt.want)
		}
	}
	if w := walk(seeds[13]); len(w.events) != 0 || w.done || len(w.buf) != len(seeds[13]) {
		t.Errorf("partial frame: events %+v done %v leftover %d", w.events, w.done, len(w.buf))
	}
}

// FuzzParseUpgrade: parseUpgrade and tokenFromURI never panic; an accepted
// request gets a 101 and the token of its request line, a refused one a 4xx.
func FuzzParseUpgrade(f *testing.F) {
	f.Add([]byte(upgradeRequest("/?token=abc")))
	f.Add([]byte(upgradeRequest("/x?a=1&token=a%2Bb&b=2#frag")))
	f.Add([]byte("GET /?token=t HTTP/1.1\r\nhost: h\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
	f.Add([]byte("HELLO\r\n\r\n"))
	f.Add([]byte("GET /?token=%zz HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, req []byte) {
		_ = tokenFromURI(req)
		orig := string(req)
		resp, token, _, err := parseUpgrade(req)
		if string(req) != orig {
			t.Fatalf("parseUpgrade modified its input")
		}
		if err != nil {
			if !bytes.HasPrefix(resp, []byte("HTTP/1.1 4")) {
				t.Fatalf("refused with %v but response is %q", err, resp)
			}
			if token != "" {
				t.Fatalf("refused request yields token %q", token)
			}
			return
		}
		if !bytes.HasPrefix(resp, []byte("HTTP/1.1 101")) {
			t.Fatalf("accepted but response is %q", resp)
		}
		line, _, _ := bytes.Cut(req, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if parts := bytes.SplitN(line, []byte(" "), 3); len(parts) == 3 {
			if want := tokenFromURI(parts[1]); token != want {
				t.Fatalf("token %q, want %q from %q", token, want, line)
			}
		}
	})
}
