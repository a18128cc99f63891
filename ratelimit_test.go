package main

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

const tooMany = `{"code":10028,"command":13,"msg":"too many requests 请求过于频繁"}`

// PROTOCOL §6 10028: a burst over the limit is partly refused, not
// executed, and the connection stays; a flood that goes on is closed 1008.
func TestSection6_RateLimit(t *testing.T) {
	ts := newTestServer(t)
	tok := ts.register("u1", 0)

	t.Run("burst refused in part", func(t *testing.T) {
		rc := ts.rawLogin(tok)
		rc.write(bytes.Repeat(text(`{"cmd":13}`), 2000))
		refused, served := 0, 0
		for i := 0; i < 2000; i++ {
			op, p := rc.readFrame()
			switch {
			case op == 1 && string(p) == tooMany:
				refused++
			case op == 1 && bytes.HasPrefix(p, []byte(`{"command":13,"data":{"createTime":`)):
				served++
			default:
				t.Fatalf("frame %d: op %#x %s", i, op, p)
			}
		}
		if refused == 0 || served < 400 {
			t.Fatalf("served %d, refused %d", served, refused)
		}
		// Still open: a ping is answered.
		rc.write(frame(0x9, true, []byte("still?"), false))
		if op, p := rc.readFrame(); op != 0xA || string(p) != "still?" {
			t.Fatalf("after the burst: op %#x %q", op, p)
		}
	})
	t.Run("sustained flood closed", func(t *testing.T) {
		rc := ts.rawLogin(tok)
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			batch := bytes.Repeat(text(`{"cmd":13}`), 100)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := rc.nc.Write(batch); err != nil {
					return
				}
			}
		}()
		start := time.Now()
		for {
			op, p := rc.readFrame()
			if op != 0x8 {
				continue
			}
			if code := binary.BigEndian.Uint16(p); code != 1008 {
				t.Fatalf("closed with %d", code)
			}
			break
		}
		if el := time.Since(start); el < 5*time.Second {
			t.Fatalf("closed after %v: a flood must last before it is punished", el)
		}
	})
}
