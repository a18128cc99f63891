package main

import (
	"context"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/imgate/imgate/engine"
	"github.com/imgate/imgate/httpapi"
	"github.com/imgate/imgate/router"
	"github.com/imgate/imgate/storage/pebble"
)

// startGateway runs a real gateway in process on loopback ports.
func startGateway(t *testing.T) (ws, api string) {
	t.Helper()
	_, ws, api = startGatewayOn(t, openStore(t))
	return ws, api
}

// openStore opens a Pebble store that is closed after every gateway
// started on it (cleanups run last-in, first-out).
func openStore(t *testing.T) *pebble.DB {
	t.Helper()
	db, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// startGatewayOn runs a gateway over db: several of them over one store
// are the nodes of a cluster with no bus between them.
func startGatewayOn(t *testing.T, db *pebble.DB) (e *engine.Engine, ws, api string) {
	t.Helper()
	r, err := router.New(db, router.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err = engine.New(r, engine.Options{Addr: "127.0.0.1:0", RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	r.SetHub(e)
	srv, err := httpapi.New(r, db, httpapi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = e.Shutdown(ctx)
		_ = r.Close(ctx)
	})
	return e, e.Addr().String(), ln.Addr().String()
}

// Each mode runs for a second against a real gateway, so the tool cannot
// rot: it must log in, move traffic and report no errors.
func TestModesSmoke(t *testing.T) {
	ws, api := startGateway(t)
	// The -ack rows run against a gateway of their own, whose count of
	// pushes settled by receipt acks proves the tool acknowledges. Its cap
	// of unacknowledged pushes is the default: under -race a member can
	// fall well behind a fast sender, and a close is an error.
	ackEngine, ackWS, ackAPI := startGatewayOn(t, openStore(t))
	for _, tc := range []struct {
		mode  string
		args  []string
		check func(Result) bool
	}{
		{"chat", []string{"-pairs", "10", "-inflight", "4"}, func(r Result) bool { return r.Acks > 0 && r.Deliveries > 0 && r.OfflineAcks == 0 }},
		{"chat", []string{"-pairs", "5", "-rate", "200"}, func(r Result) bool { return r.Acks > 50 && r.Acks < 400 }},
		// One target in the URL form: as the host:port one, and named.
		{"chat", []string{"-http", "http://" + api + "/", "-pairs", "2"}, func(r Result) bool {
			return r.Acks > 0 && r.OfflineAcks == 0 && slices.Equal(r.WSTargets, []string{ws}) && slices.Equal(r.HTTPTargets, []string{api})
		}},
		// Acknowledging receivers: the gateway must have settled at least
		// half of what they received by their acks (the rest is the tail
		// in flight when the run stopped).
		{"chat", []string{"-ws", ackWS, "-http", ackAPI, "-pairs", "10", "-inflight", "4", "-ack"}, func(r Result) bool { return r.Acks > 1000 && r.Deliveries > 1000 }},
		{"group", []string{"-ws", ackWS, "-http", ackAPI, "-members", "20", "-ack"}, func(r Result) bool { return r.Acks > 50 && r.Deliveries >= 20*r.Acks-20*16 }},
		{"connect", []string{"-conns", "300", "-rate", "1000", "-heartbeat", "200ms"}, func(r Result) bool { return r.Logins == 300 && r.LoginRate > 0 }},
		{"http", []string{"-concurrency", "8"}, func(r Result) bool { return r.HTTPRate > 0 }},
		{"http", []string{"-concurrency", "8", "-healthz"}, func(r Result) bool { return r.HTTPRate > 0 }},
		{"group", []string{"-members", "20"}, func(r Result) bool { return r.Acks > 0 && r.Deliveries >= 20*r.Acks-20*16 }},
		// 600 queued: pulls of 500 make frames over 64 KiB, read in pieces.
		{"offline", []string{"-pairs", "4", "-messages", "600"}, func(r Result) bool { return r.Pulled == 2400 && r.OfflineAcks == 2400 }},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			args := append([]string{"-ws", ws, "-http", api, "-duration", "1s", "-json"}, tc.args...) // later flags win
			acking := slices.Contains(tc.args, "-ack")
			before := ackEngine.Stats().ClientAcked
			res, err := run(tc.mode, args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.ReplyCodes)+len(res.CloseCodes)+len(res.Errors) > 0 {
				t.Fatalf("errors: %+v", res)
			}
			if !tc.check(res) {
				t.Fatalf("result %+v", res)
			}
			if acked := ackEngine.Stats().ClientAcked - before; acking && acked < uint64(res.Deliveries/2) {
				t.Fatalf("the gateway settled %d pushes by receipt acks, of %d delivered", acked, res.Deliveries)
			}
		})
	}
	if _, err := run("nonsense", nil, io.Discard); err == nil {
		t.Fatal("unknown mode accepted")
	}
}
