package main

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/imgate/imgate/engine"
)

func TestParseTargets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flag    string
		value   string
		want    targets
		wantErr string // a part of the error; "" when none
	}{
		{"ws one", "ws", "127.0.0.1:8889", targets{"127.0.0.1:8889"}, ""},
		{"ws list", "ws", "127.0.0.1:8889,127.0.0.1:8899,127.0.0.1:8909", targets{"127.0.0.1:8889", "127.0.0.1:8899", "127.0.0.1:8909"}, ""},
		{"ws spaces", "ws", " a:1 , b:2", targets{"a:1", "b:2"}, ""},
		{"ws ipv6", "ws", "[::1]:8889,localhost:8889", targets{"[::1]:8889", "localhost:8889"}, ""},
		{"ws empty", "ws", "", nil, "-ws \"\": element 1 is empty"},
		{"ws empty middle", "ws", "a:1,,b:2", nil, "element 2 is empty"},
		{"ws empty last", "ws", "a:1,", nil, "element 2 is empty"},
		{"ws blank", "ws", "a:1, ", nil, "element 2 is empty"},
		{"ws duplicate", "ws", "a:1,b:2,a:1", nil, "-ws: elements 1 and 3 are both a:1"},
		{"ws no port", "ws", "a:1,localhost", nil, "-ws: element 2: \"localhost\" is not host:port"},
		{"ws url", "ws", "ws://a:1", nil, "is not host:port"},
		{"http one", "http", "127.0.0.1:8082", targets{"127.0.0.1:8082"}, ""},
		{"http no port", "http", "localhost", targets{"localhost"}, ""},
		{"http urls", "http", "http://127.0.0.1:8082,HTTP://127.0.0.1:8092/,127.0.0.1:8102", targets{"127.0.0.1:8082", "127.0.0.1:8092", "127.0.0.1:8102"}, ""},
		{"http duplicate across forms", "http", "a:1,http://a:1/", nil, "-http: elements 1 and 2 are both a:1"},
		{"http empty", "http", "a:1,,b:2", nil, "-http \"a:1,,b:2\": element 2 is empty"},
		{"http https", "http", "https://a:1", nil, "only http:// is supported"},
		{"http path", "http", "http://a:1/im", nil, "is not host:port or http://host:port"},
		{"http bare scheme", "http", "http://", nil, "is not host:port or http://host:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			norm := wsTarget
			if tc.flag == "http" {
				norm = httpTarget
			}
			got, err := parseTargets(tc.flag, tc.value, norm)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseTargets(%q) = %v, %v; want an error with %q", tc.value, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("parseTargets(%q) = %q, %v; want %q", tc.value, got, err, tc.want)
			}
		})
	}
}

// The flags parse into targets; one value is one target, as before.
func TestParseFlagsTargets(t *testing.T) {
	c, err := parse("chat", nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.ws, targets{"127.0.0.1:8889"}) || !slices.Equal(c.http, targets{"127.0.0.1:8082"}) {
		t.Fatalf("defaults: ws %q http %q", c.ws, c.http)
	}
	c, err = parse("chat", []string{"-ws", "a:1,b:2", "-http", "http://a:3,http://b:4"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.ws, targets{"a:1", "b:2"}) || !slices.Equal(c.http, targets{"a:3", "b:4"}) {
		t.Fatalf("lists: ws %q http %q", c.ws, c.http)
	}
	for _, args := range [][]string{{"-ws", "a:1,a:1"}, {"-http", ",b:2"}} {
		if _, err := run("chat", args, io.Discard); err == nil {
			t.Errorf("run accepted %q", args)
		}
	}
}

// A bad target list stops the process before it does anything, with a
// message that names the flag and exit status 2.
func TestBadTargetsExit(t *testing.T) {
	if os.Getenv("BENCH_TEST_MAIN") == "1" {
		os.Args = append([]string{"bench"}, strings.Fields(os.Getenv("BENCH_TEST_ARGS"))...)
		main()
		return
	}
	for _, args := range []string{"chat -ws 127.0.0.1:1,127.0.0.1:1", "connect -http 127.0.0.1:1,,127.0.0.1:2"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestBadTargetsExit$")
		cmd.Env = append(os.Environ(), "BENCH_TEST_MAIN=1", "BENCH_TEST_ARGS="+args)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Fatalf("bench %s: %v, want exit status 2; stderr %s", args, err, stderr.String())
		}
		if !strings.HasPrefix(stderr.String(), "bench: -") {
			t.Errorf("bench %s: stderr %q does not name the flag", args, stderr.String())
		}
	}
}

func TestTargetsRoundRobin(t *testing.T) {
	three := targets{"a:1", "b:2", "c:3"}
	var got []string
	for i := 0; i < 7; i++ {
		got = append(got, three.at(i))
	}
	if want := []string{"a:1", "b:2", "c:3", "a:1", "b:2", "c:3", "a:1"}; !slices.Equal(got, want) {
		t.Fatalf("at(0..6) = %q, want %q", got, want)
	}
	for _, tc := range []struct {
		name string
		t    targets
	}{
		{"one", targets{"a:1"}},
		{"two", targets{"a:1", "b:2"}},
		{"three", three},
	} {
		t.Run(tc.name, func(t *testing.T) {
			senders, receivers := map[string]int{}, map[string]int{}
			pairs := 6 * len(tc.t)
			for i := 0; i < pairs; i++ {
				snd, rcv := tc.t.pair(i)
				if snd != tc.t.at(i) || rcv != tc.t.at(i+1) {
					t.Fatalf("pair(%d) = %s, %s; want %s, %s", i, snd, rcv, tc.t.at(i), tc.t.at(i+1))
				}
				if len(tc.t) >= 2 && snd == rcv {
					t.Fatalf("pair(%d): both sides on %s", i, snd)
				}
				senders[snd]++
				receivers[rcv]++
			}
			for _, tg := range tc.t {
				if senders[tg] != 6 || receivers[tg] != 6 {
					t.Errorf("%s: %d senders, %d receivers; want 6 each", tg, senders[tg], receivers[tg])
				}
			}
		})
	}
}

// fakeAPI is an HTTP API that accepts every initUser and records the
// senderIds it was sent, in order.
type fakeAPI struct {
	addr string
	mu   struct {
		sync.Mutex
		ids []string
	}
}

func startFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		id := jsonString(ctx.PostBody(), `"senderId":"`)
		f.mu.Lock()
		f.mu.ids = append(f.mu.ids, id)
		f.mu.Unlock()
		ctx.SetBodyString(`{"code":200,"msg":"success","data":null}`)
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return f
}

func (f *fakeAPI) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.mu.ids)
}

// The i-th request goes to -http target i mod n.
func TestRegistrarRoundRobin(t *testing.T) {
	a, b := startFakeAPI(t), startFakeAPI(t)
	c, err := parse("chat", []string{"-http", a.addr + ",http://" + b.addr}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	reg := newRegistrar(c)
	for _, id := range []string{"u0", "u1", "u2", "u3", "u4"} {
		if _, err := reg.register(id, false); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := a.ids(), []string{"u0", "u2", "u4"}; !slices.Equal(got, want) {
		t.Errorf("first target got %q, want %q", got, want)
	}
	if got, want := b.ids(), []string{"u1", "u3"}; !slices.Equal(got, want) {
		t.Errorf("second target got %q, want %q", got, want)
	}

	// Concurrent requests alternate too: the counts differ by one at most,
	// and the report names both targets.
	res, err := run("http", []string{"-http", a.addr + "," + b.addr, "-concurrency", "4", "-duration", "300ms", "-json"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	na, nb := int64(len(a.ids())-3), int64(len(b.ids())-2)
	if na+nb != res.Acks || res.Acks < 10 || na-nb > 1 || nb-na > 1 {
		t.Errorf("http mode: %d and %d requests, %d acknowledged", na, nb, res.Acks)
	}
	if !slices.Equal(res.HTTPTargets, []string{a.addr, b.addr}) || res.WSTargets != nil {
		t.Errorf("http mode names ws %q http %q", res.WSTargets, res.HTTPTargets)
	}
}

// peakConns samples each engine's open connections until stop is closed
// and returns the highest count of each.
func peakConns(es []*engine.Engine, stop <-chan struct{}) <-chan []int {
	out := make(chan []int, 1)
	go func() {
		peak := make([]int, len(es))
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			for i, e := range es {
				peak[i] = max(peak[i], e.Stats().Conns)
			}
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// waitNoConns waits until no engine holds a connection: a run's client
// is gone when it returns, but the gateways see the closes a little after.
func waitNoConns(t *testing.T, es []*engine.Engine) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, e := range es {
		for e.Stats().Conns > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections still open", e.Stats().Conns)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// Two gateways over one store and no bus between them: bench spreads its
// connections over both, and puts the two sides of every pair on
// different ones. In chat that shows in the acks: a receiver online on
// the other node is offline to the sender's.
func TestSeveralGateways(t *testing.T) {
	db := openStore(t)
	e1, ws1, api1 := startGatewayOn(t, db)
	e2, ws2, api2 := startGatewayOn(t, db)
	es := []*engine.Engine{e1, e2}
	wsList, httpList := ws1+","+ws2, "http://"+api1+","+api2

	t.Run("connect", func(t *testing.T) {
		waitNoConns(t, es)
		stop := make(chan struct{})
		peaks := peakConns(es, stop)
		res, err := run("connect", []string{"-ws", wsList, "-http", httpList, "-conns", "300", "-rate", "1000",
			"-heartbeat", "200ms", "-duration", "1s", "-json"}, io.Discard)
		close(stop)
		peak := <-peaks
		if err != nil {
			t.Fatal(err)
		}
		if len(res.ReplyCodes)+len(res.CloseCodes)+len(res.Errors) > 0 || res.Logins != 300 {
			t.Fatalf("result %+v", res)
		}
		if peak[0] != 150 || peak[1] != 150 {
			t.Fatalf("connections per gateway %v, want 150 each", peak)
		}
	})

	t.Run("chat", func(t *testing.T) {
		waitNoConns(t, es)
		stop := make(chan struct{})
		peaks := peakConns(es, stop)
		var out bytes.Buffer
		res, err := run("chat", []string{"-ws", wsList, "-http", httpList, "-pairs", "10", "-inflight", "4",
			"-duration", "1s"}, &out)
		close(stop)
		peak := <-peaks
		if err != nil {
			t.Fatal(err)
		}
		if len(res.ReplyCodes)+len(res.CloseCodes)+len(res.Errors) > 0 {
			t.Fatalf("errors: %+v", res)
		}
		if res.Acks == 0 || res.OfflineAcks != res.Acks || res.Deliveries != 0 {
			t.Fatalf("%d acks, %d offline, %d deliveries: a pair shared a node", res.Acks, res.OfflineAcks, res.Deliveries)
		}
		if peak[0] != 10 || peak[1] != 10 {
			t.Fatalf("connections per gateway %v, want 10 each", peak)
		}
		for _, want := range []string{"ws targets      " + ws1 + ", " + ws2 + "\n", "http targets    " + api1 + ", " + api2 + "\n"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("report lacks %q:\n%s", want, out.String())
			}
		}
	})

	// Queued through one node, pulled through the other.
	t.Run("offline", func(t *testing.T) {
		waitNoConns(t, es)
		stop := make(chan struct{})
		peaks := peakConns(es, stop)
		res, err := run("offline", []string{"-ws", wsList, "-http", httpList, "-pairs", "4", "-messages", "100", "-json"}, io.Discard)
		close(stop)
		peak := <-peaks
		if err != nil {
			t.Fatal(err)
		}
		if len(res.ReplyCodes)+len(res.CloseCodes)+len(res.Errors) > 0 || res.Pulled != 400 || res.OfflineAcks != 400 {
			t.Fatalf("result %+v", res)
		}
		if peak[0] != 4 || peak[1] != 4 {
			t.Fatalf("connections per gateway %v, want 4 each", peak)
		}
	})
}
