package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/imgate/imgate/httpapi"
	"github.com/imgate/imgate/router"
	"github.com/imgate/imgate/storage"
	"github.com/imgate/imgate/storage/pebble"
)

// testEpoch is the injected clock's start: a fixed instant, so expiry
// times are exact.
const testEpoch int64 = 1_700_000_000_000

// raceEnabled reports whether the test binary was built with -race; waits
// get a longer bound then (STYLE §8).
var raceEnabled = sync.OnceValue(func() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
})

// waitBound bounds every request and shutdown of a test.
func waitBound() time.Duration {
	if raceEnabled() {
		return 60 * time.Second
	}
	return 20 * time.Second
}

// testClock is the router's injectable clock, safe for concurrent use.
type testClock struct{ ms atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ms.Store(testEpoch)
	return c
}

func (c *testClock) Now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *testClock) Millis() int64           { return c.ms.Load() }
func (c *testClock) Advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// harnessOptions configures newHarness. Zero values are the defaults.
type harnessOptions struct {
	API      httpapi.Options
	TokenTTL time.Duration // zero: router.DefaultTokenTTL
	Dir      string        // zero: a new t.TempDir()
}

// harness is a real store, router and HTTP API served on an in-memory
// listener, with a client dialing it.
type harness struct {
	t     testing.TB
	dir   string
	clock *testClock
	ttl   time.Duration
	db    *pebble.DB
	r     *router.Router
	srv   *httpapi.Server
	ln    *fasthttputil.InmemoryListener
	c     *fasthttp.HostClient
}

// newHarness starts the server; everything is closed by t.Cleanup.
func newHarness(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	h := &harness{t: t, dir: o.Dir, clock: newTestClock(), ttl: o.TokenTTL}
	if h.dir == "" {
		h.dir = t.TempDir()
	}
	if h.ttl == 0 {
		h.ttl = router.DefaultTokenTTL
	}
	h.db, h.r = openStore(t, h.dir, h.clock, h.ttl)

	srv, err := httpapi.New(h.r, h.db, o.API)
	if err != nil {
		t.Fatalf("httpapi.New: %v", err)
	}
	h.srv = srv
	h.ln = fasthttputil.NewInmemoryListener()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(h.ln) }()
	h.c = &fasthttp.HostClient{
		Addr: "imgate.test",
		Dial: func(string) (net.Conn, error) { return h.ln.Dial() },
		// Every test request goes out in one write: the server may close
		// the pipe as soon as it has read the headers (413), and a second
		// write would then fail before the client reads the answer.
		WriteBufferSize: 64 << 10,
	}
	t.Cleanup(func() {
		h.c.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), waitBound())
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve returned %v", err)
			}
		case <-ctx.Done():
			t.Errorf("Serve did not return within %v", waitBound())
		}
	})
	return h
}

// serveTCP serves the harness's server on a loopback TCP port as well and
// returns its base URL: what depends on real sockets (resets, lingering
// closes) does not show on the in-memory listener.
func (h *harness) serveTCP() string {
	h.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	// The harness's cleanup shuts the server down, which closes ln and
	// ends this Serve.
	go func() { _ = h.srv.Serve(ln) }()
	return "http://" + ln.Addr().String()
}

// hub is the router's view of live connections in the API tests: nobody
// is online; it records the disconnects logout asks for and answers them
// with closes. The embedded Hub (nil) stands for calls the tests do not
// expect.
type hub struct {
	router.Hub
	closes int // what each disconnect reports
	mu     sync.Mutex
	calls  []string
}

func (h *hub) Online(uint64) bool { return false }

func (h *hub) Disconnect(uid uint64, code uint16, reason string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, fmt.Sprintf("all %d %d %s", uid, code, reason))
	return h.closes
}

func (h *hub) DisconnectTerminal(uid uint64, terminal string, code uint16, reason string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, fmt.Sprintf("terminal %d %s %d %s", uid, terminal, code, reason))
	return h.closes
}

func (h *hub) recorded() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

// openStore opens storage in dir and a router over it with the given
// clock and token TTL; both are closed by t.Cleanup (closing twice is
// harmless, so tests may close them early).
func openStore(t testing.TB, dir string, clock *testClock, ttl time.Duration) (*pebble.DB, *router.Router) {
	t.Helper()
	db, err := pebble.Open(dir, pebble.Options{})
	if err != nil {
		t.Fatalf("pebble.Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("db.Close: %v", err)
		}
	})
	r, err := router.New(db, router.Options{Now: clock.Now, TokenTTL: ttl, Workers: 2})
	if err != nil {
		t.Fatalf("router.New: %v", err)
	}
	t.Cleanup(func() { closeRouter(t, r) })
	return db, r
}

func closeRouter(t testing.TB, r *router.Router) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound())
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Errorf("router.Close: %v", err)
	}
}

// response is a finished HTTP exchange, copied out of fasthttp's buffers.
type response struct {
	status int
	body   string
	header map[string]string // lower-case header name → value
}

func (r response) get(name string) string { return r.header[strings.ToLower(name)] }

// request is one HTTP request to send.
type request struct {
	method  string
	path    string
	body    string
	noBody  bool              // send no body at all (no Content-Length)
	headers map[string]string // extra headers
	// contentType of a body: "" is application/json, "-" sends none.
	contentType string
}

// do sends req and returns the response; a transport failure fails the test.
func (h *harness) do(req request) response {
	h.t.Helper()
	resp, err := h.tryDo(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.method, req.path, err)
	}
	return resp
}

// tryDo is do without failing the test, for use off the test goroutine.
func (h *harness) tryDo(req request) (response, error) {
	fr := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(fr)
	fresp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(fresp)

	fr.SetRequestURI("http://imgate.test" + req.path)
	fr.Header.SetMethod(req.method)
	for k, v := range req.headers {
		fr.Header.Set(k, v)
	}
	if !req.noBody {
		switch req.contentType {
		case "":
			fr.Header.SetContentType("application/json")
		case "-":
			fr.Header.SetNoDefaultContentType(true)
		default:
			fr.Header.SetContentType(req.contentType)
		}
		fr.SetBodyString(req.body)
	}
	if err := h.c.DoTimeout(fr, fresp, waitBound()); err != nil {
		return response{}, err
	}
	out := response{status: fresp.StatusCode(), body: string(fresp.Body()), header: map[string]string{}}
	for k, v := range fresp.Header.All() {
		out.header[strings.ToLower(string(k))] = string(v)
	}
	return out, nil
}

// post sends a JSON body to path.
func (h *harness) post(path, body string) response {
	h.t.Helper()
	return h.do(request{method: fasthttp.MethodPost, path: path, body: body})
}

const initUserPath = "/im/vanke/initUser"

// initUser posts body to /im/vanke/initUser.
func (h *harness) initUser(body string) response {
	h.t.Helper()
	return h.post(initUserPath, body)
}

// userBody renders an initUser body from its fields, leaving out empty ones
// but token (sent when tok is not nil).
func userBody(senderID string, typ int, token *string, nick, avatar, terminal string) string {
	m := map[string]any{"senderId": senderID, "type": typ}
	if token != nil {
		m["token"] = *token
	}
	for k, v := range map[string]string{"nick": nick, "avatar": avatar, "terminal": terminal} {
		if v != "" {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func ptr[T any](v T) *T { return &v }

// envelope is the decoded HTTP API envelope (PROTOCOL §1).
type envelope struct {
	Code *int            `json:"code"`
	Msg  *string         `json:"msg"`
	Data json.RawMessage `json:"data"`
}

// decodeEnvelope decodes body strictly: code, msg and data must all be
// present.
func decodeEnvelope(t testing.TB, body string) envelope {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", body, err)
	}
	for _, k := range []string{"code", "msg", "data"} {
		if _, ok := raw[k]; !ok {
			t.Fatalf("body %q has no %q member", body, k)
		}
	}
	var e envelope
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if e.Code == nil || e.Msg == nil {
		t.Fatalf("body %q: code or msg is null", body)
	}
	return e
}

// expectError checks an HTTP error answer: the status, the JSON content
// type and an envelope whose code is the status, data null and msg
// containing every string in want.
func expectError(t testing.TB, resp response, status int, want ...string) envelope {
	t.Helper()
	if resp.status != status {
		t.Fatalf("status = %d, want %d (body %q)", resp.status, status, resp.body)
	}
	expectJSON(t, resp)
	e := decodeEnvelope(t, resp.body)
	if *e.Code != status {
		t.Errorf("envelope code = %d, want %d (body %q)", *e.Code, status, resp.body)
	}
	if string(e.Data) != "null" {
		t.Errorf("envelope data = %s, want null", e.Data)
	}
	if *e.Msg == "" {
		t.Errorf("envelope msg is empty (body %q)", resp.body)
	}
	for _, w := range want {
		if !strings.Contains(*e.Msg, w) {
			t.Errorf("msg %q does not name %q", *e.Msg, w)
		}
	}
	return e
}

// expectJSON checks the JSON content type.
func expectJSON(t testing.TB, resp response) {
	t.Helper()
	ct := resp.get("Content-Type")
	if !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
}

// expectBody checks status 200, JSON and the exact body bytes.
func expectBody(t testing.TB, resp response, want string) {
	t.Helper()
	if resp.status != fasthttp.StatusOK {
		t.Fatalf("status = %d, want 200 (body %q)", resp.status, resp.body)
	}
	expectJSON(t, resp)
	if resp.body != want {
		t.Fatalf("body = %s\nwant   %s", resp.body, want)
	}
}

// tokenOwner returns the id of the user token resolves to at the clock's
// current time.
func (h *harness) tokenOwner(token string) (string, error) {
	u, err := h.db.TokenUser(token, h.clock.Millis())
	if err != nil {
		return "", err
	}
	return u.ID, nil
}

// expectTokenOwner checks that token resolves to user id now.
func (h *harness) expectTokenOwner(token, id string) {
	h.t.Helper()
	got, err := h.tokenOwner(token)
	if err != nil {
		h.t.Fatalf("TokenUser(%q): %v, want user %q", token, err, id)
	}
	if got != id {
		h.t.Fatalf("TokenUser(%q) = %q, want %q", token, got, id)
	}
}

// expectNoUser checks that id was never registered.
func (h *harness) expectNoUser(id string) {
	h.t.Helper()
	if u, err := h.db.UserByID(id); !errors.Is(err, storage.ErrNotFound) {
		h.t.Fatalf("UserByID(%q) = %+v, %v; want ErrNotFound", id, u, err)
	}
}

// counterValue returns the value of a Prometheus counter line in text.
func counterValue(t testing.TB, text, name string) uint64 {
	t.Helper()
	for line := range strings.SplitSeq(text, "\n") {
		v, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("counter line %q: %v", line, err)
		}
		return n
	}
	t.Fatalf("no %s line in:\n%s", name, text)
	return 0
}
