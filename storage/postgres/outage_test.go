package postgres

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/imgate/imgate/storage"
)

// freezer is a TCP proxy to the test server that can stop answering: a
// server that hangs (stopped, partitioned) without closing a connection.
type freezer struct {
	ln     net.Listener
	mu     sync.Mutex
	frozen chan struct{} // closed once frozen
	once   sync.Once
}

func newFreezer(t *testing.T, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, frozen: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go f.pipe(c, s)
			go f.pipe(s, c)
		}
	}()
	return f
}

// pipe copies until frozen, then holds both ends open, silent.
func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-f.frozen:
			<-make(chan struct{}) // hold: the peer waits for ever
		default:
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			return
		}
	}
}

func (f *freezer) freeze() { f.once.Do(func() { close(f.frozen) }) }

// TestSection4_2_ServerThatStopsAnsweringFailsFast: when the server stops
// answering, queued appends fail (none is acked) without waiting for the
// server once per append, and Close returns within its grace, so a
// gateway's shutdown is bounded.
func TestSection4_2_ServerThatStopsAnsweringFailsFast(t *testing.T) {
	_, dbURL := openTest(t, nil)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	fz := newFreezer(t, u.Host)
	u.Host = fz.ln.Addr().String()
	db, err := Open(context.Background(), u.String(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan storage.AppendResult, 64)
	m := storage.Message{From: 1, To: 2, FromID: "a", ToID: "b", ChatType: storage.ChatPrivate, Content: "x", CreateTime: 1}
	m.ID[0] = 1
	if err := db.AppendPrivate(m, storage.AppendOptions{Offline: true}, func(r storage.AppendResult) { done <- r }); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.Err != nil {
		t.Fatalf("append before the freeze: %v", r.Err)
	}
	fz.freeze()
	const n = 20
	for i := range n {
		m.ID[0] = byte(i + 2)
		if err := db.AppendPrivate(m, storage.AppendOptions{Offline: true}, func(r storage.AppendResult) { done <- r }); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	closed := make(chan struct{})
	go func() { db.Close(); close(closed) }()
	select {
	case <-closed:
		t.Logf("closed in %v", time.Since(start))
	case <-time.After(closeGrace + 5*time.Second):
		t.Fatalf("Close still waiting %v after the server stopped answering", time.Since(start))
	}
	for i := range n {
		select {
		case r := <-done:
			if r.Err == nil {
				t.Fatalf("append %d acked with the server frozen", i)
			}
		case <-time.After(time.Second):
			t.Fatalf("append %d never answered", i)
		}
	}
}
